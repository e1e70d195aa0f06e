// One token's layer (M = 1, small experts: heuristics.cpp) as two warp-per-row GEMV kernels that
// read the weights the way a bare read of them goes fastest: the whole grid sweeps each expert's rows
// together, consecutive warps on consecutive rows (bench/read_floor_probe.cu: qwen3-30b-a3b's 75.5 MB
// in 33.5 us so, in 35.0 us as one contiguous share a CTA, the pattern of the row-tile GEMMs).
//   token_gate_up_kernel: warp per (slot, feature): act(gate + b) * (up + b) (or act(h + b)) -> act_rows.
//   token_down_kernel:    CTA per group of output columns, warp per slot: round(weight * (W2 . act + b)),
//                         summed over the slots in slot order, * rsf, rounded -> out. The combine is
//                         inside: no down rows, no third kernel.
// The roundings are those of the tiled path (expert_gemm.cuh + combine_rows.cuh); only the order of
// the fp32 sums inside one dot product differs.
#pragma once

#include <cstdint>

#include "common/dependent_launch.cuh"
#include "experts/configs.h"
#include "experts/cuda/combine_rows.cuh"
#include "experts/cuda/expert_gemm.cuh"
#include "experts/cuda/expert_ids.cuh"

namespace moekit::cuda {

struct TokenGemvParams {
  const void* x;             // the token's hidden row [H]
  const int* ids;            // [k]
  const float* topk_weights; // [k]
  const void* w13;           // [E, R13, H]
  const float* b13;          // [E, R13] or null
  const void* w2;            // [E, H, I]
  const float* b2;           // [E, H] or null
  void* act_rows;            // [k, I] (workspace)
  void* out;                 // [H]
  int64_t H, I;
  int k, E;
  bool gated, interleaved;
  ActKind act;
  float alpha, limit, rsf;
};

// Streamed once: not kept in L1.
__device__ __forceinline__ uint4 load_weight_chunk(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <typename T>
__device__ __forceinline__ float2 to_float2(uint32_t packed);
template <>
__device__ __forceinline__ float2 to_float2<__nv_bfloat16>(uint32_t packed) {
  return make_float2(__uint_as_float(packed << 16), __uint_as_float(packed & 0xffff0000u));
}
template <>
__device__ __forceinline__ float2 to_float2<__half>(uint32_t packed) {
  return __half22float2(*reinterpret_cast<const __half2*>(&packed));
}

// sum + the dot product of two chunks of 8 values.
template <typename T>
__device__ __forceinline__ float dot8(float sum, const uint4& w, const uint4& v) {
  const uint32_t wa[4] = {w.x, w.y, w.z, w.w}, va[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 a = to_float2<T>(wa[i]), b = to_float2<T>(va[i]);
    sum = fmaf(a.x, b.x, sum);
    sum = fmaf(a.y, b.y, sum);
  }
  return sum;
}

// d[r] = rows[r] . vec over `chunks` 16-byte chunks, one warp, every lane holding the full sums:
// lane l takes chunks l, l + 32, ...; ROWS x U weight loads in flight a lane.
template <typename T, int ROWS, int U>
__device__ __forceinline__ void warp_dots(const uint4* const (&rows)[ROWS], const uint4* vec, int64_t chunks,
                                          int lane, float (&d)[ROWS]) {
#pragma unroll
  for (int r = 0; r < ROWS; ++r) d[r] = 0.f;
  for (int64_t c0 = lane; c0 < chunks; c0 += 32 * U) {
    uint4 w[ROWS][U], v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t c = c0 + 32 * u;
      if (c < chunks) {
#pragma unroll
        for (int r = 0; r < ROWS; ++r) w[r][u] = load_weight_chunk(rows[r] + c);
        v[u] = vec[c];
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (c0 + 32 * u < chunks)
#pragma unroll
        for (int r = 0; r < ROWS; ++r) d[r] = dot8<T>(d[r], w[r][u], v[u]);
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) d[r] += __shfl_xor_sync(0xffffffffu, d[r], o);
}

// Warp per (slot, feature), features of one slot consecutive: the grid sweeps an expert's rows in
// order. Slots whose id is out of range are skipped (token_down_kernel skips them too).
template <typename T, bool kGated>
__global__ void __launch_bounds__(256, 2) token_gate_up_kernel(const TokenGemvParams p) {
  wait_for_preceding_grid();  // ids and the hidden row
  allow_dependent_launch();
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int64_t R = kGated ? 2 * p.I : p.I;
  const int64_t units = int64_t(p.k) * p.I;
  const uint4* x = static_cast<const uint4*>(p.x);
  for (int64_t u = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; u < units; u += warps) {
    const int s = static_cast<int>(u / p.I);
    const int64_t j = u - int64_t(s) * p.I;
    const int e = p.ids[s];
    if (!is_layer_expert(e, p.E)) continue;
    const T* w = static_cast<const T*>(p.w13) + int64_t(e) * R * p.H;
    float v;
    if constexpr (kGated) {
      const int64_t gate_row = p.interleaved ? 2 * j : j, up_row = p.interleaved ? 2 * j + 1 : p.I + j;
      const uint4* rows[2] = {reinterpret_cast<const uint4*>(w + gate_row * p.H),
                              reinterpret_cast<const uint4*>(w + up_row * p.H)};
      float d[2];
      warp_dots<T, 2, 8>(rows, x, p.H / 8, lane, d);
      const float* b = p.b13 ? p.b13 + int64_t(e) * R : nullptr;
      const float g = d[0] + (b ? b[gate_row] : 0.f), up = d[1] + (b ? b[up_row] : 0.f);
      v = gate_up_value(p.act, p.alpha, p.limit, g, up);
    } else {
      const uint4* rows[1] = {reinterpret_cast<const uint4*>(w + j * p.H)};
      float d[1];
      warp_dots<T, 1, 8>(rows, x, p.H / 8, lane, d);
      v = apply_act(p.act, d[0] + (p.b13 ? p.b13[int64_t(e) * R + j] : 0.f));
    }
    if (lane == 0) static_cast<T*>(p.act_rows)[u] = MmaTraits<T>::from_float(v);
  }
}

// CTA per NH consecutive output columns (grid-stride), warp w on slot w: W2 rows h..h+NH-1 of the
// slot's expert against its act row. Before waiting for token_gate_up_kernel, each CTA asks L2 for its
// first columns' W2 rows (the ids are older than that kernel).
template <typename T, int NH>
__global__ void __launch_bounds__(32 * kTokenGemvMaxSlots) token_down_kernel(const TokenGemvParams p) {
  __shared__ float vals[NH][kTokenGemvMaxSlots];
  __shared__ bool valid[kTokenGemvMaxSlots];
  const int lane = threadIdx.x & 31, s = threadIdx.x / 32;
  const int e = p.ids[s];
  const bool mine = is_layer_expert(e, p.E);
  if (lane == 0) valid[s] = mine;
  const T* w = static_cast<const T*>(p.w2) + int64_t(mine ? e : 0) * p.H * p.I;
  const int64_t steps = (p.H + NH - 1) / NH;
  if (mine && blockIdx.x < steps) {
    const int64_t h0 = int64_t(blockIdx.x) * NH, rows = p.H - h0 < NH ? p.H - h0 : NH;
    const char* first = reinterpret_cast<const char*>(w + h0 * p.I);
    for (int64_t line = lane; line * 128 < rows * p.I * int64_t(sizeof(T)); line += 32)
      asm volatile("prefetch.global.L2 [%0];" ::"l"(first + line * 128));
  }
  wait_for_preceding_grid();  // the act rows
  allow_dependent_launch();
  const uint4* act = static_cast<const uint4*>(p.act_rows) + int64_t(s) * (p.I / 8);
  const float weight = mine ? p.topk_weights[s] : 0.f;
  T* out = static_cast<T*>(p.out);
  for (int64_t step = blockIdx.x; step < steps; step += gridDim.x) {
    const int64_t h0 = step * NH;
    if (mine) {
      const uint4* rows[NH];
#pragma unroll
      for (int r = 0; r < NH; ++r)  // rows past H: any row, the sum is not stored
        rows[r] = reinterpret_cast<const uint4*>(w + (h0 + r < p.H ? h0 + r : h0) * p.I);
      float d[NH];
      warp_dots<T, NH, 8 / NH>(rows, act, p.I / 8, lane, d);
      if (lane == 0)
#pragma unroll
        for (int r = 0; r < NH; ++r) {
          const float b = p.b2 && h0 + r < p.H ? p.b2[int64_t(e) * p.H + h0 + r] : 0.f;
          vals[r][s] = load_float(MmaTraits<T>::from_float(weight * (d[r] + b)));  // a down row's rounding
        }
    }
    __syncthreads();
    if (threadIdx.x < NH && h0 + threadIdx.x < p.H) {
      float acc = 0.f;
      for (int t = 0; t < p.k; ++t)  // slot order: the sum is fixed
        if (valid[t]) acc += vals[threadIdx.x][t];
      out[h0 + threadIdx.x] = MmaTraits<T>::from_float(acc * p.rsf);
    }
    __syncthreads();
  }
}

// Output columns per token_down_kernel CTA step: enough rows that a lane has about 8 weight
// chunks in flight (I / 256 chunks a row and lane).
inline int token_down_rows(int64_t I) {
  const int64_t per_row = (I / 8 + 31) / 32;
  return per_row <= 2 ? 8 : per_row <= 4 ? 4 : per_row <= 8 ? 2 : 1;
}

}  // namespace moekit::cuda
