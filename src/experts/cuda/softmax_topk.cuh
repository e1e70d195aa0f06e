// Softmax top-k routing for fused_moe: one warp per token row. p = softmax(logits) in fp32 (NaN
// logits count as -inf); the k largest p in descending order, ties to the lower expert index;
// optional renormalisation over the k chosen. A row of all-NaN logits picks experts 0..k-1 with
// weight 0.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace moekit::cuda {

template <typename L>
__device__ __forceinline__ float logit_float(const L& v) { return static_cast<float>(v); }
template <>
__device__ __forceinline__ float logit_float<__nv_bfloat16>(const __nv_bfloat16& v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float logit_float<__half>(const __half& v) { return __half2float(v); }

template <typename L>
__global__ void softmax_topk_kernel(const L* __restrict__ logits, int64_t M, int E, int k,
                                    bool renormalize, float* __restrict__ weights,
                                    int* __restrict__ ids) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  if (row >= M) return;
  const L* x = logits + row * E;
  float mx = -INFINITY;
  for (int e = lane; e < E; e += 32) {
    const float v = logit_float(x[e]);
    if (!isnan(v)) mx = fmaxf(mx, v);
  }
  for (int d = 16; d > 0; d >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, d));
  float sum = 0.f;
  for (int e = lane; e < E; e += 32) {
    const float v = logit_float(x[e]);
    if (!isnan(v) && mx != -INFINITY) sum += expf(v - mx);
  }
  for (int d = 16; d > 0; d >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, d);
  const float inv = sum > 0.f ? 1.f / sum : 0.f;
  float chosen_sum = 0.f;
  int prev_e = -1;
  float prev_p = INFINITY;
  for (int j = 0; j < k; ++j) {
    // Best (p, -e) strictly after (prev_p, prev_e) in the order (p desc, e asc).
    float best_p = -1.f;
    int best_e = 0x7fffffff;
    for (int e = lane; e < E; e += 32) {
      const float v = logit_float(x[e]);
      const float pe = (isnan(v) || mx == -INFINITY) ? 0.f : expf(v - mx) * inv;
      const bool after = pe < prev_p || (pe == prev_p && e > prev_e);
      if (after && (pe > best_p || (pe == best_p && e < best_e))) {
        best_p = pe;
        best_e = e;
      }
    }
    for (int d = 16; d > 0; d >>= 1) {
      const float op = __shfl_xor_sync(0xffffffffu, best_p, d);
      const int oe = __shfl_xor_sync(0xffffffffu, best_e, d);
      if (op > best_p || (op == best_p && oe < best_e)) {
        best_p = op;
        best_e = oe;
      }
    }
    if (lane == 0) {
      weights[row * k + j] = best_p;
      ids[row * k + j] = best_e;
    }
    chosen_sum += best_p;
    prev_p = best_p;
    prev_e = best_e;
  }
  if (renormalize && lane == 0 && chosen_sum > 0.f) {
    const float r = 1.f / chosen_sum;
    for (int j = 0; j < k; ++j) weights[row * k + j] *= r;
  }
}

}  // namespace moekit::cuda
