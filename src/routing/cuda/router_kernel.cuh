// Router kernel: one warp per token row. Expert e lives in lane e % 32, register slot e / 32, so a
// row of up to 512 logits sits in 16 registers per lane. Top-k is k rounds of a warp arg-max on
// (key desc, index asc), done with two hardware warp reductions per round (max of the
// order-preserving key bits, then min of the index among the lanes holding that key). The grouped
// gate first scores every group from a shared-memory copy of the keys (its best one or two), keeps
// topk_group groups by the same arg-max (or drops the worst G - topk_group when that is fewer
// rounds) and masks the experts of the dropped groups. Scores use router_math.h, so keys are
// bit-identical to the oracle and the CPU path.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

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

// The best available item of the warp, (key desc, index asc), as its index; item j * 32 + lane is
// entry j of the lane, `avail` bit j says it is still in play. Every lane gets the result.
template <int N>
__device__ __forceinline__ int warp_best(const uint32_t (&key)[N], uint32_t avail, int lane) {
  uint32_t bk = 0, bi = 0xffffffffu;
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (((avail >> j) & 1u) && (key[j] > bk || bi == 0xffffffffu)) {
      bk = key[j];
      bi = j * 32 + lane;
    }
  const uint32_t top = __reduce_max_sync(kFullMask, bk);
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

template <int N>
__device__ __forceinline__ float pick(const float (&v)[N], int j) {
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i) r = i == j ? v[i] : r;
  return r;
}

// Per-warp scratch of the grouped gate.
template <int kVPT>
struct RouterWarpScratch {
  float keys[kVPT * 32];
  unsigned char kept[kVPT * 32];
};

// The bias of the lane's experts, loaded once per warp.
template <int kVPT>
__device__ __forceinline__ void load_bias(const routing::RouterProblem& p, int lane, float (&bias)[kVPT]) {
#pragma unroll
  for (int i = 0; i < kVPT; ++i) {
    int e = i * 32 + lane;
    bias[i] = p.bias && e < p.E ? load_as_float(p.bias, p.bias_dtype, e) : 0.f;
  }
}

// Routes one row with the whole warp: writes its weights and ids and returns, in lane j < slots,
// the id of slot j.
template <int kVPT, routing::ScoreFunction kScore>
__device__ __forceinline__ int route_row(const routing::RouterProblem& p, int64_t row, int lane,
                                         const float (&bias)[kVPT], RouterWarpScratch<kVPT>& scratch) {
  const int E = p.E, slots = p.routed + p.shared;
  const float inf = __int_as_float(0x7f800000);
  float key[kVPT], weight[kVPT];
  const int64_t base = row * E;
  if constexpr (kScore == routing::ScoreFunction::kSigmoid) {
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      int e = i * 32 + lane;
      float x = e < E ? load_as_float(p.logits, p.logits_dtype, base + e) : 0.f;
      float s = routing::round_to(routing::router_sigmoid(x), p.rounding);
      float t = p.bias ? routing::round_to(s + bias[i], p.rounding) : s;
      weight[i] = s == s ? s : 0.f;
      key[i] = routing::nan_to_neg_inf(t);
    }
  } else {
    float mx = -inf;
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      int e = i * 32 + lane;
      float v = -inf;
      if (e < E) {
        v = load_as_float(p.logits, p.logits_dtype, base + e);
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
    double sum = 0;
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
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      weight[i] = sum > 0 ? static_cast<float>(key[i] / sum) : 0.f;
      if (p.bias && !p.bias_on_logits) key[i] = routing::nan_to_neg_inf(weight[i] + bias[i]);
    }
  }

  uint32_t avail = 0;
#pragma unroll
  for (int i = 0; i < kVPT; ++i) avail |= (i * 32 + lane < E ? 1u : 0u) << i;
  if (p.groups > 1) {
    const int G = p.groups, V = E / G;
#pragma unroll
    for (int i = 0; i < kVPT; ++i)
      if (i * 32 + lane < E) scratch.keys[i * 32 + lane] = key[i];
    __syncwarp();
    // Group g lives in lane g % 32, slot g / 32, like the experts.
    uint32_t gscore[kVPT];
    uint32_t gavail = 0;
    const bool two = p.group_score_terms() == 2;
#pragma unroll
    for (int j = 0; j < kVPT; ++j) {
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
        int bg = warp_best(gscore, gavail, lane);
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
#pragma unroll
    for (int j = 0; j < kVPT; ++j)
      if (j * 32 + lane < G) scratch.kept[j * 32 + lane] = (kept >> j) & 1u;
    __syncwarp();
    avail = 0;
#pragma unroll
    for (int i = 0; i < kVPT; ++i) {
      int e = i * 32 + lane;
      if (e < E && scratch.kept[e / V]) avail |= 1u << i;
    }
    __syncwarp();  // the scratch is rewritten for the next row
  }

  uint32_t okey[kVPT];
#pragma unroll
  for (int i = 0; i < kVPT; ++i) okey[i] = ordered_bits(key[i]);
  int my_id = 0;
  float my_weight = 0.f;
  for (int r = 0; r < p.routed; ++r) {
    const int be = warp_best(okey, avail, lane);
    const int owner = be & 31, slot = be >> 5;
    const float w = __shfl_sync(kFullMask, pick(weight, slot), owner);
    if (owner == lane) avail &= ~(1u << slot);
    if (lane == r) {
      my_id = be;
      my_weight = w;
    }
  }
  // The routed sum in slot order, as the oracle adds it.
  double sum = 0;
  for (int r = 0; r < p.routed; ++r) sum += __shfl_sync(kFullMask, my_weight, r);
  if (lane >= p.routed) my_id = E + (lane - p.routed);
  if (lane < slots) {
    double w = lane < p.routed ? double(my_weight) : sum / p.rsf;
    if (p.renormalize && sum > 0) w /= sum;
    if (p.scale_by_rsf) w *= p.rsf;
    p.weights[row * slots + lane] = static_cast<float>(w);
    p.ids[row * slots + lane] = my_id;
  }
  return my_id;
}

constexpr int kRouterWarpsPerBlock = 4;

// kVPT = register slots per lane (ceil(E / 32) rounded up to an instantiated size).
template <int kVPT, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(kRouterWarpsPerBlock * 32)
    router_kernel(const routing::RouterProblem p) {
  __shared__ RouterWarpScratch<kVPT> scratch[kRouterWarpsPerBlock];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float bias[kVPT];
  load_bias(p, lane, bias);
  for (int64_t row = int64_t(blockIdx.x) * kRouterWarpsPerBlock + warp; row < p.M;
       row += int64_t(gridDim.x) * kRouterWarpsPerBlock)
    route_row<kVPT, kScore>(p, row, lane, bias, scratch[warp]);
}

}  // namespace moekit::cuda
