// fused_qk_norm_rope kernel: one block per token (grid-stride beyond gridDim.x).
//
// Each (token, head) is owned by D/8 consecutive lanes holding 8 values each (one 16-byte load and
// store), so a warp covers 256/D heads. The token's R/2 rotations (cos * A, sin * A) are computed
// once per block into shared memory, from an fp64-reduced angle, while the first loads are in
// flight. NeoX partners more than 8 values apart are fetched with one shfl_xor over half/8 lanes;
// nearer partners (interleaved, or NeoX with R <= 8) live in the same lane.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "rope/rotary_frequencies.h"

namespace moekit::cuda {

struct QkNormRopeParams {
  void* qkv;
  const void* q_weight;  // may be null when num_heads_q == 0
  const void* k_weight;  // may be null when num_heads_k == 0
  const void* positions;
  int64_t num_tokens;
  int64_t row_elements;  // (Hq + Hk + Hv) * D
  int num_heads_q, num_heads_k;
  int rotary_dim, half;
  float eps, attention_factor;
  bool is_neox;
  bool vector_io;  // qkv and both weights are 16-byte aligned
  double freq[detail::kMaxRotaryPairs];
};

constexpr int kRopeValuesPerLane = 8;  // 16 bytes of a 16-bit type
constexpr int kRopeMaxThreads = 512;

template <typename T>
__device__ __forceinline__ float rope_to_float(T v);
template <>
__device__ __forceinline__ float rope_to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float rope_to_float<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T rope_from_float(float v);
template <>
__device__ __forceinline__ __nv_bfloat16 rope_from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ __half rope_from_float<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__device__ __forceinline__ void rope_load8(const T* src, bool vector_io, float (&out)[kRopeValuesPerLane]) {
  if (vector_io) {
    const uint4 raw = *reinterpret_cast<const uint4*>(src);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < kRopeValuesPerLane; ++j) out[j] = rope_to_float(v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kRopeValuesPerLane; ++j) out[j] = rope_to_float(src[j]);
  }
}

template <typename T>
__device__ __forceinline__ void rope_store8(T* dst, bool vector_io, const float (&in)[kRopeValuesPerLane]) {
  if (vector_io) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < kRopeValuesPerLane; ++j) v[j] = rope_from_float<T>(in[j]);
    *reinterpret_cast<uint4*>(dst) = raw;
  } else {
#pragma unroll
    for (int j = 0; j < kRopeValuesPerLane; ++j) dst[j] = rope_from_float<T>(in[j]);
  }
}

template <typename T, typename Pos, int kHeadDim>
__global__ void __launch_bounds__(kRopeMaxThreads)
    fused_qk_norm_rope_kernel(const __grid_constant__ QkNormRopeParams p) {
  constexpr int kVec = kRopeValuesPerLane;
  constexpr int kLanes = kHeadDim / kVec;  // lanes per head: 8, 16 or 32 (divides 32)
  __shared__ float2 rotation[detail::kMaxRotaryPairs];

  const int64_t items = int64_t(p.num_heads_q + p.num_heads_k) * kLanes;
  const T* q_weight = static_cast<const T*>(p.q_weight);
  const T* k_weight = static_cast<const T*>(p.k_weight);

  for (int64_t token = blockIdx.x; token < p.num_tokens; token += gridDim.x) {
    T* row = static_cast<T*>(p.qkv) + token * p.row_elements;

    // The first slice is loaded before the trigonometry so that its latency is hidden.
    float x[kVec];
    if (threadIdx.x < items) {
      rope_load8(row + int64_t(threadIdx.x) * kVec, p.vector_io, x);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) x[j] = 0.f;
    }

    const int64_t position = static_cast<int64_t>(static_cast<const Pos*>(p.positions)[token]);
    for (int i = threadIdx.x; i < p.half; i += blockDim.x) {
      const float angle = static_cast<float>(detail::reduced_rotary_angle(position, p.freq[i]));
      float s, c;
      sincosf(angle, &s, &c);  // accurate libdevice sincosf (<= 2 ulp), never the __sincosf intrinsic
      rotation[i] = make_float2(c * p.attention_factor, s * p.attention_factor);
    }
    __syncthreads();

    // `first` is the same for the whole block, so every lane runs the same trip count and the
    // shuffles below always see full warps (inactive lanes carry zeros).
    for (int64_t first = 0; first < items; first += blockDim.x) {
      const int64_t item = first + threadIdx.x;
      const bool active = item < items;
      if (first != 0) {
        if (active) {
          rope_load8(row + item * kVec, p.vector_io, x);
        } else {
#pragma unroll
          for (int j = 0; j < kVec; ++j) x[j] = 0.f;
        }
      }
      const int head = static_cast<int>(item / kLanes);
      const int lane = static_cast<int>(item % kLanes);

      float w[kVec];
      if (active) {
        rope_load8((head < p.num_heads_q ? q_weight : k_weight) + lane * kVec, p.vector_io, w);
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) w[j] = 0.f;
      }

      float sum_sq = 0.f;
#pragma unroll
      for (int j = 0; j < kVec; ++j) sum_sq += x[j] * x[j];
#pragma unroll
      for (int offset = kLanes / 2; offset > 0; offset /= 2)
        sum_sq += __shfl_xor_sync(0xffffffffu, sum_sq, offset);
      const float inv_rms = rsqrtf(sum_sq / static_cast<float>(kHeadDim) + p.eps);

      float y[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) y[j] = x[j] * w[j] * inv_rms;

      float partner[kVec];
      if (!p.is_neox) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) partner[j] = y[j ^ 1];
      } else if (p.half >= kVec) {
        const int lane_offset = p.half / kVec;  // a power of two below kLanes: stays in the head
#pragma unroll
        for (int j = 0; j < kVec; ++j) partner[j] = __shfl_xor_sync(0xffffffffu, y[j], lane_offset);
      } else if (p.half == 4) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) partner[j] = y[j ^ 4];
      } else {  // half == 2
#pragma unroll
        for (int j = 0; j < kVec; ++j) partner[j] = y[j ^ 2];
      }

      float out[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const int e = lane * kVec + j;
        out[j] = y[j];
        if (e < p.rotary_dim) {
          // NeoX: pair (i, i + half), i = e mod half; interleaved: pair (2i, 2i + 1), i = e / 2.
          // The first of a pair gets y c - partner s, the second y c + partner s.
          const bool second = p.is_neox ? (e & p.half) != 0 : (e & 1) != 0;
          const float2 cs = rotation[p.is_neox ? (e & (p.half - 1)) : (e >> 1)];
          out[j] = y[j] * cs.x + (second ? partner[j] : -partner[j]) * cs.y;
        }
      }
      if (active) rope_store8(row + item * kVec, p.vector_io, out);
    }
    __syncthreads();  // `rotation` is rewritten for the next token
  }
}

}  // namespace moekit::cuda
