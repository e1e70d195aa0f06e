// Fused decode routing + block alignment in one CTA (a few rows: launcher.cu decides). Teams of kW
// warps route the rows (route_row, the router kernel's body) and leave the ids in shared memory;
// then every thread takes one pair and the CTA buckets them (dispatch/cuda/small_bucket.cuh), so
// the result equals moe_align_block_size_experts on the ids written. The pad fill is written first
// and the pairs overwrite their slots after the bucketing's barriers.
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

// The routed ids as pairs: expert e (E + j for shared slot j) is bucket e; the router never writes
// an id outside [0, E + S).
struct FusedPairs {
  const int16_t* ids;
  __device__ int64_t id(int64_t i) const { return ids[i]; }
  __device__ int bucket(int64_t id) const { return static_cast<int>(id); }
};

// Dynamic shared memory: small_bucket_smem_words(M * slots, E + S) words.
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
  // Launched with programmatic dependent launch: nothing is read or written before the preceding
  // grid is done.
  wait_for_preceding_grid();
  allow_dependent_launch();
  if (a.pad_sorted_token_ids) block_fill_int32(a.sorted_token_ids, a.sorted_capacity, numel);

  float bias[kVPT];
  load_bias<kVPT, kW>(p, rank, lane, bias);
  int parity = 0;
  for (int64_t row = team; row < p.M; row += kTeams, parity ^= 1) {
    int id = route_row<kVPT, kW, kScore>(p, row, rank, lane, bias, scratch[team], 1 + team, parity);
    if (rank == 0 && lane < slots) s_ids[row * slots + lane] = static_cast<int16_t>(id);
  }
  __syncthreads();

  const SmallBucketSmem s(bucket_words, numel, NE);
  const SmallBucketPair pair = small_bucket(s, NE, numel, FusedPairs{s_ids}, a.block_size, 0, [] {});
  if (pair.bucket >= 0) a.sorted_token_ids[pair.slot] = tid;
  const int32_t total = s.start[NE];
  for (int32_t j = tid; j < total / a.block_size; j += kThreads)
    a.experts_ids[j] = bucket_of_slot(s.start, NE, int64_t(j) * a.block_size);
  if (tid == 0) a.num_tokens_post_pad[0] = total;
}

}  // namespace moekit::cuda
