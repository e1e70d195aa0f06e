// Combine of the GPU expert path: out[m] = rsf * sum over slots t (in order) of down_rows[pos(m, t)],
// fp32 accumulation, one rounding. Slots whose id was out of range (pos = -1) add nothing. Without
// a pair_pos (pairs in slot order, no route prep) pos(m, t) = m * k + t where topk_ids names one of
// the E experts. Each thread owns 8 consecutive columns of one token (16-byte loads and stores).
#pragma once

#include <cstdint>

#include "common/device_info.h"
#include "experts/cuda/expert_gemm.cuh"
#include "experts/cuda/expert_ids.cuh"

namespace moekit::cuda {

template <typename T>
__device__ __forceinline__ float load_float(const T& v);
template <>
__device__ __forceinline__ float load_float<__nv_bfloat16>(const __nv_bfloat16& v) { return __bfloat162float(v); }
template <>
__device__ __forceinline__ float load_float<__half>(const __half& v) { return __half2float(v); }

template <typename T>
__global__ void combine_rows_kernel(const T* __restrict__ down_rows, const int* __restrict__ pair_pos,
                                    const int* __restrict__ topk_ids, int E, T* __restrict__ out, int64_t M,
                                    int k, int64_t H, float rsf) {
  wait_for_preceding_grid();  // launched with PDL after GEMM 2: its rows must be complete
  const int64_t chunks = H / 8;
  const int64_t total = M * chunks;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < total;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = c / chunks;
    const int64_t h0 = (c - m * chunks) * 8;
    float acc[8];
#pragma unroll
    for (int v = 0; v < 8; ++v) acc[v] = 0.f;
    // Up to kSlots positions, then their rows, are loaded before any is used: one slot at a time
    // cost two dependent memory round trips per slot (6.8 us for one token of k = 8 on an H200).
    constexpr int kSlots = 8;
    for (int t0 = 0; t0 < k; t0 += kSlots) {
      int pos[kSlots];
#pragma unroll
      for (int t = 0; t < kSlots; ++t) {
        const int64_t i = m * k + t0 + t;
        if (t0 + t >= k) pos[t] = -1;
        else if (pair_pos) pos[t] = pair_pos[i];
        else pos[t] = is_layer_expert(topk_ids[i], E) ? static_cast<int>(i) : -1;
      }
      uint4 raw[kSlots];
#pragma unroll
      for (int t = 0; t < kSlots; ++t)
        if (pos[t] >= 0) raw[t] = *reinterpret_cast<const uint4*>(down_rows + int64_t(pos[t]) * H + h0);
#pragma unroll
      for (int t = 0; t < kSlots; ++t)  // slot order: the sum is fixed
        if (pos[t] >= 0) {
          const T* vals = reinterpret_cast<const T*>(&raw[t]);
#pragma unroll
          for (int v = 0; v < 8; ++v) acc[v] += load_float(vals[v]);
        }
    }
    uint4 packed;
    T* o = reinterpret_cast<T*>(&packed);
#pragma unroll
    for (int v = 0; v < 8; ++v) o[v] = MmaTraits<T>::from_float(acc[v] * rsf);
    *reinterpret_cast<uint4*>(out + m * H + h0) = packed;
  }
}

// CTAs of a grid-stride kernel over `items` threads' work on the expert path: at least one, at most
// 16 per SM of the current device.
inline unsigned expert_rows_grid(int64_t items, int threads) { return grid_stride_ctas(items, threads, 16); }

// The layer's combine, after GEMM 2 (PDL where `pdl`), on either expert path. pair_pos null: pairs
// in slot order, topk_ids (E experts) says which slots have a row.
template <typename T>
void launch_combine_rows(const T* down_rows, const int* pair_pos, const int* topk_ids, int64_t E, T* out, int64_t M,
                         int64_t k, int64_t H, float rsf, bool pdl, cudaStream_t stream) {
  constexpr int kThreads = 256;
  launch_dependent(combine_rows_kernel<T>, dim3(expert_rows_grid(M * (H / 8), kThreads)), dim3(kThreads), 0, stream,
                   pdl, down_rows, pair_pos, topk_ids, static_cast<int>(E), out, M, static_cast<int>(k), H, rsf);
}

}  // namespace moekit::cuda
