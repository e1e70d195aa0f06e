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

}  // namespace moekit
