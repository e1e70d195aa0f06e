// Groups the (token, slot) pairs by expert: counts per expert, exclusive offsets, the token-tile
// list for the GEMMs, then a scatter of each pair to its sorted position. One CTA does it all below
// kMultiCtaPrepMinPairs pairs (launcher.h); past that, one CTA's scattered stores were the
// bottleneck (42 us for 32768 pairs on an H100), so one CTA a chunk of pairs scatters it: up to
// kRecountMaxPairs each CTA counts every id itself (no CTA waits for another); past that a
// cooperative grid does per-chunk counts, one CTA turning them into per-chunk bases and the tile
// list, and per-chunk scatters from those bases, with grid barriers between.
//
// The order of pairs inside one expert comes from shared-memory atomics and may change from run to
// run; results do not, because every GEMM output row depends only on its own pair (fixed K order)
// and the combine reads the rows back by pair in slot order. A warp whose ids all name one expert
// adds once (the all-tokens-on-one-expert case would otherwise serialise on one address).
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "common/dependent_launch.cuh"
#include "experts/cuda/expert_ids.cuh"
#include "experts/cuda/launcher.h"

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

// Calls visit(pair, id) for each pair of [begin, end) this thread owns. Each thread loads
// kIdsPerThread ids before using any: a CTA must keep many loads in flight or it pays one memory
// round trip per id per thread.
template <typename Visit>
__device__ __forceinline__ void for_each_pair(const int* __restrict__ topk_ids, int64_t begin,
                                              int64_t end, const Visit& visit) {
  const int64_t batch = int64_t(blockDim.x) * kIdsPerThread;
  for (int64_t base = begin; base < end; base += batch) {
    int ids[kIdsPerThread];
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j) {
      const int64_t i = base + int64_t(j) * blockDim.x + threadIdx.x;
      ids[j] = i < end ? topk_ids[i] : -1;
    }
#pragma unroll
    for (int j = 0; j < kIdsPerThread; ++j) {
      const int64_t i = base + int64_t(j) * blockDim.x + threadIdx.x;
      if (i < end) visit(i, ids[j]);
    }
  }
}

// Counts the ids of pairs [begin, end) into counts[] (shared memory).
__device__ __forceinline__ void count_pairs(const int* __restrict__ topk_ids, int64_t begin,
                                            int64_t end, int E, int* counts) {
  for_each_pair(topk_ids, begin, end, [&](int64_t, int e) {
    if (is_layer_expert(e, E)) bucket_add(&counts[e], e);
  });
}

// Writes each pair of [begin, end) to its sorted position: fill[e] (shared memory) is the next free
// position of expert e.
__device__ __forceinline__ void scatter_pairs(const int* __restrict__ topk_ids, int64_t begin,
                                              int64_t end, int E, int* fill,
                                              int* __restrict__ sorted_pairs,
                                              int* __restrict__ pair_pos) {
  for_each_pair(topk_ids, begin, end, [&](int64_t i, int e) {
    int pos = -1;
    if (is_layer_expert(e, E)) {
      pos = bucket_add(&fill[e], e);
      sorted_pairs[pos] = static_cast<int>(i);
    }
    pair_pos[i] = pos;
  });
}

// From counts[E] (shared memory, final): offsets[e] (exclusive prefix), tile_offsets[E + 1], and,
// where `tiles` is not null, the tile list and *num_tiles. offsets[] and tile_offsets[] are final
// for every thread when it returns (it synchronises after the scan; the tile list only reads them).
__device__ __forceinline__ void offsets_and_tiles(const int* counts, int* offsets, int* tile_offsets,
                                                  int E, int tile_tokens, int4* __restrict__ tiles,
                                                  int* __restrict__ num_tiles) {
  const int tid = threadIdx.x;
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
      if (tiles) *num_tiles = tiles_incl;
    }
  }
  __syncthreads();
  if (!tiles) return;
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
}

// The one-CTA form. Shared memory: counts[E], offsets[E], fill[E], tile_offsets[E + 1].
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
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  count_pairs(topk_ids, 0, P, E, counts);
  __syncthreads();
  offsets_and_tiles(counts, offsets, tile_offsets, E, tile_tokens, tiles, num_tiles);
  for (int e = threadIdx.x; e < E; e += blockDim.x) fill[e] = offsets[e];
  __syncthreads();
  scatter_pairs(topk_ids, 0, P, E, fill, sorted_pairs, pair_pos);
}

// Multi-CTA form without a grid barrier, up to kRecountMaxPairs pairs (launcher.h): CTA c scatters
// chunk c of the pairs after counting every id itself, split into before[e] (expert e's pairs in
// chunks before c) and counts[e] (all of them), so that no CTA waits for another; CTA 0 writes the
// tile list. Every CTA reads all ids (at most 256 KB, from L2): cheaper than the grid barriers of
// the cooperative form below. Shared memory: 4E + 1 ints.
__global__ void __launch_bounds__(kRoutePrepThreads)
    route_prep_recount_kernel(const int* __restrict__ topk_ids, int64_t P, int64_t chunk, int E, int tile_tokens,
                              int* __restrict__ sorted_pairs, int* __restrict__ pair_pos,
                              int4* __restrict__ tiles, int* __restrict__ num_tiles) {
  allow_dependent_launch();
  extern __shared__ int smem[];
  int* before = smem;  // then the next free position of each expert in this chunk
  int* counts = before + E;
  int* offsets = counts + E;
  int* tile_offsets = offsets + E;  // E + 1
  for (int e = threadIdx.x; e < E; e += blockDim.x) before[e] = counts[e] = 0;
  __syncthreads();
  const int64_t begin = int64_t(blockIdx.x) * chunk, end = min(P, begin + chunk);
  count_pairs(topk_ids, 0, begin, E, before);
  count_pairs(topk_ids, begin, P, E, counts);
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += blockDim.x) counts[e] += before[e];
  __syncthreads();
  offsets_and_tiles(counts, offsets, tile_offsets, E, tile_tokens, blockIdx.x == 0 ? tiles : nullptr, num_tiles);
  for (int e = threadIdx.x; e < E; e += blockDim.x) before[e] += offsets[e];
  __syncthreads();
  scatter_pairs(topk_ids, begin, end, E, before, sorted_pairs, pair_pos);
}

// Multi-CTA form, one cooperative launch (all CTAs resident): CTAs walk the chunks of pairs
// (c = blockIdx.x, + gridDim.x, ...) and count each into cta_counts[c * E + e]; after a grid
// barrier CTA 0 turns those into the number of expert-e pairs in chunks before c, writes expert e's
// offset to cta_counts[chunks * E + e] and the tile list; after a second barrier each CTA scatters
// its chunks from those bases. One launch in place of three (count, offsets, scatter): at 8192 -
// 32768 pairs each of those took 4-6 us, mostly start-up and drain.
// Shared memory: 4E + 1 ints (CTA 0's offsets and tile list; the others use E of them).
__global__ void __launch_bounds__(kRoutePrepThreads)
    route_prep_grid_kernel(const int* __restrict__ topk_ids, int64_t P, int64_t chunk, int E,
                           int tile_tokens, int* __restrict__ cta_counts, int* __restrict__ sorted_pairs,
                           int* __restrict__ pair_pos, int4* __restrict__ tiles, int* __restrict__ num_tiles) {
  allow_dependent_launch();
  extern __shared__ int smem[];
  const int64_t chunks = (P + chunk - 1) / chunk;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    for (int e = threadIdx.x; e < E; e += blockDim.x) smem[e] = 0;
    __syncthreads();
    count_pairs(topk_ids, c * chunk, min(P, (c + 1) * chunk), E, smem);
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) cta_counts[c * E + e] = smem[e];
    __syncthreads();
  }
  cooperative_groups::this_grid().sync();

  if (blockIdx.x == 0) {
    int* counts = smem;
    int* offsets = counts + E;
    int* tile_offsets = offsets + 2 * E;  // E words between them unused
    constexpr int kLoads = 8;  // chunk counts loaded before any is rewritten (loads in flight)
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
      int run = 0;
      for (int64_t c0 = 0; c0 < chunks; c0 += kLoads) {
        int v[kLoads];
#pragma unroll
        for (int j = 0; j < kLoads; ++j) v[j] = c0 + j < chunks ? cta_counts[(c0 + j) * E + e] : 0;
#pragma unroll
        for (int j = 0; j < kLoads; ++j)
          if (c0 + j < chunks) {
            cta_counts[(c0 + j) * E + e] = run;
            run += v[j];
          }
      }
      counts[e] = run;
    }
    __syncthreads();
    offsets_and_tiles(counts, offsets, tile_offsets, E, tile_tokens, tiles, num_tiles);
    for (int e = threadIdx.x; e < E; e += blockDim.x) cta_counts[chunks * E + e] = offsets[e];
  }
  cooperative_groups::this_grid().sync();

  int* fill = smem;
  for (int64_t c = blockIdx.x; c < chunks; c += gridDim.x) {
    for (int e = threadIdx.x; e < E; e += blockDim.x) fill[e] = cta_counts[chunks * E + e] + cta_counts[c * E + e];
    __syncthreads();
    scatter_pairs(topk_ids, c * chunk, min(P, (c + 1) * chunk), E, fill, sorted_pairs, pair_pos);
    __syncthreads();
  }
}

}  // namespace moekit::cuda
