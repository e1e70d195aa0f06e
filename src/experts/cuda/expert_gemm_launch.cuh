// Host side of the expert GEMM: shared-memory attribute, grid size, tile dispatch.
#pragma once

#include "common/cuda_check.h"
#include "experts/cuda/expert_gemm_launch.h"

namespace moekit::cuda {
namespace {

template <typename T, int BN, int BT, int BK, int WN, int WT, int WK, int STAGES, int MIN_BLOCKS>
void launch_gemm(const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t stream) {
  using G = ExpertGemm<T, BN, BT, BK, WN, WT, WK, STAGES>;
  auto kernel = expert_gemm_kernel<T, BN, BT, BK, WN, WT, WK, STAGES, MIN_BLOCKS>;
  // Raising the dynamic shared-memory limit is a host-side attribute, not a stream operation:
  // legal during graph capture. Done on every call (cheap) so no static state is needed.
  MOEKIT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmemBytes));
  const int64_t groups = (tile_bound + p.tile_group - 1) / p.tile_group;
  const int64_t blocks = groups * p.tile_group * p.row_tiles;
  if (blocks == 0) return;
  launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(G::kThreads), G::kSmemBytes,
                   stream, experts_pdl_enabled(), p);
}

// The tile shapes come from the one table in configs.h.
template <typename T, int Id>
void launch_tile(const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s) {
  constexpr GemmTile c = kGemmTiles[Id];
  launch_gemm<T, c.bn, c.bt, c.bk, c.wn, c.wt, c.wk, c.stages, c.min_blocks>(p, tile_bound, s);
}

// Each table entry is one instantiation; the id picks it at run time.
template <typename T, int Id = 0>
void dispatch_tile(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s) {
  if constexpr (Id < int(TileId::kCount)) {
    if (int(id) == Id) launch_tile<T, Id>(p, tile_bound, s);
    else dispatch_tile<T, Id + 1>(id, p, tile_bound, s);
  }
}

}  // namespace

template <typename T>
void launch_expert_gemm(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s) {
  dispatch_tile<T>(id, p, tile_bound, s);
}

}  // namespace moekit::cuda
