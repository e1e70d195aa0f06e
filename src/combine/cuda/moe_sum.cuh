// moe_sum kernel: each thread owns 8 consecutive columns of one token row (16-byte loads for
// 16-bit types), accumulates the k slots in fp32 and rounds once. A grid-stride loop covers any M.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace moekit::cuda {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T, int kVec>
__global__ void moe_sum_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t M, int k,
                               int64_t H) {
  const int64_t chunks_per_row = (H + kVec - 1) / kVec;
  const int64_t total = M * chunks_per_row;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < total;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = c / chunks_per_row;
    const int64_t h0 = (c % chunks_per_row) * kVec;
    const T* row = in + m * k * H + h0;
    float acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[v] = 0.f;
    const bool full = h0 + kVec <= H;
    for (int j = 0; j < k; ++j) {
#pragma unroll
      for (int v = 0; v < kVec; ++v)
        if (full || h0 + v < H) acc[v] += to_float(row[j * H + v]);
    }
#pragma unroll
    for (int v = 0; v < kVec; ++v)
      if (full || h0 + v < H) out[m * H + h0 + v] = from_float<T>(acc[v]);
  }
}

}  // namespace moekit::cuda
