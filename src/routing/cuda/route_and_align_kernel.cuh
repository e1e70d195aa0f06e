// Fused decode routing + block alignment in one CTA (a few rows: launcher.cu decides). Teams of kW
// warps route the rows (route_row, the router kernel's body) and leave the ids in shared memory;
// then one warp buckets up to 32 pairs (warp_bucket: no barrier after the routing's), or every
// thread takes one pair and the CTA buckets them (chunk_bucket, dispatch/cuda/small_bucket.cuh: its
// scratch is cleared before the routing, so one barrier after the routing's), so the result equals
// moe_align_block_size_experts on the ids written. The pad fill is written first and the pairs
// overwrite their slots after the barrier that ends the routing.
#pragma once

#include "dispatch/cuda/small_bucket.cuh"
#include "dispatch/problem.h"
#include "routing/cuda/router_kernel.cuh"

namespace moekit::cuda {

// Warps of the fused CTA: 16, or 8 when a lane holds more than 8 experts (registers and the
// per-warp key scratch). The CTA takes at most one pair per thread.
template <int kVPT>
constexpr int fused_warps() {
  return kVPT > 8 ? 8 : 16;
}

// Up to this many pairs one warp buckets them (warp_bucket), with no barrier after the routing: at
// one row of top-8 small_bucket's barriers and block scans were ~1.4 us of the launch (H200,
// route_and_align M=1: 6.15 -> 4.76 us for the 256-expert gate, 6.53 -> 5.03 for 384 experts).
inline constexpr int kWarpBucketMaxPairs = 32;

// The outputs of small_bucket for n <= 32 pairs (ids[i] = bucket of pair i), computed by one warp:
// pair i ranks among the lower lanes of its bucket (warp_bucket_peers), a bucket's leader (its
// lowest pair) holds its block count, and a bucket starts after the blocks of every lower bucket
// (a sum over the n lanes' leaders). Writes the pairs' slots, the block experts and the total; the
// pad fill is the caller's.
__device__ __forceinline__ void warp_bucket(const detail::AlignProblem& a, const int16_t* ids, int n,
                                            int lane) {
  const int b = lane < n ? ids[lane] : -1;
  const unsigned peers = warp_bucket_peers(b, a.num_experts, lane);
  const int rank = __popc(peers & ((1u << lane) - 1u));
  const int blocks = b >= 0 && rank == 0 ? (__popc(peers) + a.block_size - 1) / a.block_size : 0;
  int before = 0;  // blocks of the buckets below b
  for (int l = 0; l < n; ++l) {
    const int bl = __shfl_sync(kFullMask, b, l);
    const int kl = __shfl_sync(kFullMask, blocks, l);
    before += bl < b ? kl : 0;
  }
  const int total_blocks = __reduce_add_sync(kFullMask, blocks);
  if (b >= 0) a.sorted_token_ids[before * a.block_size + rank] = lane;
  for (int j = 0; j < blocks; ++j) a.experts_ids[before + j] = b;
  if (lane == 0) a.num_tokens_post_pad[0] = total_blocks * a.block_size;
}

// Dynamic shared memory: chunk_bucket_smem_words(M * slots, E + S) words (E + S <= 1024).
template <int kVPT, int kW, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(fused_warps<kVPT>() * 32)
    route_and_align_kernel(const routing::RouterProblem p, const detail::AlignProblem a) {
  constexpr int kWarps = fused_warps<kVPT>(), kThreads = kWarps * 32, kTeams = kWarps / kW;
  __shared__ RouterTeamScratch<kVPT, kW> scratch[kTeams];
  __shared__ int16_t s_ids[kThreads];
  extern __shared__ int32_t bucket_words[];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int team = warp / kW, rank = warp % kW;
  const int NE = a.num_experts, slots = p.routed + p.shared;
  const int numel = static_cast<int>(p.M * slots);
  const ChunkBucketSmem bucket_smem(bucket_words, numel, NE);
  if (numel > kWarpBucketMaxPairs) chunk_bucket_clear(bucket_smem);
  // Launched with programmatic dependent launch: nothing is read or written before the preceding
  // grid is done.
  wait_for_preceding_grid();
  allow_dependent_launch();
  if (a.pad_sorted_token_ids) block_fill_int32(a.sorted_token_ids, a.sorted_capacity, numel);

  float bias[kVPT];
  load_bias<kVPT, kW>(p, rank, lane, bias);
  int parity = 0;
  for (int64_t row = team; team < kTeams && row < p.M; row += kTeams, parity ^= 1) {  // 3-warp teams: warp 15 idles
    int id = route_row<kVPT, kW, kScore>(p, row, rank, lane, bias, scratch[team], 1 + team, parity);
    if (rank == 0 && lane < slots) s_ids[row * slots + lane] = static_cast<int16_t>(id);
  }
  __syncthreads();  // the ids are in s_ids, the pad fill and the scratch clearing are done

  if (numel <= kWarpBucketMaxPairs) {
    if (warp == 0) warp_bucket(a, s_ids, numel, lane);
    return;
  }
  // The router writes ids in [0, E + S) only; expert e (E + j for shared slot j) is bucket e.
  const int b = tid < numel ? s_ids[tid] : -1;
  int32_t total;
  const ChunkBucketPair pair = chunk_bucket(bucket_smem, NE, numel, b, a.block_size, total);
  if (pair.bucket >= 0) a.sorted_token_ids[pair.slot] = tid;
  for (int32_t j = 0; j < pair.blocks; ++j) a.experts_ids[pair.first_block + j] = pair.bucket;
  if (tid == 0) a.num_tokens_post_pad[0] = total;
}

}  // namespace moekit::cuda
