// Expert GEMM kernels for fp16.
#include "experts/cuda/expert_gemm_launch.cuh"

namespace moekit::cuda {
template void launch_expert_gemm<__half>(TileId, const ExpertGemmParams&, int64_t, cudaStream_t);
template int expert_gemm_ctas_per_sm<__half>(TileId);
}  // namespace moekit::cuda
