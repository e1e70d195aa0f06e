// Fused decode routing + block alignment in one CTA: teams of kW warps route the rows (route_row,
// the router kernel's body) and count pairs per expert in shared memory; one warp scans the padded
// counts; all threads write the pad fill, experts_ids and the total; then one warp places the
// pairs in ascending flat index (32 at a time, __match_any_sync ranks equal experts), so the
// result equals moe_align_block_size_experts on the ids just written.
#pragma once

#include "dispatch/problem.h"
#include "routing/cuda/router_kernel.cuh"

namespace moekit::cuda {

constexpr int kFusedMaxBuckets = kMaxRouterExperts + kMaxRouterTopk;  // E + S
// The fused launch always uses a decode team shape (kVPT <= 4), so 16 warps fit the registers.
constexpr int kFusedWarps = 16;

template <int kVPT, int kW, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(kFusedWarps * 32)
    route_and_align_kernel(const routing::RouterProblem p, const detail::AlignProblem a) {
  constexpr int kTeams = kFusedWarps / kW;
  __shared__ RouterTeamScratch<kVPT, kW> scratch[kTeams];
  __shared__ int16_t s_ids[routing::kMaxFusedRouteAlignPairs];
  __shared__ int32_t s_count[kFusedMaxBuckets];
  __shared__ int32_t s_start[kFusedMaxBuckets + 1];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int team = warp / kW, rank = warp % kW;
  const int NE = a.num_experts, slots = p.routed + p.shared;
  const int32_t numel = static_cast<int32_t>(p.M * slots);
  const int32_t bs = a.block_size;

  for (int e = tid; e < NE; e += blockDim.x) s_count[e] = 0;
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

  // Exclusive prefix of the padded counts: lane l owns a contiguous run of experts.
  if (warp == 0) {
    const int per_lane = (NE + 31) / 32, first = lane * per_lane;
    int64_t local = 0;
    for (int e = first; e < first + per_lane && e < NE; ++e)
      local += (int64_t(s_count[e]) + bs - 1) / bs * bs;
    int64_t inclusive = local;
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      int64_t v = __shfl_up_sync(kFullMask, inclusive, offset);
      if (lane >= offset) inclusive += v;
    }
    int64_t run = inclusive - local;
    for (int e = first; e < first + per_lane && e < NE; ++e) {
      s_start[e] = static_cast<int32_t>(run);
      run += (int64_t(s_count[e]) + bs - 1) / bs * bs;
    }
    if (lane == 31) s_start[NE] = static_cast<int32_t>(inclusive);
  }
  __syncthreads();

  const int32_t total = s_start[NE];
  if (a.pad_sorted_token_ids)
    for (int64_t s = tid; s < a.sorted_capacity; s += blockDim.x) a.sorted_token_ids[s] = numel;
  for (int e = tid; e < NE; e += blockDim.x)
    for (int32_t b = s_start[e] / bs; b < s_start[e + 1] / bs; ++b) a.experts_ids[b] = e;
  if (tid == 0) a.num_tokens_post_pad[0] = total;
  __syncthreads();  // the pad fill lands before the pairs overwrite their slots

  if (warp == 0) {
    const unsigned lower = (1u << lane) - 1u;
    for (int32_t base = 0; base < numel; base += 32) {
      const int32_t i = base + lane;
      const int e = i < numel ? s_ids[i] : -1;
      const unsigned same = __match_any_sync(kFullMask, e);
      int32_t pos = 0;
      if (e >= 0) pos = s_start[e] + __popc(same & lower);
      __syncwarp();
      if (e >= 0) {
        a.sorted_token_ids[pos] = i;
        if ((same & lower) == 0) s_start[e] += __popc(same);  // the group's first lane advances
      }
      __syncwarp();
    }
  }
}

}  // namespace moekit::cuda
