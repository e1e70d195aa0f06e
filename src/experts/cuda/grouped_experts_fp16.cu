// Prefill path of the GPU expert layer for fp16 (compiled out without CUTLASS).
#if defined(MOEKIT_WITH_CUTLASS)
#include "experts/cuda/grouped_experts.cuh"

namespace moekit::cuda {
template void run_grouped_experts<__half>(const GroupedExpertsArgs&, cudaStream_t);
}  // namespace moekit::cuda
#endif
