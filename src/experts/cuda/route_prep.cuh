// Groups the (token, slot) pairs by expert in one CTA: counts per expert, exclusive offsets, the
// token-tile list for the GEMMs, then a scatter of each pair to its sorted position.
//
// The order of pairs inside one expert comes from shared-memory atomics and may change from run to
// run; results do not, because every GEMM output row depends only on its own pair (fixed K order)
// and the combine reads the rows back by pair in slot order. A warp whose ids all name one expert
// adds once (the all-tokens-on-one-expert case would otherwise serialise on one address).
#pragma once

#include <cstdint>

#include "common/dependent_launch.cuh"

namespace moekit::cuda {

constexpr int kRoutePrepThreads = 1024;
constexpr int kIdsPerThread = 16;

__device__ __forceinline__ int bucket_add(int* counter, int key) {
  // Plain atomics when the warp's keys differ (with match_any aggregation for every add this
  // kernel took 135 us for 32768 ids over 128 experts on an H100); one add for the warp when they
  // are all the same.
  const unsigned active = __activemask();
  const int lane = threadIdx.x & 31;
  const int leader = __ffs(active) - 1;
  if (__all_sync(active, key == __shfl_sync(active, key, leader))) {
    int base = 0;
    if (lane == leader) base = atomicAdd(counter, __popc(active));
    base = __shfl_sync(active, base, leader);
    return base + __popc(active & ((1u << lane) - 1u));
  }
  return atomicAdd(counter, 1);
}

// Shared memory: counts[E], offsets[E], fill[E], tile_offsets[E + 1].
__global__ void __launch_bounds__(kRoutePrepThreads)
    route_prep_kernel(const int* __restrict__ topk_ids, int64_t P, int E, int tile_tokens,
                      int* __restrict__ sorted_pairs, int* __restrict__ pair_pos,
                      int4* __restrict__ tiles, int* __restrict__ num_tiles) {
  // GEMM 1 (launched with PDL) may get its CTAs resident now; they wait for this grid's results.
  allow_dependent_launch();
  extern __shared__ int smem[];
  int* counts = smem;
  int* offsets = counts + E;
  int* fill = offsets + E;
  int* tile_offsets = fill + E;  // E + 1
  const int tid = threadIdx.x;
  for (int e = tid; e < E; e += blockDim.x) {
    counts[e] = 0;
    fill[e] = 0;
  }
  __syncthreads();
  // Each thread loads kIdsPerThread ids before using any: one CTA must keep many loads in flight
  // or it pays one memory round trip per id per thread.
  const int64_t batch = int64_t(blockDim.x) * kIdsPerThread;
  for (int64_t base = 0; base < P; base += batch) {
    int ids[kIdsPerThread];
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j) {
      const int64_t i = base + int64_t(j) * blockDim.x + tid;
      ids[j] = i < P ? topk_ids[i] : -1;
    }
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j)
      if (ids[j] >= 0 && ids[j] < E) bucket_add(&counts[ids[j]], ids[j]);
  }
  __syncthreads();
  // One warp scans counts and tile counts: each lane owns a contiguous run of experts.
  if (tid < 32) {
    const int per_lane = (E + 31) / 32;
    const int e0 = min(E, tid * per_lane), e1 = min(E, e0 + per_lane);
    int rows = 0, ntiles = 0;
    for (int e = e0; e < e1; ++e) {
      rows += counts[e];
      ntiles += (counts[e] + tile_tokens - 1) / tile_tokens;
    }
    int rows_incl = rows, tiles_incl = ntiles;
    for (int d = 1; d < 32; d <<= 1) {
      const int r = __shfl_up_sync(0xffffffffu, rows_incl, d);
      const int t = __shfl_up_sync(0xffffffffu, tiles_incl, d);
      if (tid >= d) {
        rows_incl += r;
        tiles_incl += t;
      }
    }
    int row_off = rows_incl - rows, tile_off = tiles_incl - ntiles;
    for (int e = e0; e < e1; ++e) {
      offsets[e] = row_off;
      tile_offsets[e] = tile_off;
      row_off += counts[e];
      tile_off += (counts[e] + tile_tokens - 1) / tile_tokens;
    }
    if (tid == 31) {
      tile_offsets[E] = tiles_incl;
      *num_tiles = tiles_incl;
    }
  }
  __syncthreads();
  const int total_tiles = tile_offsets[E];
  for (int t = tid; t < total_tiles; t += blockDim.x) {
    // Largest e with tile_offsets[e] <= t (experts with no tiles share offsets with the next).
    int lo = 0, hi = E - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (tile_offsets[mid] <= t) lo = mid;
      else hi = mid - 1;
    }
    const int j = t - tile_offsets[lo];
    const int start = j * tile_tokens;
    tiles[t] = make_int4(lo, offsets[lo] + start, min(tile_tokens, counts[lo] - start), 0);
  }
  for (int64_t base = 0; base < P; base += batch) {
    int ids[kIdsPerThread];
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j) {
      const int64_t i = base + int64_t(j) * blockDim.x + tid;
      ids[j] = i < P ? topk_ids[i] : -1;
    }
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j) {
      const int64_t i = base + int64_t(j) * blockDim.x + tid;
      if (i >= P) continue;
      const int e = ids[j];
      int pos = -1;
      if (e >= 0 && e < E) {
        pos = offsets[e] + bucket_add(&fill[e], e);
        sorted_pairs[pos] = static_cast<int>(i);
      }
      pair_pos[i] = pos;
    }
  }
}

}  // namespace moekit::cuda
