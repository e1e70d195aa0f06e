// Deterministic stable bucketing of n <= blockDim.x pairs by one CTA (decode sizes), without a
// cluster launch: at these sizes the cluster launch alone costs more than the whole job.
//
// Thread i owns pair i (its id is loaded once, into a register). Then:
//   1. rank in the warp: __match_any_sync groups the warp's lanes by bucket; a lane's rank is the
//      number of lower lanes of its bucket, and the lowest lane stores the warp's count of the
//      bucket in a [warps][nb] table (16-bit: at most blockDim.x pairs);
//   2. per bucket (a contiguous run of buckets per thread): the table column becomes the exclusive
//      prefix over warps, its sum the bucket's count; a block scan of the padded counts gives the
//      bucket starts (a second scan with another padding on request);
//   3. the slot of pair i = start + earlier warps + rank in the warp: ascending i inside every
//      bucket, the same result as the cluster path (stable_bucket.cuh) and the oracle.
// Four barriers, no atomics, no global scratch; the caller writes the outputs.
#pragma once

#include <cstdint>

#include "common/dependent_launch.cuh"

namespace moekit::cuda {

inline constexpr int kSmallBucketMaxThreads = 1024;

// Shared memory of the small path for n pairs and nb buckets (int32 words): the table, count[nb],
// start[nb + 1], start2[nb + 1], warp sums [2][32].
__host__ __device__ inline int64_t small_bucket_table_words(int64_t n, int64_t nb) {
  return ((n + 31) / 32 * nb + 1) / 2;
}
__host__ __device__ inline int64_t small_bucket_smem_words(int64_t n, int64_t nb) {
  return small_bucket_table_words(n, nb) + 3 * nb + 2 + 64;
}

struct SmallBucketSmem {
  uint16_t* table;  // [warps of pairs][nb]: counts, then the pairs of earlier warps
  int32_t* count;   // [nb]
  int32_t* start;   // [nb + 1]: starts with the first padding; start[nb] = total
  int32_t* start2;  // [nb + 1]: starts with the second padding (when asked for)
  int32_t* warp_sums;  // [2][32]
  __device__ SmallBucketSmem(int32_t* base, int n, int nb) {
    table = reinterpret_cast<uint16_t*>(base);
    count = base + small_bucket_table_words(n, nb);
    start = count + nb;
    start2 = start + nb + 1;
    warp_sums = start2 + nb + 1;
  }
};

// The pair of this thread after small_bucket(): its bucket (-1: none or dropped) and its slot.
struct SmallBucketPair {
  int bucket;
  int32_t slot;
};

__device__ __forceinline__ int32_t round_up_to(int32_t c, int32_t block) {
  return (c + block - 1) / block * block;
}

// Inclusive scan of two values over a full warp.
__device__ __forceinline__ int2 warp_inclusive_scan2(int2 v, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int32_t x = __shfl_up_sync(0xffffffffu, v.x, d);
    const int32_t y = __shfl_up_sync(0xffffffffu, v.y, d);
    if (lane >= d) {
      v.x += x;
      v.y += y;
    }
  }
  return v;
}

// Block-wide exclusive scan of two per-thread values (every thread calls it); returns the prefix of
// this thread's values and sets the totals.
__device__ __forceinline__ int2 block_exclusive_scan2(int2 v, int32_t* warp_sums, int2& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const int2 incl = warp_inclusive_scan2(v, lane);
  if (lane == 31) {
    warp_sums[warp] = incl.x;
    warp_sums[32 + warp] = incl.y;
  }
  __syncthreads();
  // Every warp scans the warp sums itself (no second barrier).
  const int2 w = make_int2(lane < warps ? warp_sums[lane] : 0, lane < warps ? warp_sums[32 + lane] : 0);
  const int2 wincl = warp_inclusive_scan2(w, lane);
  total = make_int2(__shfl_sync(0xffffffffu, wincl.x, 31), __shfl_sync(0xffffffffu, wincl.y, 31));
  const int32_t before_x = __shfl_sync(0xffffffffu, wincl.x - w.x, warp);
  const int32_t before_y = __shfl_sync(0xffffffffu, wincl.y - w.y, warp);
  return make_int2(before_x + incl.x - v.x, before_y + incl.y - v.y);
}

// Buckets the n pairs (n <= blockDim.x; src as in stable_bucket.cuh). Fills s.count, s.start (counts
// padded to `block`) and, when block2 > 0, s.start2 (padded to block2), all visible to the whole CTA
// on return. before_ids() runs after the table is cleared and before any id is read.
template <typename Source, typename BeforeIds>
__device__ SmallBucketPair small_bucket(const SmallBucketSmem& s, int nb, int n, const Source& src,
                                        int32_t block, int32_t block2, const BeforeIds& before_ids) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nthreads = blockDim.x;
  const int pair_warps = (n + 31) / 32;
  uint32_t* table_words = reinterpret_cast<uint32_t*>(s.table);
  const int words = static_cast<int>(small_bucket_table_words(n, nb));
  for (int x = tid; x < words; x += nthreads) table_words[x] = 0;
  before_ids();
  int b = -1;
  if (tid < n) b = src.bucket(src.id(tid));
  __syncthreads();

  int rank = 0;
  if (warp < pair_warps) {
    // Lanes without a bucket get a key no other lane has.
    const unsigned key = b >= 0 ? unsigned(b) : 0x80000000u | unsigned(lane);
    const unsigned peers = __match_any_sync(0xffffffffu, key);
    rank = __popc(peers & ((1u << lane) - 1u));
    if (b >= 0 && rank == 0) s.table[warp * nb + b] = static_cast<uint16_t>(__popc(peers));
  }
  __syncthreads();

  const int seg = (nb + nthreads - 1) / nthreads;
  const int b0 = min(tid * seg, nb), b1 = min(b0 + seg, nb);
  int2 local = make_int2(0, 0);
  for (int bk = b0; bk < b1; ++bk) {
    int32_t run = 0;
    for (int w0 = 0; w0 < pair_warps; w0 += 8) {  // 8 counts loaded, then rewritten (loads in flight)
      int32_t c[8];
#pragma unroll
      for (int j = 0; j < 8; ++j) c[j] = w0 + j < pair_warps ? s.table[(w0 + j) * nb + bk] : 0;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (w0 + j < pair_warps) {
          s.table[(w0 + j) * nb + bk] = static_cast<uint16_t>(run);
          run += c[j];
        }
    }
    s.count[bk] = run;
    local.x += round_up_to(run, block);
    if (block2 > 0) local.y += round_up_to(run, block2);
  }
  int2 total;
  int2 running = block_exclusive_scan2(local, s.warp_sums, total);
  for (int bk = b0; bk < b1; ++bk) {
    const int32_t c = s.count[bk];
    s.start[bk] = running.x;
    running.x += round_up_to(c, block);
    if (block2 > 0) {
      s.start2[bk] = running.y;
      running.y += round_up_to(c, block2);
    }
  }
  if (tid == 0) {
    s.start[nb] = total.x;
    if (block2 > 0) s.start2[nb] = total.y;
  }
  __syncthreads();

  SmallBucketPair pair{b, 0};
  if (b >= 0) pair.slot = s.start[b] + s.table[warp * nb + b] + rank;
  return pair;
}

// Index of the bucket holding slot `pos`: the last b with start[b] <= pos (empty buckets skipped).
__device__ __forceinline__ int bucket_of_slot(const int32_t* start, int nb, int64_t pos) {
  int lo = 0, hi = nb;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (start[mid] <= pos) lo = mid;
    else hi = mid;
  }
  return lo;
}

// dst[0, count) = value by the whole CTA, 16-byte stores where the address allows.
__device__ __forceinline__ void block_fill_int32(int32_t* dst, int64_t count, int32_t value) {
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int64_t to_boundary = static_cast<int64_t>(((16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15) / 4);
  const int64_t head = count < to_boundary ? count : to_boundary;
  if (tid < head) dst[tid] = value;
  const int64_t vecs = (count - head) / 4;
  int4* body = reinterpret_cast<int4*>(dst + head);
  const int4 v = make_int4(value, value, value, value);
  for (int64_t j = tid; j < vecs; j += nthreads) body[j] = v;
  for (int64_t j = head + vecs * 4 + tid; j < count; j += nthreads) dst[j] = value;
}

}  // namespace moekit::cuda
