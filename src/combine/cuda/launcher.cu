#include "combine/cuda/launcher.h"
#include "combine/cuda/moe_sum.cuh"
#include "common/cuda_check.h"

namespace moekit::cuda {
namespace {

int64_t grid_for(int64_t work_items, int threads) {
  int64_t blocks = (work_items + threads - 1) / threads;
  return blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks);
}

template <typename T>
void launch_moe_sum(const TensorView& input, const TensorView& output, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T) < 8 ? 16 / sizeof(T) : 8;
  const int64_t M = input.size(0), H = input.size(2);
  const int k = static_cast<int>(input.size(1));
  const int threads = 256;
  const int64_t items = M * ((H + kVec - 1) / kVec);
  moe_sum_kernel<T, kVec><<<grid_for(items, threads), threads, 0, stream>>>(
      static_cast<const T*>(input.data), static_cast<T*>(output.data), M, k, H);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void moe_sum(const TensorView& input, const TensorView& output, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  switch (input.dtype) {
    case DType::kFloat32: launch_moe_sum<float>(input, output, s); break;
    case DType::kFloat16: launch_moe_sum<__half>(input, output, s); break;
    default: launch_moe_sum<__nv_bfloat16>(input, output, s); break;
  }
}

}  // namespace moekit::cuda

namespace moekit::cuda {

void moe_sum_reduce(const TensorView&, const TensorView&, double, Stream) {
  detail::fail("moe_sum_reduce: the CUDA kernel is not in this build yet", ErrorKind::NotSupported);
}
void apply_shuffle_mul_sum(const TensorView&, const TensorView&, const TensorView&,
                           const TensorView&, Stream) {
  detail::fail("apply_shuffle_mul_sum: the CUDA kernel is not in this build yet",
               ErrorKind::NotSupported);
}

}  // namespace moekit::cuda
