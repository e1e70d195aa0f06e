// Public combine ops: validate on the host, then run on the tensors' device.
#include "combine/cpu/kernels.h"
#include "combine/cuda/launcher.h"
#include "combine/validate.h"
#include "common/backend.h"
#include "moekit/combine.h"

namespace moekit {

void moe_sum(TensorView input, TensorView output, Stream stream) {
  detail::validate_moe_sum(input, output, input.device);
  if (input.numel() == 0) return;
  if (input.device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::moe_sum(input, output, stream), "moe_sum");
  } else {
    cpu::moe_sum(input, output);
  }
}

void moe_sum_reduce(TensorView input, TensorView output, double routed_scaling_factor,
                    Stream stream) {
  detail::validate_moe_sum_reduce(input, output, routed_scaling_factor, input.device);
  if (output.numel() == 0) return;
  if (input.device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::moe_sum_reduce(input, output, routed_scaling_factor, stream),
                     "moe_sum_reduce");
  } else {
    cpu::moe_sum_reduce(input, output, routed_scaling_factor);
  }
}

void apply_shuffle_mul_sum(TensorView input, TensorView output, TensorView permutation,
                           TensorView factors, Stream stream) {
  detail::validate_apply_shuffle_mul_sum(input, output, permutation, factors, output.device);
  if (output.numel() == 0) return;
  if (output.device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::apply_shuffle_mul_sum(input, output, permutation, factors, stream),
                     "apply_shuffle_mul_sum");
  } else {
    cpu::apply_shuffle_mul_sum(input, output, permutation, factors);
  }
}

}  // namespace moekit
