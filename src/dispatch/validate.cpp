#include "dispatch/validate.h"

#include <algorithm>
#include <limits>

#include "common/checks.h"
#include "moekit/dispatch.h"

namespace moekit {

AlignCapacity moe_align_block_size_capacity(int64_t numel, int64_t num_buckets, int64_t block_size) {
  detail::require(numel >= 0, "numel: expected >= 0, got ", numel);
  detail::require(num_buckets >= 0, "num_buckets: expected >= 0, got ", num_buckets);
  detail::require(block_size >= 1, "block_size: expected >= 1, got ", block_size);
  // Each non-empty bucket pads at most bs - 1 slots, and at most min(numel, NB) are non-empty.
  const int64_t bound = numel + std::min(numel, num_buckets) * (block_size - 1);
  const int64_t blocks = bound / block_size;
  return {blocks * block_size, blocks};
}

namespace detail {
namespace {

void check_index_vector(const TensorView& t, const char* name, Device device) {
  check_tensor(t, name, DType::kInt32, device);
  check_ndim(t, name, 1);
}

void check_optional_map(const TensorView& expert_map, Device device) {
  if (!expert_map.defined()) return;
  check_index_vector(expert_map, "expert_map", device);
}

}  // namespace

AlignProblem validate_align(const TensorView& topk_ids, int64_t num_experts, int64_t block_size,
                            const TensorView& sorted_token_ids, const TensorView& experts_ids,
                            const TensorView& num_tokens_post_pad, bool pad_sorted_token_ids,
                            bool ignore_invalid_expert, const TensorView& expert_map, Device device) {
  check_defined(topk_ids, "topk_ids");
  check_device(topk_ids, "topk_ids", device);
  check_dtype_in(topk_ids, "topk_ids", {DType::kInt32, DType::kInt64});
  check_contiguous(topk_ids, "topk_ids");
  check_index_vector(sorted_token_ids, "sorted_token_ids", device);
  check_index_vector(experts_ids, "experts_ids", device);
  check_tensor(num_tokens_post_pad, "num_tokens_post_pad", DType::kInt32, device);
  require(num_tokens_post_pad.numel() == 1, "num_tokens_post_pad: expected one element, got shape ",
          detail::shape_of(num_tokens_post_pad));
  check_optional_map(expert_map, device);
  check_range("num_experts", num_experts, 0, kMaxDispatchExperts);
  check_range("block_size", block_size, 1, std::numeric_limits<int32_t>::max());

  const int64_t numel = topk_ids.numel();
  const int64_t buckets = ignore_invalid_expert ? num_experts : num_experts + 1;
  const int64_t bound = numel + std::min(numel, buckets) * (block_size - 1);
  require(bound <= std::numeric_limits<int32_t>::max(), "topk_ids: expected at most 2^31 - 1 padded slots (numel + min(numel, buckets) * (block_size - 1)), got ",
          bound, " for numel ", numel, " and block_size ", block_size);
  const AlignCapacity need = moe_align_block_size_capacity(numel, buckets, block_size);
  require(sorted_token_ids.numel() >= need.sorted_token_ids,
          "sorted_token_ids: expected at least ", need.sorted_token_ids, " elements for ", numel,
          " pairs, ", buckets, " buckets and block_size ", block_size, ", got ",
          sorted_token_ids.numel());
  require(experts_ids.numel() >= need.experts_ids, "experts_ids: expected at least ",
          need.experts_ids, " elements for ", numel, " pairs, ", buckets,
          " buckets and block_size ", block_size, ", got ", experts_ids.numel());

  AlignProblem p;
  p.topk_ids = topk_ids.data;
  p.ids_int64 = topk_ids.dtype == DType::kInt64;
  p.numel = numel;
  p.num_experts = static_cast<int32_t>(num_experts);
  p.expert_map = expert_map.defined() ? expert_map.ptr<int32_t>() : nullptr;
  p.map_size = expert_map.defined() ? expert_map.numel() : 0;
  p.block_size = static_cast<int32_t>(block_size);
  p.pad_sorted_token_ids = pad_sorted_token_ids;
  p.ignore_invalid_expert = ignore_invalid_expert;
  p.sorted_token_ids = sorted_token_ids.ptr<int32_t>();
  p.sorted_capacity = sorted_token_ids.numel();
  p.experts_ids = experts_ids.ptr<int32_t>();
  p.experts_capacity = experts_ids.numel();
  p.num_tokens_post_pad = num_tokens_post_pad.ptr<int32_t>();
  return p;
}

void validate_align_compat(int64_t num_buckets, const TensorView& cumsum_buffer, Device device) {
  check_range("num_experts (the number of buckets, E + 1)", num_buckets, 1, kMaxDispatchExperts + 1);
  check_index_vector(cumsum_buffer, "cumsum_buffer", device);
  require(cumsum_buffer.numel() >= num_buckets + 1, "cumsum_buffer: expected at least ",
          num_buckets + 1, " elements (num_experts + 1), got ", cumsum_buffer.numel());
}

PrepareProblem validate_prepare(const TensorView& topk_ids, const TensorView& expert_offsets,
                                const TensorView& blockscale_offsets,
                                const TensorView& problem_sizes1, const TensorView& problem_sizes2,
                                const TensorView& input_permutation,
                                const TensorView& output_permutation, int64_t num_experts,
                                int64_t n, int64_t k, const TensorView& expert_map, Device device) {
  check_tensor(topk_ids, "topk_ids", DType::kInt32, device);
  check_ndim(topk_ids, "topk_ids", 2);
  check_range("num_experts", num_experts, 1, kMaxDispatchExperts);
  check_range("n", n, 1, std::numeric_limits<int32_t>::max() / 2);
  check_range("k", k, 1, std::numeric_limits<int32_t>::max());
  const int64_t numel = topk_ids.numel();
  require(numel <= std::numeric_limits<int32_t>::max(), "topk_ids: expected fewer than 2^31 pairs, got ", numel);
  require(topk_ids.size(1) >= 1 || numel == 0, "topk_ids: expected topk >= 1, got shape ",
          detail::shape_of(topk_ids));
  check_tensor(expert_offsets, "expert_offsets", DType::kInt32, device);
  check_shape(expert_offsets, "expert_offsets", {num_experts + 1});
  if (blockscale_offsets.defined()) {
    check_tensor(blockscale_offsets, "blockscale_offsets", DType::kInt32, device);
    check_shape(blockscale_offsets, "blockscale_offsets", {num_experts + 1});
    require(numel + num_experts * 127 <= std::numeric_limits<int32_t>::max(),
            "blockscale_offsets: expected the 128-padded total to fit int32, got ", numel,
            " pairs and ", num_experts, " experts");
  }
  check_tensor(problem_sizes1, "problem_sizes1", DType::kInt32, device);
  check_shape(problem_sizes1, "problem_sizes1", {num_experts, 3});
  check_tensor(problem_sizes2, "problem_sizes2", DType::kInt32, device);
  check_shape(problem_sizes2, "problem_sizes2", {num_experts, 3});
  check_tensor(input_permutation, "input_permutation", DType::kInt32, device);
  require(input_permutation.numel() == numel, "input_permutation: expected ", numel,
          " elements (M * topk), got shape ", detail::shape_of(input_permutation));
  check_tensor(output_permutation, "output_permutation", DType::kInt32, device);
  require(output_permutation.numel() == numel, "output_permutation: expected ", numel,
          " elements (M * topk), got shape ", detail::shape_of(output_permutation));
  check_optional_map(expert_map, device);

  PrepareProblem p;
  p.topk_ids = topk_ids.ptr<int32_t>();
  p.numel = numel;
  p.topk = topk_ids.size(1);
  p.num_experts = static_cast<int32_t>(num_experts);
  p.expert_map = expert_map.defined() ? expert_map.ptr<int32_t>() : nullptr;
  p.map_size = expert_map.defined() ? expert_map.numel() : 0;
  p.n = static_cast<int32_t>(n);
  p.k = static_cast<int32_t>(k);
  p.expert_offsets = expert_offsets.ptr<int32_t>();
  p.blockscale_offsets = blockscale_offsets.defined() ? blockscale_offsets.ptr<int32_t>() : nullptr;
  p.problem_sizes1 = problem_sizes1.ptr<int32_t>();
  p.problem_sizes2 = problem_sizes2.ptr<int32_t>();
  p.input_permutation = input_permutation.ptr<int32_t>();
  p.output_permutation = output_permutation.ptr<int32_t>();
  return p;
}

ShuffleRowsProblem validate_shuffle_rows(const TensorView& input, const TensorView& dst2src_map,
                                         const TensorView& output, Device device) {
  check_defined(input, "input");
  check_device(input, "input", device);
  check_dtype_in(input, "input",
                 {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat8E4M3,
                  DType::kFloat8E5M2, DType::kFloat8E8M0, DType::kInt8, DType::kUInt8,
                  DType::kInt32});
  check_ndim(input, "input", 2);
  check_contiguous(input, "input");
  check_tensor(dst2src_map, "dst2src_map", DType::kInt32, device);
  check_ndim(dst2src_map, "dst2src_map", 1);
  check_defined(output, "output");
  check_device(output, "output", device);
  check_same_dtype(output, "output", input, "input");
  check_shape(output, "output", {dst2src_map.size(0), input.size(1)});
  check_contiguous(output, "output");

  ShuffleRowsProblem p;
  p.input = static_cast<const unsigned char*>(input.data);
  p.src_rows = input.size(0);
  p.dst2src_map = dst2src_map.ptr<int32_t>();
  p.output = static_cast<unsigned char*>(output.data);
  p.dst_rows = output.size(0);
  p.row_bytes = input.size(1) * static_cast<int64_t>(dtype_size(input.dtype));
  return p;
}

}  // namespace detail
}  // namespace moekit
