// Grouped GEMM 1 with the activation in its epilogue (interleaved w13), coop tile, fp16: one unit per
// tile and dtype so that they compile side by side (compiled out without CUTLASS).
#if defined(MOEKIT_WITH_CUTLASS)
#include "experts/cuda/grouped_experts.cuh"

namespace moekit::cuda {
MOEKIT_GATE_UP_ACT_GEMM(__half, int(GroupedTileId::kCoop128));
}  // namespace moekit::cuda
#endif
