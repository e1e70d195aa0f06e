// Grouped GEMM 1 with the activation in its epilogue (interleaved w13) for bf16, in its own unit so
// that it compiles beside the rest of the prefill path (compiled out without CUTLASS).
#if defined(MOEKIT_WITH_CUTLASS)
#include "experts/cuda/grouped_experts.cuh"

namespace moekit::cuda {
template void run_grouped_gate_up_act_gemm<__nv_bfloat16>(const GroupArrays<__nv_bfloat16, __nv_bfloat16>&, int,
                                               const GroupedEpilogueArgs&, void*, cudaStream_t);
}  // namespace moekit::cuda
#endif
