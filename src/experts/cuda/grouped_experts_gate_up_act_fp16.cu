// Grouped GEMM 1 with the activation in its epilogue (interleaved w13) for fp16, in its own unit so
// that it compiles beside the rest of the prefill path (compiled out without CUTLASS).
#if defined(MOEKIT_WITH_CUTLASS)
#include "experts/cuda/grouped_experts.cuh"

namespace moekit::cuda {
template void run_grouped_gate_up_act_gemm<__half>(const GroupArrays<__half, __half>&, int,
                                               const GroupedEpilogueArgs&, void*, cudaStream_t);
}  // namespace moekit::cuda
#endif
