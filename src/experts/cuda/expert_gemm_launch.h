// Tile dispatch of the expert GEMM: one explicit instantiation file per dtype
// (expert_gemm_bf16.cu, expert_gemm_fp16.cu) so the kernels build in parallel.
#pragma once

#include "experts/configs.h"
#include "experts/cuda/expert_gemm.cuh"

namespace moekit::cuda {

template <typename T>
void launch_expert_gemm(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s);

}  // namespace moekit::cuda
