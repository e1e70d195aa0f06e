// Grouped GEMM 1 with the activation in its epilogue (interleaved w13) for bf16, in its own unit so
// that it compiles beside the rest of the prefill path (compiled out without CUTLASS).
#if defined(MOEKIT_WITH_CUTLASS)
#include "experts/cuda/grouped_experts.cuh"

namespace moekit::cuda {
MOEKIT_GATE_UP_ACT_GEMM(__nv_bfloat16, GroupedTileId::kCoop128);
MOEKIT_GATE_UP_ACT_GEMM(__nv_bfloat16, GroupedTileId::kPingpong128);
}  // namespace moekit::cuda
#endif
