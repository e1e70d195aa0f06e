// Expert GEMM kernels for fp16.
#include "experts/cuda/expert_gemm_launch.cuh"

namespace moekit::cuda {
template void launch_expert_gemm<__half>(TileId, const ExpertGemmParams&, int64_t, cudaStream_t);
}  // namespace moekit::cuda
