// fused_qk_norm_rope kernel: one block per token (grid-stride beyond gridDim.x); with kSplit (small
// T) a token's heads are split over gridDim.y CTAs of chunk_slices slices each, so that decode
// sizes fill the GPU. Without it the code is the whole-row kernel (the split costs bandwidth at
// large T, so the launcher picks per shape).
//
// A "slice" is 8 consecutive values of a head (one 16-byte load and store); each (token, head) is
// owned by D/8 consecutive lanes, so a warp covers 256/D heads. The token's R/2 rotations (cos * A, sin * A) are computed
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
  int64_t chunk_slices;  // kSplit: slices per CTA, a whole number of heads
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

template <typename T, int kHeadDim>
__device__ __forceinline__ void rope_load_slice(const T* row, int64_t item, int64_t items,
                                                bool vector_io, float (&x)[kRopeValuesPerLane]) {
  if (item < items) {
    rope_load8(row + item * kRopeValuesPerLane, vector_io, x);
  } else {
#pragma unroll
    for (int j = 0; j < kRopeValuesPerLane; ++j) x[j] = 0.f;
  }
}

// Pulls the weight slice that rope_normalize_rotate_store will read for `item` into L1, so that its
// latency overlaps the trigonometry instead of following it (split CTAs: few slices each).
template <typename T, int kHeadDim>
__device__ __forceinline__ void rope_prefetch_weight(const QkNormRopeParams& p, int64_t item,
                                                     int64_t end) {
  constexpr int kLanes = kHeadDim / kRopeValuesPerLane;
  if (item < end) {
    const T* weight = static_cast<const T*>(item / kLanes < p.num_heads_q ? p.q_weight : p.k_weight);
    asm volatile("prefetch.global.L1 [%0];" ::"l"(weight + item % kLanes * kRopeValuesPerLane));
  }
}

// Normalises and rotates the 8 values `x` of slice `item` (head item / (D/8), lane item % (D/8)) and
// stores them. Called by full warps: inactive lanes (item >= items) carry zeros through the
// shuffles and store nothing.
template <typename T, int kHeadDim>
__device__ __forceinline__ void rope_normalize_rotate_store(const QkNormRopeParams& p, T* row,
                                                            int64_t item, int64_t items,
                                                            const float2* rotation,
                                                            const float (&x)[kRopeValuesPerLane]) {
  constexpr int kVec = kRopeValuesPerLane;
  constexpr int kLanes = kHeadDim / kVec;  // lanes per head: 8, 16 or 32 (divides 32)
  const bool active = item < items;
  const int head = static_cast<int>(item / kLanes);
  const int lane = static_cast<int>(item % kLanes);

  float w[kVec];
  if (active) {
    const T* weight = static_cast<const T*>(head < p.num_heads_q ? p.q_weight : p.k_weight);
    rope_load8(weight + lane * kVec, p.vector_io, w);
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

template <typename T, typename Pos, int kHeadDim, bool kSplit>
__global__ void __launch_bounds__(kRopeMaxThreads, 3)
    fused_qk_norm_rope_kernel(const __grid_constant__ QkNormRopeParams p) {
  constexpr int kVec = kRopeValuesPerLane;
  __shared__ float2 rotation[detail::kMaxRotaryPairs];
  const int64_t items = int64_t(p.num_heads_q + p.num_heads_k) * (kHeadDim / kVec);
  const int64_t stride = blockDim.x;
  int64_t begin = 0, end = items;  // this CTA's slices of a row (a head and warp boundary)
  if constexpr (kSplit) {
    begin = int64_t(blockIdx.y) * p.chunk_slices;
    end = begin + p.chunk_slices < items ? begin + p.chunk_slices : items;
  }

  for (int64_t token = blockIdx.x; token < p.num_tokens; token += gridDim.x) {
    T* row = static_cast<T*>(p.qkv) + token * p.row_elements;

    // The first two passes are loaded before the trigonometry so that their latency is hidden
    // (the launcher sizes blocks so that two passes cover up to 1024 slices).
    float x0[kVec], x1[kVec];
    rope_load_slice<T, kHeadDim>(row, begin + threadIdx.x, end, p.vector_io, x0);
    rope_load_slice<T, kHeadDim>(row, begin + threadIdx.x + stride, end, p.vector_io, x1);
    if constexpr (kSplit) rope_prefetch_weight<T, kHeadDim>(p, begin + threadIdx.x, end);

    const int64_t position = static_cast<int64_t>(static_cast<const Pos*>(p.positions)[token]);
    for (int i = threadIdx.x; i < p.half; i += blockDim.x) {
      const detail::RotaryCosSin cs = detail::rotary_cos_sin(position, p.freq[i]);
      rotation[i] = make_float2(cs.cos * p.attention_factor, cs.sin * p.attention_factor);
    }
    __syncthreads();

    // Pass boundaries are the same for the whole block, so every lane runs the same trip count and
    // the shuffles always see full warps.
    rope_normalize_rotate_store<T, kHeadDim>(p, row, begin + threadIdx.x, end, rotation, x0);
    if (stride < end - begin)
      rope_normalize_rotate_store<T, kHeadDim>(p, row, begin + threadIdx.x + stride, end, rotation, x1);
    for (int64_t first = begin + 2 * stride; first < end; first += stride) {
      rope_load_slice<T, kHeadDim>(row, first + threadIdx.x, end, p.vector_io, x0);
      rope_normalize_rotate_store<T, kHeadDim>(p, row, first + threadIdx.x, end, rotation, x0);
    }
    __syncthreads();  // `rotation` is rewritten for the next token
  }
}

}  // namespace moekit::cuda
