// Tile dispatch of the expert GEMM: one explicit instantiation file per dtype
// (expert_gemm_bf16.cu, expert_gemm_fp16.cu) so the kernels build in parallel.
#pragma once

#include "common/cuda_check.h"
#include "common/dependent_launch.cuh"
#include "experts/configs.h"
#include "experts/cuda/expert_gemm.cuh"

namespace moekit::cuda {

// Whether the expert path's kernels launch with programmatic dependent launch (launch_dependent).
// MOEKIT_EXPERTS_PDL=0 turns it off (plain stream order), for debugging and A/B timing.
bool experts_pdl_enabled();

template <typename T>
void launch_expert_gemm(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s);

// CTAs of tile `id` resident per SM on the current device (occupancy API; a tile relies on at least
// its min_blocks: tested).
template <typename T>
int expert_gemm_ctas_per_sm(TileId id);

}  // namespace moekit::cuda
