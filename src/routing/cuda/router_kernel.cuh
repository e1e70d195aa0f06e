// Router kernel: a team of kW warps routes one token row (kW = 1 for many rows; 2 or 4 at decode
// sizes, so one row's experts spread over more lanes and each lane holds at most 4). Expert
// e = (i * kW + w) * 32 + lane lives in warp w of the team, register slot i. Top-k: each warp takes
// its own best `routed` items in rounds of a warp arg-max on (key desc, index asc) (lanes of at
// most 4 items sort them first, so a round reduces only the lane heads: one hardware reduction
// unless keys tie); with kW > 1 the team's first warp then ranks the kW * routed candidates by
// binary searches in the warps' ordered lists (all at once, no more rounds). The global top-k is
// inside the union of the per-warp top-k, and both steps break ties by the lower expert id, so the
// ids equal the oracle's.
// The grouped gate first scores every group from a shared copy of the team's keys (its best one or
// two), keeps topk_group groups by the same arg-max (or drops the worst G - topk_group when that is
// fewer rounds) and masks the experts of the dropped groups. Softmax weights are divided only for
// the chosen experts. Scores use router_math.h, so keys are bit-identical to the oracle and CPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/dependent_launch.cuh"
#include "moekit/route.h"
#include "routing/problem.h"
#include "routing/router_math.h"

namespace moekit::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float load_as_float(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case DType::kFloat16: return __half2float(static_cast<const __half*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// Unsigned bits ordered as the (never NaN) float keys; -0 maps with +0. The smallest real key
// (-inf) maps to 0x007fffff, so 0 can mean "no entry" in a max and 0xffffffff in a min.
__device__ __forceinline__ uint32_t ordered_bits(float k) {
  uint32_t u = __float_as_uint(k);
  if ((u << 1) == 0) u = 0;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// The float of ordered_bits(k) (a zero comes back as +0).
__device__ __forceinline__ float float_of_ordered_bits(uint32_t u) {
  return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

// The best available item of the warp, (key desc, index asc), as its index (-1 when no lane has
// one); item j * 32 + lane is entry j of the lane, `avail` bit j says it is still in play. Every
// lane gets the result, and its key bits in `top` (0 when none).
template <int N>
__device__ __forceinline__ int warp_best(const uint32_t (&key)[N], uint32_t avail, int lane,
                                         uint32_t& top) {
  uint32_t bk = 0, bi = 0xffffffffu;
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (((avail >> j) & 1u) && (key[j] > bk || bi == 0xffffffffu)) {
      bk = key[j];
      bi = j * 32 + lane;
    }
  top = __reduce_max_sync(kFullMask, bk);
  return static_cast<int>(__reduce_min_sync(kFullMask, bk == top ? bi : 0xffffffffu));
}

// The worst available item, (key asc, index desc): the order in which groups are dropped.
template <int N>
__device__ __forceinline__ int warp_worst(const uint32_t (&key)[N], uint32_t avail, int lane) {
  uint32_t wk = 0xffffffffu;
  int wi = -1;
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (((avail >> j) & 1u) && (key[j] <= wk || wi < 0)) {
      wk = key[j];
      wi = j * 32 + lane;
    }
  const uint32_t bottom = __reduce_min_sync(kFullMask, wk);
  return static_cast<int>(__reduce_max_sync(kFullMask, wk == bottom ? static_cast<uint32_t>(wi + 1) : 0u)) - 1;
}

// v[j] by select chains: constant register indexing only (no local-memory array).
template <int N>
__device__ __forceinline__ float pick(const float (&v)[N], int j) {
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i) r = i == j ? v[i] : r;
  return r;
}

// Expert of register slot i in lane `lane` of team warp `rank`.
template <int kW>
__device__ __forceinline__ int expert_of(int i, int rank, int lane) {
  return (i * kW + rank) * 32 + lane;
}

// Barrier of the kW warps routing one row: the warp itself, or named barrier `id` (1..15).
// compute-sanitizer racecheck (2026.x) reports hazards on shared memory written, __syncthreads()'d
// and read later in a CTA where only some warps ran such barriers (route_and_align_kernel<4, 2>:
// small_bucket's warp sums and starts). A kernel of 16 warps doing nothing else (team 0 runs
// bar.sync 1, 64 three times; then lane 31 of each warp writes shared memory, __syncthreads(),
// each warp reads its neighbour's word) gets the same report, the same kernel with every team
// running its barrier gets none, and synccheck is clean on both (H200, 2026-11-26): a racecheck
// artefact, not a race.
template <int kW>
__device__ __forceinline__ void team_sync(int id) {
  if constexpr (kW == 1)
    __syncwarp();
  else
    asm volatile("bar.sync %0, %1;" ::"r"(id), "n"(kW * 32) : "memory");
}

// Items a and b (a < b) of a lane's list: b goes first when it ranks before a (key desc, slot asc).
template <int N>
__device__ __forceinline__ void order_pair(uint32_t (&k)[N], int (&s)[N], float (&v)[N], int a, int b) {
  const bool swap = k[b] > k[a] || (k[b] == k[a] && s[b] < s[a]);
  const uint32_t ka = k[a];
  const int sa = s[a];
  const float va = v[a];
  k[a] = swap ? k[b] : ka;
  s[a] = swap ? s[b] : sa;
  v[a] = swap ? v[b] : va;
  k[b] = swap ? ka : k[b];
  s[b] = swap ? sa : s[b];
  v[b] = swap ? va : v[b];
}

// The warp's best R items, (key desc, expert asc), for lanes of at most 4 items: each lane sorts
// its items once (a sorting network; unavailable items get key 0, below every real key), then a
// round takes the best lane head with one warp max reduction (a second reduction only when lanes
// tie on the key) and the winning lane pops its head. Lane r < R gets item r (id -1, key 0,
// value 0 when the warp has fewer than R); the chain per round is a reduction, a ballot and a
// shift, where the general rounds scan every item of the lane and reduce twice.
template <int kVPT, int kW>
__device__ __forceinline__ void warp_topk_sorted_heads(const float (&key)[kVPT],
                                                       const float (&value)[kVPT], uint32_t avail,
                                                       int R, int rank, int lane, int& my_id,
                                                       float& my_value, uint32_t& my_key) {
  static_assert(kVPT == 1 || kVPT == 2 || kVPT == 4, "sorting networks for 1, 2 or 4 items");
  uint32_t hk[kVPT];
  int hs[kVPT];
  float hv[kVPT];
#pragma unroll
  for (int i = 0; i < kVPT; ++i) {
    hk[i] = ((avail >> i) & 1u) ? ordered_bits(key[i]) : 0u;
    hs[i] = i;
    hv[i] = value[i];
  }
  if constexpr (kVPT == 2) order_pair(hk, hs, hv, 0, 1);
  if constexpr (kVPT == 4) {
    order_pair(hk, hs, hv, 0, 1);
    order_pair(hk, hs, hv, 2, 3);
    order_pair(hk, hs, hv, 0, 2);
    order_pair(hk, hs, hv, 1, 3);
    order_pair(hk, hs, hv, 1, 2);
  }
  for (int r = 0; r < R; ++r) {
    const uint32_t head = hk[0];
    const uint32_t top = __reduce_max_sync(kFullMask, head);
    const unsigned ties = __ballot_sync(kFullMask, head == top);
    int winner;
    if (__popc(ties) == 1)  // the same in every lane
      winner = __ffs(ties) - 1;
    else  // equal keys: the lower expert (slot, then lane) wins
      winner = static_cast<int>(__reduce_min_sync(
                   kFullMask, head == top ? (static_cast<uint32_t>(hs[0]) << 5) | lane : 0xffffffffu)) & 31;
    const int id = __shfl_sync(kFullMask, expert_of<kW>(hs[0], rank, lane), winner);
    const float v = __shfl_sync(kFullMask, hv[0], winner);
    if (lane == r) {
      my_id = top != 0 ? id : -1;
      my_value = top != 0 ? v : 0.f;
      my_key = top;
    }
    const bool pop = lane == winner;
#pragma unroll
    for (int i = 0; i + 1 < kVPT; ++i) {
      hk[i] = pop ? hk[i + 1] : hk[i];
      hs[i] = pop ? hs[i + 1] : hs[i];
      hv[i] = pop ? hv[i + 1] : hv[i];
    }
    hk[kVPT - 1] = pop ? 0u : hk[kVPT - 1];
  }
}

// Shared scratch of one team. The candidate lists alternate between two buffers by row parity:
// the first warp may still rank row r while the others already write row r + 1. A single warp
// needs no candidate lists (one-entry placeholders).
template <int kVPT, int kW>
struct RouterTeamScratch {
  static constexpr int kExperts = kVPT * 32 * kW;
  static constexpr int kCandidates = kW > 1 ? kW * kMaxRouterTopk : 1;
  static constexpr int kSlots = kW > 1 ? kMaxRouterTopk : 1;
  float keys[kExperts];               // grouped gate: the row's keys
  uint32_t group_bits[kVPT * kW];     // grouped gate, groups of 32: ordered bits of group scores
  unsigned char kept[kW][kExperts];   // grouped gate: kept flag per group, one copy per warp
  float warp_max[kW];
  double warp_sum[kW];
  uint64_t candidate[2][kCandidates];  // [kW][kMaxRouterTopk] per parity: (key bits << 32) |
                                       // ~expert, each warp's list in rank order
  float candidate_value[2][kCandidates];
  int32_t slot_id[kSlots];
  float slot_value[kSlots];
};

// The bias of the lane's experts, loaded once per warp.
template <int kVPT, int kW>
__device__ __forceinline__ void load_bias(const routing::RouterProblem& p, int rank, int lane,
                                          float (&bias)[kVPT]) {
#pragma unroll
  for (int i = 0; i < kVPT; ++i) {
    int e = expert_of<kW>(i, rank, lane);
    bias[i] = p.bias && e < p.E ? load_as_float(p.bias, p.bias_dtype, e) : 0.f;
  }
}

// Routes one row with a team of kW warps (this is warp `rank` of it; team barrier `barrier_id`,
// `parity` alternates per row). The team's first warp writes the row's weights and ids and returns,
// in lane j < slots, the id of slot j (other warps return an unspecified value).
template <int kVPT, int kW, routing::ScoreFunction kScore>
__device__ __forceinline__ int route_row(const routing::RouterProblem& p, int64_t row, int rank,
                                         int lane, const float (&bias)[kVPT],
                                         RouterTeamScratch<kVPT, kW>& scratch, int barrier_id,
                                         int parity) {
  const int E = p.E, R = p.routed, slots = p.routed + p.shared;
  const float inf = __int_as_float(0x7f800000);
  const int64_t base = row * E;
  float x[kVPT], key[kVPT];
  float value[kVPT];  // the weight, or (when `divide`) the softmax numerator of the weight
  bool divide = false;
  double sum = 0;  // softmax denominator
#pragma unroll
  for (int i = 0; i < kVPT; ++i) {  // every load in flight at once
    int e = expert_of<kW>(i, rank, lane);
    x[i] = e < E ? load_as_float(p.logits, p.logits_dtype, base + e) : 0.f;
  }
  if constexpr (kScore == routing::ScoreFunction::kSigmoid) {
    if (p.rounding == routing::Rounding::kNone) {  // fp32: no per-value switch
      float ex[kVPT];
#pragma unroll
      for (int i = 0; i < kVPT; ++i) ex[i] = routing::router_exp(-x[i]);  // branch-free: interleaved
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        float s = routing::router_sigmoid_of_exp(ex[i]);
        float t = p.bias ? s + bias[i] : s;
        value[i] = s == s ? s : 0.f;
        key[i] = routing::nan_to_neg_inf(t);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        float s = routing::round_to(routing::router_sigmoid(x[i]), p.rounding);
        float t = p.bias ? routing::round_to(s + bias[i], p.rounding) : s;
        value[i] = s == s ? s : 0.f;
        key[i] = routing::nan_to_neg_inf(t);
      }
    }
  } else {
    float mx = -inf;
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      float v = -inf;
      if (expert_of<kW>(i, rank, lane) < E) {
        v = x[i];
        if (p.softcap != 0.f) v = routing::router_softcap(v, p.softcap);
        if (p.bias && p.bias_on_logits) v = v + bias[i];
        v = routing::nan_to_neg_inf(v);
      }
      key[i] = v;
      mx = fmaxf(mx, v);
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
      mx = fmaxf(mx, __shfl_xor_sync(kFullMask, mx, offset));
    if constexpr (kW > 1) {
      if (lane == 0) scratch.warp_max[rank] = mx;
      team_sync<kW>(barrier_id);
#pragma unroll
      for (int w = 0; w < kW; ++w) mx = fmaxf(mx, scratch.warp_max[w]);
    }
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      float ex = mx == inf ? (key[i] == inf ? 1.f : 0.f)
                 : mx == -inf ? 0.f
                              : routing::router_exp(key[i] - mx);
      key[i] = ex;
      sum += ex;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(kFullMask, sum, offset);
    if constexpr (kW > 1) {
      if (lane == 0) scratch.warp_sum[rank] = sum;
      team_sync<kW>(barrier_id);
      sum = scratch.warp_sum[0];
#pragma unroll
      for (int w = 1; w < kW; ++w) sum += scratch.warp_sum[w];
    }
    if (p.bias && !p.bias_on_logits) {  // selection on probability + bias: every weight needed
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        value[i] = sum > 0 ? static_cast<float>(key[i] / sum) : 0.f;
        key[i] = routing::nan_to_neg_inf(value[i] + bias[i]);
      }
    } else {
#pragma unroll
      for (int i = 0; i < kVPT; ++i) value[i] = key[i];
      divide = true;
    }
  }

  uint32_t avail = 0;
#pragma unroll
  for (int i = 0; i < kVPT; ++i) avail |= (expert_of<kW>(i, rank, lane) < E ? 1u : 0u) << i;
  // (Shapes of more than 8 slots a lane keep the generic path: the arrays below would spill.)
  if (kVPT <= 8 && p.groups > 1 && E / p.groups == 32) {
    // Groups of 32: register slot i of this warp holds exactly group i * kW + rank, one expert per
    // lane, so a group's best two come from warp reductions (all slots' reductions in flight at
    // once; slots past G are computed and ignored). The groups kept are the best topk_group by
    // (score desc, index asc), the same set the generic path below keeps; lane g ranks group g
    // against all the team's group scores.
    constexpr int kMaxGroups = kVPT * kW;
    const int G = p.groups;
    uint32_t u[kVPT], best[kVPT], second[kVPT];
    unsigned ties[kVPT];
#pragma unroll
    for (int i = 0; i < kVPT; ++i) u[i] = ordered_bits(key[i]);
#pragma unroll
    for (int i = 0; i < kVPT; ++i) best[i] = __reduce_max_sync(kFullMask, u[i]);
#pragma unroll
    for (int i = 0; i < kVPT; ++i) ties[i] = __ballot_sync(kFullMask, u[i] == best[i]);
#pragma unroll
    for (int i = 0; i < kVPT; ++i) second[i] = __reduce_max_sync(kFullMask, u[i] == best[i] ? 0u : u[i]);
    if (lane == 0) {
      const bool two = p.group_score_terms() == 2;
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        const int g = i * kW + rank;
        if (g < G) {
          float score = float_of_ordered_bits(best[i]);
          if (two) {
            const float runner_up = float_of_ordered_bits(__popc(ties[i]) > 1 ? best[i] : second[i]);
            score = routing::nan_to_neg_inf(routing::round_to(score + runner_up, p.rounding));
          }
          scratch.group_bits[g] = ordered_bits(score);
        }
      }
    }
    team_sync<kW>(barrier_id);
    uint32_t group[kMaxGroups];
#pragma unroll
    for (int h = 0; h < kMaxGroups; ++h) group[h] = h < G ? scratch.group_bits[h] : 0u;
    const uint32_t mine = lane < G ? scratch.group_bits[lane] : 0u;
    int before = 0;
#pragma unroll
    for (int h = 0; h < kMaxGroups; ++h)
      before += h < G && (group[h] > mine || (group[h] == mine && h < lane)) ? 1 : 0;
    const unsigned kept = __ballot_sync(kFullMask, lane < G && before < p.topk_group);
    __syncwarp();  // group_bits is rewritten for the next row
#pragma unroll
    for (int i = 0; i < kVPT; ++i)
      if (!((kept >> (i * kW + rank)) & 1u)) avail &= ~(1u << i);
  } else if (p.groups > 1) {
    const int G = p.groups, V = E / G;
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      int e = expert_of<kW>(i, rank, lane);
      if (e < E) scratch.keys[e] = key[i];
    }
    team_sync<kW>(barrier_id);
    // Every warp of the team scores and picks the groups itself (the same result in each), so no
    // second barrier. Group g lives in lane g % 32, slot g / 32.
    constexpr int kGroupSlots = kVPT * kW;
    uint32_t gscore[kGroupSlots];
    uint32_t gavail = 0;
    const bool two = p.group_score_terms() == 2;
#pragma unroll
    for (int j = 0; j < kGroupSlots; ++j) {
      int g = j * 32 + lane;
      gscore[j] = 0;
      if (g < G) {
        const float* k = &scratch.keys[g * V];
        float b1 = k[0], b2 = -inf;
        for (int v = 1; v < V; ++v) {
          float kv = k[v];
          if (kv > b1) {
            b2 = b1;
            b1 = kv;
          } else if (kv > b2) {
            b2 = kv;
          }
        }
        gscore[j] = ordered_bits(two ? routing::nan_to_neg_inf(routing::round_to(b1 + b2, p.rounding)) : b1);
        gavail |= 1u << j;
      }
    }
    uint32_t kept = 0;
    if (p.topk_group <= G - p.topk_group) {
      for (int r = 0; r < p.topk_group; ++r) {
        uint32_t top;
        int bg = warp_best(gscore, gavail, lane, top);
        if ((bg & 31) == lane) {
          gavail &= ~(1u << (bg >> 5));
          kept |= 1u << (bg >> 5);
        }
      }
    } else {
      for (int r = 0; r < G - p.topk_group; ++r) {
        int wg = warp_worst(gscore, gavail, lane);
        if ((wg & 31) == lane) gavail &= ~(1u << (wg >> 5));
      }
      kept = gavail;
    }
    unsigned char* kept_flag = scratch.kept[rank];
#pragma unroll
    for (int j = 0; j < kGroupSlots; ++j)
      if (j * 32 + lane < G) kept_flag[j * 32 + lane] = (kept >> j) & 1u;
    __syncwarp();
    avail = 0;
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      int e = expert_of<kW>(i, rank, lane);
      if (e < E && kept_flag[e / V]) avail |= 1u << i;
    }
    __syncwarp();  // the warp's flags are rewritten for the next row
  }

  // The warp's best R items in order: lane r < R gets item r (id -1, key 0 and value 0 when the
  // warp has fewer than R left after the group mask).
  int my_id = -1;
  float my_value = 0.f;
  uint32_t my_key = 0;
  if constexpr (kVPT <= 4) {
    warp_topk_sorted_heads<kVPT, kW>(key, value, avail, R, rank, lane, my_id, my_value, my_key);
  } else {
    uint32_t okey[kVPT];
#pragma unroll
    for (int i = 0; i < kVPT; ++i) okey[i] = ordered_bits(key[i]);
    for (int r = 0; r < R; ++r) {
      uint32_t top;
      const int best = warp_best(okey, avail, lane, top);
      const int owner = best & 31, slot = best >> 5;
      const float v = __shfl_sync(kFullMask, pick(value, slot), owner);
      if (best >= 0 && owner == lane) avail &= ~(1u << slot);
      if (lane == r) {
        my_id = best >= 0 ? expert_of<kW>(slot, rank, owner) : -1;
        my_value = v;
        my_key = top;
      }
    }
  }

  if constexpr (kW > 1) {
    // Rank the team's candidates: candidate c goes to slot #{candidates ranking before c}. Each
    // warp's list is in rank order, so that count is a sum of binary searches, one per warp's
    // list (its own gives the position). Empty entries get key 0 and distinct ids past E, so they
    // rank after every real expert and keep each list ordered.
    uint64_t* cand = scratch.candidate[parity];  // [kW][kMaxRouterTopk]
    float* cand_value = scratch.candidate_value[parity];
    if (lane < R) {
      const uint32_t tie_id = my_id >= 0 ? static_cast<uint32_t>(my_id)
                                         : static_cast<uint32_t>(E + rank * R + lane);
      cand[rank * kMaxRouterTopk + lane] = (uint64_t(my_key) << 32) | (0xffffffffu - tie_id);
      cand_value[rank * kMaxRouterTopk + lane] = my_value;
    }
    team_sync<kW>(barrier_id);
    if (rank != 0) return -1;
    const int n = kW * R;
#pragma unroll
    for (int k = 0; k < (kW * kMaxRouterTopk + 31) / 32; ++k) {
      const int c = k * 32 + lane;
      if (c < n) {
        const int w = c / R, at = w * kMaxRouterTopk + (c - w * R);
        const uint64_t mine = cand[at];
        int before = 0;
#pragma unroll
        for (int o = 0; o < kW; ++o) {
          const uint64_t* list = cand + o * kMaxRouterTopk;
          int ahead = 0;
#pragma unroll
          for (int step = kMaxRouterTopk; step > 0; step >>= 1)
            if (ahead + step <= R && list[ahead + step - 1] > mine) ahead += step;
          before += ahead;
        }
        if (before < R) {
          scratch.slot_id[before] = static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(mine));
          scratch.slot_value[before] = cand_value[at];
        }
      }
    }
    __syncwarp();
    if (lane < R) {
      my_id = scratch.slot_id[lane];
      my_value = scratch.slot_value[lane];
    }
    __syncwarp();  // slot_id / slot_value are rewritten for the next row
  }

  float my_weight = my_value;
  if (divide) my_weight = sum > 0 ? static_cast<float>(my_value / sum) : 0.f;
  // The routed sum in slot order, as the oracle adds it.
  double routed_sum = 0;
#pragma unroll
  for (int r = 0; r < kMaxRouterTopk; ++r) {  // every shuffle in flight, then the adds in order
    const float w = __shfl_sync(kFullMask, my_weight, r);
    if (r < R) routed_sum += w;
  }
  if (lane >= R) my_id = E + (lane - R);
  if (lane < slots) {
    double w = lane < R ? double(my_weight) : routed_sum / p.rsf;
    if (p.renormalize && routed_sum > 0) w /= routed_sum;
    if (p.scale_by_rsf) w *= p.rsf;
    p.weights[row * slots + lane] = static_cast<float>(w);
    p.ids[row * slots + lane] = my_id;
  }
  return my_id;
}

// Warps per CTA: four single-warp rows, or one team (a compile-time barrier id: a run-time id
// would make ptxas reserve all 16 named barriers of the CTA).
template <int kW>
constexpr int router_warps_per_block() {
  return kW == 1 ? 4 : kW;
}

// kVPT register slots per lane, kW warps per row (kVPT * 32 * kW >= E).
template <int kVPT, int kW, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(router_warps_per_block<kW>() * 32)
    router_kernel(const routing::RouterProblem p) {
  constexpr int kTeams = router_warps_per_block<kW>() / kW;
  __shared__ RouterTeamScratch<kVPT, kW> scratch[kTeams];
  // Launched with programmatic dependent launch: wait for the preceding grid (it may have written
  // the logits or the bias). Only then may the next kernel's CTAs get resident: route_and_align's
  // align writes its pad fill before it waits on this grid, so everything before this grid must be
  // done by then.
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int team = kTeams == 1 ? 0 : warp / kW, rank = kW == 1 ? 0 : warp % kW;
  float bias[kVPT];
  load_bias<kVPT, kW>(p, rank, lane, bias);
  int parity = 0;
  for (int64_t row = int64_t(blockIdx.x) * kTeams + team; row < p.M;
       row += int64_t(gridDim.x) * kTeams, parity ^= 1)
    route_row<kVPT, kW, kScore>(p, row, rank, lane, bias, scratch[team], 1, parity);
}

}  // namespace moekit::cuda
