// Fused decode routing + block alignment in one CTA. Teams of kW warps route the rows (route_row,
// the router kernel's body) and count pairs per expert in shared memory; all threads round the
// counts up to the block size, one warp scans them; all threads write the pad fill, experts_ids and
// the total; then all threads place the pairs, one pair each per round, in ascending flat index
// per expert (__match_any_sync ranks equal experts inside a warp, a per-warp count table across
// the warps of the round), so the result equals moe_align_block_size_experts on the ids written.
#pragma once

#include "dispatch/problem.h"
#include "routing/cuda/router_kernel.cuh"

namespace moekit::cuda {

constexpr int kFusedMaxBuckets = kMaxRouterExperts + kMaxRouterTopk;  // E + S

// Warps of the fused CTA: 16, or 8 when a lane holds more than 8 experts (registers and the
// per-warp key scratch).
template <int kVPT>
constexpr int fused_warps() {
  return kVPT > 8 ? 8 : 16;
}

template <int kVPT, int kW, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(fused_warps<kVPT>() * 32)
    route_and_align_kernel(const routing::RouterProblem p, const detail::AlignProblem a) {
  constexpr int kWarps = fused_warps<kVPT>(), kThreads = kWarps * 32, kTeams = kWarps / kW;
  __shared__ RouterTeamScratch<kVPT, kW> scratch[kTeams];
  __shared__ int16_t s_ids[routing::kMaxFusedRouteAlignPairs];
  __shared__ int32_t s_count[kFusedMaxBuckets];
  __shared__ int32_t s_start[kFusedMaxBuckets + 1];
  __shared__ uint8_t s_warp_count[kWarps][kFusedMaxBuckets];  // pairs per expert in a warp's 32
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int team = warp / kW, rank = warp % kW;
  const int NE = a.num_experts, slots = p.routed + p.shared;
  const int32_t numel = static_cast<int32_t>(p.M * slots);
  const int32_t bs = a.block_size;

  for (int e = tid; e < NE; e += kThreads) {
    s_count[e] = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s_warp_count[w][e] = 0;
  }
  __syncthreads();

  float bias[kVPT];
  load_bias<kVPT, kW>(p, rank, lane, bias);
  int parity = 0;
  for (int64_t row = team; row < p.M; row += kTeams, parity ^= 1) {
    int id = route_row<kVPT, kW, kScore>(p, row, rank, lane, bias, scratch[team], 1 + team, parity);
    if (rank == 0 && lane < slots) {
      s_ids[row * slots + lane] = static_cast<int16_t>(id);
      atomicAdd(&s_count[id], 1);
    }
  }
  __syncthreads();

  // Padded counts (each fits int32: a count is <= 4096), then their exclusive prefix: lane l of
  // warp 0 owns a contiguous run of experts.
  for (int e = tid; e < NE; e += kThreads) s_start[e] = (s_count[e] + bs - 1) / bs * bs;
  __syncthreads();
  if (warp == 0) {
    const int per_lane = (NE + 31) / 32, first = lane * per_lane;
    const int last = first + per_lane < NE ? first + per_lane : NE;
    int64_t local = 0;
    for (int e = first; e < last; ++e) local += s_start[e];
    int64_t inclusive = local;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      int64_t v = __shfl_up_sync(kFullMask, inclusive, offset);
      if (lane >= offset) inclusive += v;
    }
    int64_t run = inclusive - local;
    for (int e = first; e < last; ++e) {
      const int32_t padded = s_start[e];
      s_start[e] = static_cast<int32_t>(run);
      run += padded;
    }
    if (lane == 31) s_start[NE] = static_cast<int32_t>(inclusive);
  }
  __syncthreads();

  const int32_t total = s_start[NE];
  if (a.pad_sorted_token_ids)
    for (int64_t s = tid; s < a.sorted_capacity; s += kThreads) a.sorted_token_ids[s] = numel;
  for (int e = tid; e < NE; e += kThreads)
    for (int32_t b = s_start[e] / bs; b < s_start[e + 1] / bs; ++b) a.experts_ids[b] = e;
  if (tid == 0) a.num_tokens_post_pad[0] = total;
  __syncthreads();  // the pad fill lands before the pairs overwrite their slots

  // Rounds of kThreads pairs: pair i goes to start[e] + (pairs of e before it in this round) and
  // then start[e] advances by the round's count of e.
  const unsigned lower = (1u << lane) - 1u;
  for (int32_t base = 0; base < numel; base += kThreads) {
    const int32_t i = base + tid;
    const int e = i < numel ? s_ids[i] : -1;
    const unsigned same = __match_any_sync(kFullMask, e);
    const bool leader = (same & lower) == 0;  // the lowest lane of its expert in the warp
    if (e >= 0 && leader) s_warp_count[warp][e] = static_cast<uint8_t>(__popc(same));
    __syncthreads();
    if (e >= 0) {
      int32_t before = __popc(same & lower);
      for (int w = 0; w < warp; ++w) before += s_warp_count[w][e];
      a.sorted_token_ids[s_start[e] + before] = i;
    }
    __syncthreads();  // every start read before it advances, every count read before it clears
    if (e >= 0 && leader) {
      atomicAdd(&s_start[e], __popc(same));
      s_warp_count[warp][e] = 0;
    }
    __syncthreads();
  }
}

}  // namespace moekit::cuda
