// Deterministic stable bucketing of n <= blockDim.x pairs by one CTA (decode sizes), without a
// cluster launch: at these sizes the cluster launch alone costs more than the whole job.
//
// Thread i owns pair i (its id is loaded once, into a register). Then:
//   1. rank in the warp: warp_bucket_peers groups the warp's lanes by bucket; a lane's rank is the
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

// The lanes of the warp whose bucket equals this lane's b (b in [0, nb); b < 0: none, and then
// only the lane itself): __match_any_sync's result from one ballot per bit of the bucket index, as
// CUB's MatchAny ranks radix digits. MATCH.ANY took ~0.2 us more in the align kernel behind the
// router at 512 pairs (H200: moe_align_block_size M=64 deepseek-v3 3.38 -> 3.19 us, bench/RESULTS.md).
__device__ __forceinline__ unsigned warp_bucket_peers(int b, int nb, int lane) {
  const int bits = 32 - __clz(max(nb - 1, 1));
  unsigned peers = __ballot_sync(0xffffffffu, b >= 0);
#pragma unroll 4
  for (int bit = 0; bit < bits; ++bit) {
    const bool one = (b >> bit) & 1;
    const unsigned set = __ballot_sync(0xffffffffu, one);
    peers &= one ? set : ~set;
  }
  return b >= 0 ? peers : 1u << lane;
}

// Inclusive scan of one value over a full warp.
__device__ __forceinline__ int32_t warp_inclusive_scan(int32_t v, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const int32_t x = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += x;
  }
  return v;
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
    const unsigned peers = warp_bucket_peers(b, nb, lane);
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

// Two-barrier bucketing of n <= blockDim.x pairs into nb <= kChunkBucketMaxBuckets buckets (decode
// sizes): small_bucket's result without its table clearing barrier, block scan and starts barrier.
// The caller clears the shared memory (chunk_bucket_clear) and passes one barrier before
// chunk_bucket(), which then needs a single barrier of its own:
//   1. as in small_bucket, a pair ranks among its warp's lanes of the same bucket (warp_bucket_peers)
//      and the lowest such lane stores the warp's count in a [warps][nb] table; it also adds that
//      count to count[b] (shared atomics: the sums and the masks below do not depend on the order)
//      and to chunk_blocks[b / 32] the blocks it adds to the bucket, ceil(new / block) -
//      ceil(old / block) (the sum telescopes to the bucket's blocks), and marks the bucket in
//      chunk_occupied[b / 32] and, once over one block, in chunk_over[b / 32];
//   2. after the barrier a pair's bucket starts after the blocks of the earlier chunks (one warp
//      scan of <= 32 chunk sums) plus one block per occupied lower bucket of its chunk (a popcount)
//      plus the extra blocks of its chunk's lower buckets of more than one block (rare at decode
//      sizes: a loop over their bits); its slot adds the counts of earlier warps (<= 31 table
//      reads) and its rank in the warp. Ascending pair index inside each bucket, as small_bucket.
// (Deriving the chunk sums and masks from count[] after the barrier instead, a warp sum and two
// ballots per chunk of 32 buckets in every warp, took 0.6-1.0 us more on an H200: bench/RESULTS.md.)
inline constexpr int kChunkBucketMaxBuckets = 1024;

__host__ __device__ inline int64_t chunk_bucket_table_words(int64_t n, int64_t nb) {
  return ((n + 31) / 32 * nb + 1) / 2;
}
// Shared memory (int32 words): count[nb], chunk_blocks[32], chunk_occupied[32], chunk_over[32],
// then the uint16 table.
__host__ __device__ inline int64_t chunk_bucket_smem_words(int64_t n, int64_t nb) {
  return nb + 3 * 32 + chunk_bucket_table_words(n, nb);
}

struct ChunkBucketSmem {
  int32_t* words;
  int32_t* count;           // [nb]
  int32_t* chunk_blocks;    // [32]: blocks of the buckets 32c .. 32c + 31
  uint32_t* chunk_occupied; // [32]: bit j: bucket 32c + j holds a pair
  uint32_t* chunk_over;     // [32]: bit j: bucket 32c + j holds more than one block of pairs
  uint16_t* table;          // [warps of pairs][nb]
  int total_words;
  __device__ ChunkBucketSmem(int32_t* base, int n, int nb) {
    words = base;
    count = base;
    chunk_blocks = count + nb;
    chunk_occupied = reinterpret_cast<uint32_t*>(chunk_blocks + 32);
    chunk_over = chunk_occupied + 32;
    table = reinterpret_cast<uint16_t*>(chunk_over + 32);
    total_words = static_cast<int>(chunk_bucket_smem_words(n, nb));
  }
};

// Zeroes the whole scratch (every thread calls it); a barrier must follow before chunk_bucket().
__device__ __forceinline__ void chunk_bucket_clear(const ChunkBucketSmem& s) {
  for (int x = threadIdx.x; x < s.total_words; x += blockDim.x) s.words[x] = 0;
}

// The pair of this thread after chunk_bucket(): its bucket (-1: none) and slot; the bucket's first
// pair also gets the bucket's first block and its block count (0 for every other thread), so it
// writes the bucket's block experts.
struct ChunkBucketPair {
  int bucket;
  int32_t slot;
  int32_t first_block;
  int32_t blocks;
};

__device__ __forceinline__ int32_t blocks_of(int32_t c, int32_t block) { return (c + block - 1) / block; }

// Every thread calls it with its pair's bucket b (-1: none; only threads < n may have one), after
// chunk_bucket_clear() and a barrier. Returns the pair and, in total, the padded total.
__device__ __forceinline__ ChunkBucketPair chunk_bucket(const ChunkBucketSmem& s, int nb, int n, int b,
                                                        int32_t block, int32_t& total) {
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int pair_warps = (n + 31) / 32;
  int rank = 0;
  if (warp < pair_warps) {
    const unsigned peers = warp_bucket_peers(b, nb, lane);
    rank = __popc(peers & ((1u << lane) - 1u));
    if (b >= 0 && rank == 0) {
      const int32_t c = __popc(peers);
      s.table[warp * nb + b] = static_cast<uint16_t>(c);
      const int32_t old = atomicAdd(&s.count[b], c);
      const int32_t added = blocks_of(old + c, block) - blocks_of(old, block);
      const uint32_t bit = 1u << (b & 31);
      if (added) atomicAdd(&s.chunk_blocks[b >> 5], added);
      if (old == 0) atomicOr(&s.chunk_occupied[b >> 5], bit);
      if (old + c > block) atomicOr(&s.chunk_over[b >> 5], bit);
    }
  }
  __syncthreads();

  // Blocks before each chunk: lane c holds chunk c's (every warp computes them).
  const int chunks = (nb + 31) / 32;
  const int32_t mine = lane < chunks ? s.chunk_blocks[lane] : 0;
  const int32_t incl = warp_inclusive_scan(mine, lane);
  total = __shfl_sync(0xffffffffu, incl, 31) * block;
  const int chunk = b >= 0 ? b >> 5 : 0;
  const int32_t chunk_start = __shfl_sync(0xffffffffu, incl - mine, chunk);

  ChunkBucketPair pair{b, 0, 0, 0};
  if (b < 0) return pair;
  int32_t earlier = 0;  // pairs of bucket b in earlier warps
#pragma unroll 8
  for (int w = 0; w < warp; ++w) earlier += s.table[w * nb + b];
  const uint32_t below = (1u << (b & 31)) - 1u;
  int32_t first = chunk_start + __popc(s.chunk_occupied[chunk] & below);
  for (uint32_t m = s.chunk_over[chunk] & below; m; m &= m - 1u)
    first += blocks_of(s.count[(chunk << 5) + __ffs(m) - 1], block) - 1;
  pair.slot = first * block + earlier + rank;
  if (earlier + rank == 0) {
    pair.first_block = first;
    pair.blocks = blocks_of(s.count[b], block);
  }
  return pair;
}

// Bucketing of the pairs of at most kRowMaskMaxRows rows of a router's output (route_and_align's
// align behind the router): the valid ids of a row are distinct, so pair (row r, bucket b) ranks
// after exactly the rows below r that have a pair in b. Each bucket keeps a 64-bit mask of its rows
// (one shared atomicOr per pair, on mostly distinct words: order-free, deterministic); a pair's rank
// is a popcount of its bucket's mask below its row. The bucket sums are done once per CTA: after
// the barrier that follows the atomicOrs, one warp per chunk of 32 buckets scans its chunk's blocks
// (each bucket's blocks below it in the chunk, and the chunk's sum); after one more barrier a pair's
// first block is a warp scan of the <= 32 chunk sums plus its bucket's in-chunk prefix: 4 shared
// loads a lane, where summing every bucket in every warp took 4 * ceil(nb / 32) (route_and_align
// M=64 on an H100, 2026-11-26: 256-expert gate 6.11 -> 5.64 us, 384 experts 6.51 -> 5.76, 512
// experts 6.62 -> 5.78 in RouteAndAlignCudaTiming.LaunchShapes, where the chunk kernel had won).
inline constexpr int kRowMaskMaxRows = 64;
inline constexpr int kRowMaskMaxBuckets = 1024;

// Shared memory (int32 words): the masks [32 * chunks][2], the in-chunk prefixes [32 * chunks], the
// chunk sums [32], then blocks_of(c, block) for c = 0..64.
__host__ __device__ inline int64_t row_mask_smem_words(int64_t nb) {
  const int64_t slots = 32 * ((nb + 31) / 32);
  return 3 * slots + 32 + kRowMaskMaxRows + 1;
}

struct RowMaskSmem {
  uint2* masks;           // [32 * chunks]: rows of bucket b (bit r of x | y << 32)
  int32_t* prefix;        // [32 * chunks]: blocks of the buckets of b's chunk below b
  int32_t* chunk_blocks;  // [32]: blocks of the buckets 32c .. 32c + 31
  int32_t* blocks;        // [kRowMaskMaxRows + 1]: blocks_of(c, block)
  int chunks;             // ceil(nb / 32) <= 32
  __device__ RowMaskSmem(int32_t* base, int nb) {
    chunks = (nb + 31) / 32;
    masks = reinterpret_cast<uint2*>(base);
    prefix = base + 2 * 32 * chunks;
    chunk_blocks = prefix + 32 * chunks;
    blocks = chunk_blocks + 32;
  }
};

// Zeroes the masks (the buckets past nb stay empty) and writes the blocks table (every thread calls
// it); a barrier must follow before row_mask_add().
__device__ __forceinline__ void row_mask_prepare(const RowMaskSmem& s, int32_t block) {
  int32_t* words = reinterpret_cast<int32_t*>(s.masks);
  for (int x = threadIdx.x; x < 2 * 32 * s.chunks; x += blockDim.x) words[x] = 0;
  for (int c = threadIdx.x; c <= kRowMaskMaxRows; c += blockDim.x)
    s.blocks[c] = c == 0 ? 0 : (c - 1) / block + 1;
}

// Marks row `row` (< kRowMaskMaxRows) in bucket b (b < 0: none).
__device__ __forceinline__ void row_mask_add(const RowMaskSmem& s, int b, int row) {
  if (b >= 0) atomicOr(reinterpret_cast<uint32_t*>(&s.masks[b]) + (row >> 5), 1u << (row & 31));
}

// After row_mask_add() of every pair and a barrier, every thread calls it: warp w scans chunks
// w, w + warps, ...; a barrier must follow before row_mask_bucket().
__device__ __forceinline__ void row_mask_scan_chunks(const RowMaskSmem& s) {
  const int lane = threadIdx.x % 32, warps = blockDim.x / 32;
  for (int c = threadIdx.x / 32; c < s.chunks; c += warps) {
    const int b = c * 32 + lane;
    const uint2 m = s.masks[b];
    const int32_t mine = s.blocks[__popc(m.x) + __popc(m.y)];
    const int32_t incl = warp_inclusive_scan(mine, lane);
    s.prefix[b] = incl - mine;
    if (lane == 31) s.chunk_blocks[c] = incl;
  }
}

// After row_mask_scan_chunks() and a barrier; every lane of the warp calls it (b < 0: no pair).
// Returns the pair as chunk_bucket does and, in total, the padded total.
__device__ __forceinline__ ChunkBucketPair row_mask_bucket(const RowMaskSmem& s, int b, int row, int32_t block,
                                                           int32_t& total) {
  const int lane = threadIdx.x % 32;
  // Every lane ranks (lanes without a pair on bucket 0, row 0), so the mask and table loads issue
  // before the scan and their latency hides behind the shuffles.
  const int at = b >= 0 ? b : 0, r = b >= 0 ? row : 0;
  const uint2 m = s.masks[at];
  const int32_t within = s.prefix[at];
  const int32_t mine = lane < s.chunks ? s.chunk_blocks[lane] : 0;
  const uint32_t below_x = r < 32 ? (1u << r) - 1u : 0xffffffffu;
  const uint32_t below_y = r < 32 ? 0u : (1u << (r - 32)) - 1u;
  const int rank = __popc(m.x & below_x) + __popc(m.y & below_y);
  const int32_t blocks = s.blocks[__popc(m.x) + __popc(m.y)];
  const int32_t incl = warp_inclusive_scan(mine, lane);
  total = __shfl_sync(0xffffffffu, incl, 31) * block;
  const int32_t first = __shfl_sync(0xffffffffu, incl - mine, at >> 5) + within;
  ChunkBucketPair pair{b, 0, 0, 0};
  if (b < 0) return pair;
  pair.slot = first * block + rank;
  if (rank == 0) {
    pair.first_block = first;
    pair.blocks = blocks;
  }
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
