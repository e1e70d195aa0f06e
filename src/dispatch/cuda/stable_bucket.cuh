// Deterministic stable bucketing of n pairs by one thread-block cluster, without global scratch.
//
// The pairs [0, n) are cut into contiguous chunks, one per CTA of the cluster, and each CTA's chunk
// into contiguous sub-chunks, one per warp. Then:
//   1. count: every warp counts its sub-chunk per bucket into its own row of shared memory;
//      the CTA's total per bucket is published in shared memory for the cluster;
//   2. combine: every CTA reads the other CTAs' totals through distributed shared memory (the
//      cluster barrier orders it), giving the bucket totals and the count of earlier chunks;
//      a block scan of the (padded) totals gives the bucket starts; each warp's write cursor per
//      bucket = start + earlier CTAs + earlier warps of this CTA;
//   3. scatter: each warp walks its sub-chunk in ascending order, 32 pairs a round; the rank of a
//      pair among equal buckets of the round comes from warp_bucket_peers, so the slot of pair i is
//      start + (number of pairs of its bucket before i): ascending i inside every bucket, the same
//      result on every run, no atomics on global memory.
// The caller ends with cluster.sync() so that no CTA exits while another still reads its counts.
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "dispatch/cuda/small_bucket.cuh"

namespace moekit::cuda {

namespace cg = cooperative_groups;

inline constexpr int kBucketBatch = 8;  // rounds of ids loaded before they are used (loads in flight)
inline constexpr int kCursorBatch = 8;  // warp counts of a bucket loaded before they are rewritten

// Shared-memory layout for nb buckets and `warps` warps (int32 entries).
struct BucketSmem {
  int32_t* warp_cursor;  // [warps][nb]: counts, later write cursors
  int32_t* cta_count;    // [nb]: this CTA's count per bucket (read by the whole cluster)
  int32_t* cta_prefix;   // [nb]: pairs of the bucket in earlier CTAs
  int32_t* count;        // [nb]: pairs of the bucket in the whole input
  int32_t* start;        // [nb + 1]: first slot of the bucket; start[nb] = total slots
  int32_t* warp_sums;    // [32]: block-scan scratch

  static __host__ __device__ int64_t words(int nb, int warps) {
    return int64_t(warps) * nb + 4 * int64_t(nb) + 1 + 32;
  }
  __device__ BucketSmem(int32_t* base, int nb, int warps) {
    warp_cursor = base;
    cta_count = warp_cursor + int64_t(warps) * nb;
    cta_prefix = cta_count + nb;
    count = cta_prefix + nb;
    start = count + nb;
    warp_sums = start + nb + 1;
  }
};

struct SubChunk {
  int64_t begin, end;
};

// The contiguous pairs owned by this warp.
__device__ __forceinline__ SubChunk warp_sub_chunk(int64_t n, int cta, int ctas, int warp, int warps) {
  const int64_t cb = n * cta / ctas, ce = n * (cta + 1) / ctas;
  const int64_t len = ce - cb;
  return {cb + len * warp / warps, cb + len * (warp + 1) / warps};
}

// The pairs' buckets: src.id(i) loads the id of pair i, src.bucket(id) maps it to a bucket in
// [0, nb) or -1 (pair dropped). A warp loads kBucketBatch rounds of ids before mapping any.
template <typename Source>
__device__ __forceinline__ void load_buckets(const Source& src, int64_t base, int64_t end, int lane,
                                             int (&b)[kBucketBatch]) {
  int64_t id[kBucketBatch];
#pragma unroll
  for (int r = 0; r < kBucketBatch; ++r) {
    const int64_t i = base + r * 32 + lane;
    id[r] = i < end ? src.id(i) : 0;
  }
#pragma unroll
  for (int r = 0; r < kBucketBatch; ++r) b[r] = base + r * 32 + lane < end ? src.bucket(id[r]) : -1;
}

// Phase 1.
template <typename Source>
__device__ void count_buckets(const BucketSmem& s, int nb, int64_t n, const Source& src) {
  cg::cluster_group cluster = cg::this_cluster();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t x = threadIdx.x; x < int64_t(warps) * nb; x += blockDim.x) s.warp_cursor[x] = 0;
  __syncthreads();
  const SubChunk sub = warp_sub_chunk(n, int(cluster.block_rank()), int(cluster.num_blocks()), warp, warps);
  int32_t* row = s.warp_cursor + int64_t(warp) * nb;
  for (int64_t base = sub.begin; base < sub.end; base += 32 * kBucketBatch) {
    int b[kBucketBatch];
    load_buckets(src, base, sub.end, lane, b);
#pragma unroll
    for (int r = 0; r < kBucketBatch; ++r)
      if (b[r] >= 0) atomicAdd(row + b[r], 1);
  }
  __syncthreads();
  for (int bk = threadIdx.x; bk < nb; bk += blockDim.x) {
    int32_t total = 0;
#pragma unroll 8  // independent loads in flight (only nb threads work here: a serial chain shows)
    for (int w = 0; w < warps; ++w) total += s.warp_cursor[int64_t(w) * nb + bk];
    s.cta_count[bk] = total;
  }
  cluster.sync();  // publishes cta_count to the cluster
}

__device__ __forceinline__ int32_t padded_size(int32_t c, int32_t block) {
  return (c + block - 1) / block * block;
}

// Exclusive scan of padded_size(values[b]) over b in [0, nb) into out[0..nb]; out[nb] = total.
__device__ void block_scan_padded(const int32_t* values, int32_t* out, int32_t* warp_sums, int nb,
                                  int32_t block) {
  const int nthreads = blockDim.x, tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int seg = (nb + nthreads - 1) / nthreads;
  const int b0 = min(tid * seg, nb), b1 = min(b0 + seg, nb);
  int32_t local = 0;
  for (int b = b0; b < b1; ++b) local += padded_size(values[b], block);
  int32_t incl = local;
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int32_t v = __shfl_up_sync(0xffffffffu, incl, d);
    if (lane >= d) incl += v;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int warps = nthreads / 32;
    int32_t v = lane < warps ? warp_sums[lane] : 0;
    int32_t x = v;
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const int32_t y = __shfl_up_sync(0xffffffffu, x, d);
      if (lane >= d) x += y;
    }
    if (lane < warps) warp_sums[lane] = x - v;  // exclusive prefix of the warps
  }
  __syncthreads();
  int32_t running = incl - local + warp_sums[warp];
  for (int b = b0; b < b1; ++b) {
    out[b] = running;
    running += padded_size(values[b], block);
  }
  if (tid == nthreads - 1) out[nb] = running;
  __syncthreads();
}

// Phase 2: bucket totals, starts (buckets padded to multiples of `block`) and warp cursors.
__device__ void combine_buckets(const BucketSmem& s, int nb, int32_t block) {
  cg::cluster_group cluster = cg::this_cluster();
  const int ctas = int(cluster.num_blocks()), me = int(cluster.block_rank());
  const int warps = blockDim.x / 32;
  for (int bk = threadIdx.x; bk < nb; bk += blockDim.x) {
    int32_t prefix = 0, total = 0;
#pragma unroll 8
    for (int c = 0; c < ctas; ++c) {
      const int32_t v = c == me ? s.cta_count[bk] : cluster.map_shared_rank(s.cta_count, c)[bk];
      if (c < me) prefix += v;
      total += v;
    }
    s.cta_prefix[bk] = prefix;
    s.count[bk] = total;
  }
  __syncthreads();
  block_scan_padded(s.count, s.start, s.warp_sums, nb, block);
  for (int bk = threadIdx.x; bk < nb; bk += blockDim.x) {
    int32_t running = s.start[bk] + s.cta_prefix[bk];
    for (int w0 = 0; w0 < warps; w0 += kCursorBatch) {  // a batch of counts loaded, then rewritten
      int32_t c[kCursorBatch];
#pragma unroll
      for (int j = 0; j < kCursorBatch; ++j)
        c[j] = w0 + j < warps ? s.warp_cursor[int64_t(w0 + j) * nb + bk] : 0;
#pragma unroll
      for (int j = 0; j < kCursorBatch; ++j)
        if (w0 + j < warps) {
          s.warp_cursor[int64_t(w0 + j) * nb + bk] = running;
          running += c[j];
        }
    }
  }
  __syncthreads();
}

// Phase 3: write(i, slot) for every kept pair, drop(i) for every dropped one.
template <typename Source, typename Write, typename Drop>
__device__ void scatter_buckets(const BucketSmem& s, int nb, int64_t n, const Source& src,
                                const Write& write, const Drop& drop) {
  cg::cluster_group cluster = cg::this_cluster();
  const int warps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const SubChunk sub = warp_sub_chunk(n, int(cluster.block_rank()), int(cluster.num_blocks()), warp, warps);
  int32_t* cursor = s.warp_cursor + int64_t(warp) * nb;
  const unsigned lanes_below = (1u << lane) - 1;
  for (int64_t base = sub.begin; base < sub.end; base += 32 * kBucketBatch) {
    int b[kBucketBatch];
    load_buckets(src, base, sub.end, lane, b);
#pragma unroll
    for (int r = 0; r < kBucketBatch; ++r) {
      const int64_t i = base + r * 32 + lane;
      const unsigned peers = warp_bucket_peers(b[r], nb, lane);
      int32_t slot = 0;
      if (b[r] >= 0) slot = cursor[b[r]] + __popc(peers & lanes_below);
      __syncwarp();
      if (b[r] >= 0) {
        write(i, slot);
        if (lane == 31 - __clz(peers)) cursor[b[r]] += __popc(peers);
      } else if (i < sub.end) {
        drop(i);
      }
      __syncwarp();
    }
  }
}

}  // namespace moekit::cuda
