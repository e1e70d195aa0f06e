// Host side of the expert GEMM: shared-memory attribute, grid size, tile dispatch.
#pragma once

#include "common/cuda_check.h"
#include "experts/cuda/expert_gemm_launch.h"

namespace moekit::cuda {
namespace {

// Calls f(kernel, threads, shared bytes) with the instantiation of table entry `id` (configs.h):
// each entry is one instantiation, the id picks it at run time.
template <typename T, int Id = 0, typename F>
void with_tile_kernel(TileId id, F&& f) {
  if constexpr (Id < int(TileId::kCount)) {
    if (int(id) != Id) return with_tile_kernel<T, Id + 1>(id, f);
    constexpr GemmTile c = kGemmTiles[Id];
    using G = ExpertGemm<T, c.bn, c.bt, c.bk, c.wn, c.wt, c.wk, c.stages>;
    auto kernel = expert_gemm_kernel<T, c.bn, c.bt, c.bk, c.wn, c.wt, c.wk, c.stages, c.min_blocks>;
    // Raising the dynamic shared-memory limit is a host-side attribute, not a stream operation:
    // legal during graph capture. Done on every call (cheap) so no static state is needed.
    MOEKIT_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmemBytes));
    f(kernel, G::kThreads, G::kSmemBytes);
  }
}

}  // namespace

template <typename T>
void launch_expert_gemm(TileId id, const ExpertGemmParams& p, int64_t tile_bound, cudaStream_t s) {
  const int64_t groups = (tile_bound + p.tile_group - 1) / p.tile_group;
  const int64_t blocks = groups * p.tile_group * p.row_tiles;
  if (blocks == 0) return;
  with_tile_kernel<T>(id, [&](auto kernel, int threads, int smem) {
    launch_dependent(kernel, dim3(static_cast<unsigned>(blocks)), dim3(threads), smem, s, experts_pdl_enabled(), p);
  });
}

template <typename T>
int expert_gemm_ctas_per_sm(TileId id) {
  int n = 0;
  with_tile_kernel<T>(id, [&](auto kernel, int threads, int smem) {
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, smem));
  });
  return n;
}

}  // namespace moekit::cuda
