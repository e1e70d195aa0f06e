// Router kernel: one warp per token row. Expert e lives in lane e % 32, register slot e / 32, so a
// row of up to 512 logits sits in 16 registers per lane. Top-k is k rounds of a warp arg-max on
// (key desc, index asc); the grouped gate first scores every group from a shared-memory copy of
// the keys (its best one or two), keeps topk_group groups by the same arg-max (or drops the worst
// G - topk_group when that is fewer rounds) and masks the experts of the dropped groups.
// Scores use router_math.h, so keys are bit-identical to the oracle and the CPU path.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "routing/problem.h"
#include "routing/router_math.h"

namespace moekit::cuda {

constexpr int kRouterWarpsPerBlock = 4;
constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float load_as_float(const void* base, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBFloat16: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    case DType::kFloat16: return __half2float(static_cast<const __half*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

// The best available entry of the warp: (key desc, index asc). Entry j of a lane is item
// j * 32 + lane; `avail` has bit j set for the entries still in play. Every lane gets the result.
template <int N>
__device__ __forceinline__ void warp_best(const float (&key)[N], uint32_t avail, int lane,
                                          float& best_key, int& best_idx) {
  float bk = -__int_as_float(0x7f800000);
  int bi = 0x7fffffff;  // "none": loses every tie against a real item
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (((avail >> j) & 1u) && (key[j] > bk || bi == 0x7fffffff)) {
      bk = key[j];
      bi = j * 32 + lane;
    }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    float ok = __shfl_xor_sync(kFullMask, bk, offset);
    int oi = __shfl_xor_sync(kFullMask, bi, offset);
    if (routing::key_better(ok, oi, bk, bi)) {
      bk = ok;
      bi = oi;
    }
  }
  best_key = bk;
  best_idx = bi;
}

// The worst available entry: (key asc, index desc), the order in which groups are dropped.
template <int N>
__device__ __forceinline__ int warp_worst(const float (&key)[N], uint32_t avail, int lane) {
  float wk = __int_as_float(0x7f800000);
  int wi = -1;  // "none": every real item is worse
#pragma unroll
  for (int j = 0; j < N; ++j)
    if (((avail >> j) & 1u) && (key[j] <= wk || wi == -1)) {
      wk = key[j];
      wi = j * 32 + lane;
    }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    float ok = __shfl_xor_sync(kFullMask, wk, offset);
    int oi = __shfl_xor_sync(kFullMask, wi, offset);
    if (ok < wk || (ok == wk && oi > wi)) {
      wk = ok;
      wi = oi;
    }
  }
  return wi;
}

template <int N>
__device__ __forceinline__ float pick(const float (&v)[N], int j) {
  float r = 0.f;
#pragma unroll
  for (int i = 0; i < N; ++i) r = i == j ? v[i] : r;
  return r;
}

// kVPT = register slots per lane (ceil(E / 32) rounded up to an instantiated size).
template <int kVPT, routing::ScoreFunction kScore>
__global__ void __launch_bounds__(kRouterWarpsPerBlock * 32)
    router_kernel(const routing::RouterProblem p) {
  __shared__ float smem_keys[kRouterWarpsPerBlock][kVPT * 32];
  __shared__ unsigned char smem_kept[kRouterWarpsPerBlock][kVPT * 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int E = p.E, V = p.E / p.groups, slots = p.routed + p.shared;
  const float inf = __int_as_float(0x7f800000);

  float bias[kVPT];
#pragma unroll
  for (int i = 0; i < kVPT; ++i) {
    int e = i * 32 + lane;
    bias[i] = p.bias && e < E ? load_as_float(p.bias, p.bias_dtype, e) : 0.f;
  }
  uint32_t in_range = 0;
#pragma unroll
  for (int i = 0; i < kVPT; ++i) in_range |= (i * 32 + lane < E ? 1u : 0u) << i;

  for (int64_t row = int64_t(blockIdx.x) * kRouterWarpsPerBlock + warp; row < p.M;
       row += int64_t(gridDim.x) * kRouterWarpsPerBlock) {
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
      for (int offset = 16; offset > 0; offset >>= 1)
        sum += __shfl_xor_sync(kFullMask, sum, offset);
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        weight[i] = sum > 0 ? static_cast<float>(key[i] / sum) : 0.f;
        if (p.bias && !p.bias_on_logits)
          key[i] = routing::nan_to_neg_inf(weight[i] + bias[i]);
      }
    }

    uint32_t avail = in_range;
    if (p.groups > 1) {
      const int G = p.groups;
#pragma unroll
      for (int i = 0; i < kVPT; ++i)
        if (i * 32 + lane < E) smem_keys[warp][i * 32 + lane] = key[i];
      __syncwarp();
      // Group g lives in lane g % 32, slot g / 32, like the experts.
      float gscore[kVPT];
      uint32_t gavail = 0;
      const bool two = p.group_score_terms() == 2;
#pragma unroll
      for (int j = 0; j < kVPT; ++j) {
        int g = j * 32 + lane;
        gscore[j] = -inf;
        if (g < G) {
          const float* k = &smem_keys[warp][g * V];
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
          gscore[j] = two ? routing::nan_to_neg_inf(routing::round_to(b1 + b2, p.rounding)) : b1;
          gavail |= 1u << j;
        }
      }
      uint32_t kept = 0;
      if (p.topk_group <= G - p.topk_group) {
        for (int r = 0; r < p.topk_group; ++r) {
          float bk;
          int bg;
          warp_best(gscore, gavail, lane, bk, bg);
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
        if (j * 32 + lane < G) smem_kept[warp][j * 32 + lane] = (kept >> j) & 1u;
      __syncwarp();
      avail = 0;
#pragma unroll
      for (int i = 0; i < kVPT; ++i) {
        int e = i * 32 + lane;
        if (e < E && smem_kept[warp][e / V]) avail |= 1u << i;
      }
      __syncwarp();  // the buffers are rewritten for the next row
    }

    int my_id = 0;
    float my_weight = 0.f;
    for (int r = 0; r < p.routed; ++r) {
      float bk;
      int be;
      warp_best(key, avail, lane, bk, be);
      const int owner = be & 31, slot = be >> 5;
      float w = __shfl_sync(kFullMask, pick(weight, slot), owner);
      if (owner == lane) avail &= ~(1u << slot);
      if (lane == r) {
        my_id = be;
        my_weight = w;
      }
    }
    // The routed sum in slot order, as the oracle adds it.
    double sum = 0;
    for (int r = 0; r < p.routed; ++r) sum += __shfl_sync(kFullMask, my_weight, r);
    if (lane < slots) {
      double w = lane < p.routed ? double(my_weight) : sum / p.rsf;
      if (p.renormalize && sum > 0) w /= sum;
      if (p.scale_by_rsf) w *= p.rsf;
      p.weights[row * slots + lane] = static_cast<float>(w);
      p.ids[row * slots + lane] = lane < p.routed ? my_id : E + (lane - p.routed);
    }
  }
}

}  // namespace moekit::cuda
