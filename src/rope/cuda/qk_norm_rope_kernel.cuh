// fused_qk_norm_rope kernel: each warp owns a unit of work = one token's run of up to kMaxUnitRows
// "warp rows", all loaded before any is reduced, and issues the next unit's loads before it
// normalises the current one; no CTA barrier stands between loads and stores (the whole-row CTA
// kernel this replaces held ~2.1 TB/s at 16384 tokens on both H100 and H200: latency-bound).
//
// A "slice" is 8 consecutive values of a head (one 16-byte load and store); each head is owned by
// D/8 consecutive lanes, so a warp row covers 256/D heads (32 slices). The launcher picks the rows
// per unit: few at decode sizes (more warps on more SMs), kMaxUnitRows at large T, where each warp
// takes a run of consecutive units (whole tokens).
// A warp computes a token's R/2 rotations (cos * A, sin * A) into its own shared-memory table from
// an fp64-reduced angle, then keeps the 8 its lanes use in registers for the token's other units
// (H200: recomputing them per unit of 4 rows held qwen3 at 16384 tokens to 142 us, 50% of copy).
// NeoX partners more than 8 values apart are fetched with one shfl_xor over half/8 lanes; nearer
// partners (interleaved, or NeoX with R <= 8) live in the same lane.
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
  int64_t row_elements;   // (Hq + Hk + Hv) * D
  int64_t units;          // num_tokens * units_per_token
  int64_t units_per_warp; // a contiguous run of units per warp
  int units_per_token;    // ceil(warp rows of a token / unit_rows)
  int unit_rows;          // warp rows of a unit, 1..kMaxUnitRows
  int num_heads_q, num_heads_k;
  int rotary_dim, half;
  float eps, attention_factor;
  bool is_neox;
  double freq[detail::kMaxRotaryPairs];
};

constexpr int kRopeValuesPerLane = 8;  // 16 bytes of a 16-bit type
constexpr int kMaxUnitRows = 4;        // warp rows (16-byte loads per lane) of a unit
constexpr int kRopeWarpsPerCta = 4;
constexpr int kRopeMinCtasPerSm = 5;  // 20 warps per SM (a 102-register cap: two units' loads)

// 16-bit values <-> fp32 by their bits (no address-taken locals: everything stays in registers).
template <typename T>
__device__ __forceinline__ float rope_bits_to_float(uint32_t bits16);
template <>
__device__ __forceinline__ float rope_bits_to_float<__nv_bfloat16>(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}
template <>
__device__ __forceinline__ float rope_bits_to_float<__half>(uint32_t bits16) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

template <typename T>
__device__ __forceinline__ uint32_t rope_float_to_bits(float v);
template <>
__device__ __forceinline__ uint32_t rope_float_to_bits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <>
__device__ __forceinline__ uint32_t rope_float_to_bits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}

__device__ __forceinline__ uint32_t& rope_word(uint4& w, int i) {
  return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w;
}
__device__ __forceinline__ uint32_t rope_word(const uint4& w, int i) {
  return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w;
}

// 8 values as raw 16-byte words: one vector load, or 8 element loads when unaligned.
template <bool kVectorIo>
__device__ __forceinline__ uint4 rope_load_raw(const void* src) {
  if constexpr (kVectorIo) {
    return *static_cast<const uint4*>(src);
  } else {
    const unsigned short* e = static_cast<const unsigned short*>(src);
    uint4 raw;
#pragma unroll
    for (int i = 0; i < 4; ++i) rope_word(raw, i) = uint32_t(e[2 * i]) | uint32_t(e[2 * i + 1]) << 16;
    return raw;
  }
}

template <typename T>
__device__ __forceinline__ void rope_unpack(const uint4& raw, float (&out)[kRopeValuesPerLane]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t w = rope_word(raw, i);
    out[2 * i] = rope_bits_to_float<T>(w & 0xffffu);
    out[2 * i + 1] = rope_bits_to_float<T>(w >> 16);
  }
}

template <typename T, bool kVectorIo>
__device__ __forceinline__ void rope_store8(T* dst, const float (&in)[kRopeValuesPerLane]) {
  uint4 raw;
#pragma unroll
  for (int i = 0; i < 4; ++i)
    rope_word(raw, i) = rope_float_to_bits<T>(in[2 * i]) | rope_float_to_bits<T>(in[2 * i + 1]) << 16;
  if constexpr (kVectorIo) {  // one 16-byte store (a uint4 assignment may be split into four)
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "r"(raw.x), "r"(raw.y), "r"(raw.z),
                 "r"(raw.w)
                 : "memory");
  } else {
    unsigned short* e = reinterpret_cast<unsigned short*>(dst);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      e[2 * i] = static_cast<unsigned short>(rope_word(raw, i) & 0xffffu);
      e[2 * i + 1] = static_cast<unsigned short>(rope_word(raw, i) >> 16);
    }
  }
}

// Normalises and rotates the 8 values `x` of one slice (weights `w`; rotations `cs` of the lane's 8
// dims, sin negated for the first of a pair; bit j of `rotated`: dim j is below R) and stores them
// when `active`. Called by full warps: inactive lanes (whole heads past the last one) carry zeros
// through the shuffles.
template <typename T, int kHeadDim, bool kVectorIo>
__device__ __forceinline__ void rope_normalize_rotate_store(const QkNormRopeParams& p, T* dst, bool active,
                                                            uint32_t rotated, const float (&w)[kRopeValuesPerLane],
                                                            const float2 (&cs)[kRopeValuesPerLane],
                                                            const float (&x)[kRopeValuesPerLane]) {
  constexpr int kVec = kRopeValuesPerLane;
  constexpr int kLanes = kHeadDim / kVec;  // lanes per head: 8, 16 or 32 (divides 32)
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
  for (int j = 0; j < kVec; ++j)  // y c -/+ partner s (the sign is in cs.y); dims past R keep y
    out[j] = (rotated >> j) & 1u ? y[j] * cs[j].x + partner[j] * cs[j].y : y[j];
  if (active) rope_store8<T, kVectorIo>(dst, out);
}

// The slices of rows [first_row, first_row + unit_rows) of `token` (zeros past its heads).
template <typename T, int kHeadDim, bool kVectorIo>
__device__ __forceinline__ void rope_load_unit(const QkNormRopeParams& p, int64_t token, int first_row,
                                               int row_head, int head_lane, uint4 (&raw)[kMaxUnitRows]) {
  constexpr int kHeadsPerRow = 32 / (kHeadDim / kRopeValuesPerLane);
  const int heads = p.num_heads_q + p.num_heads_k;
  const T* row = static_cast<const T*>(p.qkv) + token * p.row_elements;
#pragma unroll
  for (int u = 0; u < kMaxUnitRows; ++u) {
    const int head = (first_row + u) * kHeadsPerRow + row_head;
    raw[u] = make_uint4(0, 0, 0, 0);
    if (u < p.unit_rows && head < heads)
      raw[u] = rope_load_raw<kVectorIo>(row + int64_t(head) * kHeadDim + head_lane * kRopeValuesPerLane);
  }
}

// Each warp takes a contiguous run of units (units_per_warp; a token's units are consecutive), so it
// recomputes the rotation table only when the token changes; the next unit's loads are issued
// before the current unit is normalised (up to 2 x kMaxUnitRows 16-byte loads per lane in flight).
template <typename T, typename Pos, int kHeadDim, bool kVectorIo>
__global__ void __launch_bounds__(kRopeWarpsPerCta * 32, kRopeMinCtasPerSm)
    fused_qk_norm_rope_kernel(const __grid_constant__ QkNormRopeParams p) {
  constexpr int kVec = kRopeValuesPerLane;
  constexpr int kLanes = kHeadDim / kVec;    // lanes per head
  constexpr int kHeadsPerRow = 32 / kLanes;  // heads per warp row
  __shared__ float2 rotation_tables[kRopeWarpsPerCta][detail::kMaxRotaryPairs];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head_lane = lane % kLanes, row_head = lane / kLanes;
  float2* rotation = rotation_tables[warp];
  const int heads = p.num_heads_q + p.num_heads_k;
  const int64_t begin = (int64_t(blockIdx.x) * kRopeWarpsPerCta + warp) * p.units_per_warp;
  const int64_t end = begin + p.units_per_warp < p.units ? begin + p.units_per_warp : p.units;
  if (begin >= end) return;

  uint4 q_raw = make_uint4(0, 0, 0, 0), k_raw = make_uint4(0, 0, 0, 0);
  if (p.num_heads_q > 0) q_raw = rope_load_raw<kVectorIo>(static_cast<const T*>(p.q_weight) + head_lane * kVec);
  if (p.num_heads_k > 0) k_raw = rope_load_raw<kVectorIo>(static_cast<const T*>(p.k_weight) + head_lane * kVec);
  // (token, unit of the token) of the next unit, advanced without divisions.
  int64_t next_token = begin / p.units_per_token;
  int next_unit = static_cast<int>(begin - next_token * p.units_per_token);
  uint4 next[kMaxUnitRows];
  rope_load_unit<T, kHeadDim, kVectorIo>(p, next_token, next_unit * p.unit_rows, row_head, head_lane, next);

  int64_t table_token = -1;  // the token whose rotations `cs` holds
  float2 cs[kVec];
  uint32_t rotated = 0;  // bit j: the lane's dim j is rotated (below R)
#pragma unroll
  for (int j = 0; j < kVec; ++j) rotated |= (head_lane * kVec + j < p.rotary_dim ? 1u : 0u) << j;
  for (int64_t unit = begin; unit < end; ++unit) {
    uint4 raw[kMaxUnitRows];
#pragma unroll
    for (int u = 0; u < kMaxUnitRows; ++u) raw[u] = next[u];
    const int64_t token = next_token;
    const int first_row = next_unit * p.unit_rows;
    if (++next_unit == p.units_per_token) {
      next_unit = 0;
      ++next_token;
    }
    if (unit + 1 < end)
      rope_load_unit<T, kHeadDim, kVectorIo>(p, next_token, next_unit * p.unit_rows, row_head, head_lane, next);

    if (token != table_token) {  // the token's rotations; the lane keeps its 8 dims' ones
      table_token = token;
      const int64_t position = static_cast<int64_t>(static_cast<const Pos*>(p.positions)[token]);
      __syncwarp();  // the previous token's reads of the table are done
      for (int i = lane; i < p.half; i += 32) {
        const detail::RotaryCosSin c = detail::rotary_cos_sin(position, p.freq[i]);
        rotation[i] = make_float2(c.cos * p.attention_factor, c.sin * p.attention_factor);
      }
      __syncwarp();
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        // NeoX: pair (i, i + half), i = e mod half; interleaved: pair (2i, 2i + 1), i = e / 2.
        // The first of a pair gets y c - partner s, the second y c + partner s.
        const int e = head_lane * kVec + j;
        cs[j] = make_float2(0.f, 0.f);
        if (e < p.rotary_dim) {
          cs[j] = rotation[p.is_neox ? (e & (p.half - 1)) : (e >> 1)];
          const bool second = p.is_neox ? (e & p.half) != 0 : (e & 1) != 0;
          cs[j].y = second ? cs[j].y : -cs[j].y;
        }
      }
    }

    T* row = static_cast<T*>(p.qkv) + token * p.row_elements;
#pragma unroll
    for (int u = 0; u < kMaxUnitRows; ++u) {
      const int head0 = (first_row + u) * kHeadsPerRow;
      if (u >= p.unit_rows || head0 >= heads) break;  // the same for the whole warp
      const int head = head0 + row_head;
      float x[kVec], w[kVec];
      rope_unpack<T>(raw[u], x);
      const bool q = head < p.num_heads_q;
      rope_unpack<T>(make_uint4(q ? q_raw.x : k_raw.x, q ? q_raw.y : k_raw.y, q ? q_raw.z : k_raw.z,
                                q ? q_raw.w : k_raw.w), w);
      rope_normalize_rotate_store<T, kHeadDim, kVectorIo>(
          p, row + int64_t(head) * kHeadDim + head_lane * kVec, head < heads, rotated, w, cs, x);
    }
  }
}

}  // namespace moekit::cuda
