// Expert GEMM kernels for bf16.
#include "experts/cuda/expert_gemm_launch.cuh"

namespace moekit::cuda {
template void launch_expert_gemm<__nv_bfloat16>(TileId, const ExpertGemmParams&, int64_t, cudaStream_t);
template int expert_gemm_ctas_per_sm<__nv_bfloat16>(TileId);
}  // namespace moekit::cuda
