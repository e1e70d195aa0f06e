// The dispatch oracle: plain serial loops straight from the spec (gpu-ops.md §2).
#include <cstring>
#include <vector>

#include "common/checks.h"
#include "dispatch/validate.h"
#include "moekit/dispatch.h"

namespace moekit::reference {
namespace {

void align(const detail::AlignProblem& p) {
  const int64_t nb = p.num_buckets(), bs = p.block_size;
  std::vector<int64_t> count(nb, 0);
  for (int64_t i = 0; i < p.numel; ++i) {
    int32_t b = p.bucket(i);
    if (b >= 0) ++count[b];
  }
  std::vector<int64_t> start(nb + 1, 0);
  for (int64_t b = 0; b < nb; ++b) start[b + 1] = start[b] + (count[b] + bs - 1) / bs * bs;
  const int64_t total = start[nb];

  if (p.pad_sorted_token_ids)
    for (int64_t s = 0; s < p.sorted_capacity; ++s)
      p.sorted_token_ids[s] = static_cast<int32_t>(p.numel);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < p.numel; ++i) {  // ascending i: stable inside each bucket
    int32_t b = p.bucket(i);
    if (b >= 0) p.sorted_token_ids[next[b]++] = static_cast<int32_t>(i);
  }
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t j = start[b] / bs; j < start[b + 1] / bs; ++j)
      p.experts_ids[j] = static_cast<int32_t>(b - 1);
  p.num_tokens_post_pad[0] = static_cast<int32_t>(total);
}

}  // namespace

void moe_align_block_size(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                          TensorView sorted_token_ids, TensorView experts_ids,
                          TensorView num_tokens_post_pad, TensorView cumsum_buffer,
                          bool pad_sorted_token_ids, bool ignore_invalid_expert) {
  detail::validate_align_compat(num_experts, cumsum_buffer, Device{});
  align(detail::validate_align(topk_ids, num_experts - 1, block_size, sorted_token_ids,
                               experts_ids, num_tokens_post_pad, pad_sorted_token_ids,
                               ignore_invalid_expert, TensorView{}, Device{}));
}

void moe_align_block_size_experts(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                                  TensorView sorted_token_ids, TensorView experts_ids,
                                  TensorView num_tokens_post_pad, bool pad_sorted_token_ids,
                                  bool ignore_invalid_expert, TensorView expert_map) {
  detail::check_range("num_experts", num_experts, 1, detail::kMaxDispatchExperts);
  align(detail::validate_align(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                               num_tokens_post_pad, pad_sorted_token_ids, ignore_invalid_expert,
                               expert_map, Device{}));
}

void prepare_moe_input(TensorView topk_ids, TensorView expert_offsets,
                       TensorView blockscale_offsets, TensorView problem_sizes1,
                       TensorView problem_sizes2, TensorView input_permutation,
                       TensorView output_permutation, int64_t num_experts, int64_t n, int64_t k,
                       TensorView expert_map) {
  const detail::PrepareProblem p = detail::validate_prepare(
      topk_ids, expert_offsets, blockscale_offsets, problem_sizes1, problem_sizes2,
      input_permutation, output_permutation, num_experts, n, k, expert_map, Device{});
  const int64_t E = p.num_experts;
  std::vector<int64_t> count(E, 0);
  for (int64_t i = 0; i < p.numel; ++i) {
    int32_t e = p.expert(i);
    if (e >= 0) ++count[e];
  }
  std::vector<int64_t> offset(E + 1, 0);
  int64_t blockscale = 0;
  for (int64_t e = 0; e < E; ++e) {
    offset[e + 1] = offset[e] + count[e];
    p.problem_sizes1[e * 3 + 0] = static_cast<int32_t>(count[e]);
    p.problem_sizes1[e * 3 + 1] = 2 * p.n;
    p.problem_sizes1[e * 3 + 2] = p.k;
    p.problem_sizes2[e * 3 + 0] = static_cast<int32_t>(count[e]);
    p.problem_sizes2[e * 3 + 1] = p.k;
    p.problem_sizes2[e * 3 + 2] = p.n;
  }
  for (int64_t e = 0; e <= E; ++e) {
    p.expert_offsets[e] = static_cast<int32_t>(offset[e]);
    if (p.blockscale_offsets) {
      p.blockscale_offsets[e] = static_cast<int32_t>(blockscale);
      if (e < E) blockscale += (count[e] + 127) / 128 * 128;
    }
  }
  for (int64_t s = offset[E]; s < p.numel; ++s) p.input_permutation[s] = -1;
  std::vector<int64_t> next(offset.begin(), offset.end() - 1);
  for (int64_t i = 0; i < p.numel; ++i) {
    int32_t e = p.expert(i);
    if (e < 0) {
      p.output_permutation[i] = -1;
      continue;
    }
    const int64_t slot = next[e]++;
    p.input_permutation[slot] = static_cast<int32_t>(i / p.topk);
    p.output_permutation[i] = static_cast<int32_t>(slot);
  }
}

void shuffle_rows(TensorView input, TensorView dst2src_map, TensorView output) {
  const detail::ShuffleRowsProblem p =
      detail::validate_shuffle_rows(input, dst2src_map, output, Device{});
  for (int64_t r = 0; r < p.dst_rows; ++r) {
    const int64_t src = p.dst2src_map[r];
    unsigned char* dst = p.output + r * p.row_bytes;
    for (int64_t byte = 0; byte < p.row_bytes; ++byte)
      dst[byte] = (src >= 0 && src < p.src_rows) ? p.input[src * p.row_bytes + byte] : 0;
  }
}

}  // namespace moekit::reference
