// Public dispatch ops: validate on the host, then run on the tensors' device.
#include "common/backend.h"
#include "dispatch/cpu/kernels.h"
#include "dispatch/cuda/launcher.h"
#include "dispatch/validate.h"
#include "moekit/dispatch.h"

namespace moekit {
namespace {

void run_align(const detail::AlignProblem& p, Device device, Stream stream) {
  if (device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::moe_align_block_size(p, stream), "moe_align_block_size");
  } else {
    cpu::moe_align_block_size(p);
  }
}

}  // namespace

void moe_align_block_size(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                          TensorView sorted_token_ids, TensorView experts_ids,
                          TensorView num_tokens_post_pad, TensorView cumsum_buffer,
                          bool pad_sorted_token_ids, bool ignore_invalid_expert, Stream stream) {
  const Device device = topk_ids.device;
  detail::validate_align_compat(num_experts, cumsum_buffer, device);
  run_align(detail::validate_align(topk_ids, num_experts - 1, block_size, sorted_token_ids,
                                   experts_ids, num_tokens_post_pad, pad_sorted_token_ids,
                                   ignore_invalid_expert, TensorView{}, device),
            device, stream);
}

void moe_align_block_size_experts(TensorView topk_ids, int64_t num_experts, int64_t block_size,
                                  TensorView sorted_token_ids, TensorView experts_ids,
                                  TensorView num_tokens_post_pad, bool pad_sorted_token_ids,
                                  bool ignore_invalid_expert, TensorView expert_map,
                                  Stream stream) {
  const Device device = topk_ids.device;
  detail::check_range("num_experts", num_experts, 1, detail::kMaxDispatchExperts);
  run_align(detail::validate_align(topk_ids, num_experts, block_size, sorted_token_ids,
                                   experts_ids, num_tokens_post_pad, pad_sorted_token_ids,
                                   ignore_invalid_expert, expert_map, device),
            device, stream);
}

void prepare_moe_input(TensorView topk_ids, TensorView expert_offsets,
                       TensorView blockscale_offsets, TensorView problem_sizes1,
                       TensorView problem_sizes2, TensorView input_permutation,
                       TensorView output_permutation, int64_t num_experts, int64_t n, int64_t k,
                       TensorView expert_map, Stream stream) {
  const Device device = topk_ids.device;
  const detail::PrepareProblem p = detail::validate_prepare(
      topk_ids, expert_offsets, blockscale_offsets, problem_sizes1, problem_sizes2,
      input_permutation, output_permutation, num_experts, n, k, expert_map, device);
  if (device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::prepare_moe_input(p, stream), "prepare_moe_input");
  } else {
    cpu::prepare_moe_input(p);
  }
}

void shuffle_rows(TensorView input, TensorView dst2src_map, TensorView output, Stream stream) {
  const Device device = input.device;
  const detail::ShuffleRowsProblem p = detail::validate_shuffle_rows(input, dst2src_map, output, device);
  if (p.dst_rows == 0 || p.row_bytes == 0) return;
  if (device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::shuffle_rows(p, stream), "shuffle_rows");
  } else {
    cpu::shuffle_rows(p);
  }
}

}  // namespace moekit
