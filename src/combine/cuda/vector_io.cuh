// Element conversions and aligned vector packs for the combine kernels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>

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

// The accumulator of a storage type: fp32, fp64 for fp64.
template <typename T>
struct Accumulator {
  using type = float;
  static __device__ __forceinline__ float load(T v) { return to_float(v); }
  static __device__ __forceinline__ T store(float v) { return from_float<T>(v); }
};
template <>
struct Accumulator<double> {
  using type = double;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};

// kVec consecutive elements moved by one load / store instruction (16 bytes at most).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// The widest pack (in elements, up to 16 bytes) that divides the row length and keeps every row
// start aligned, given the base addresses that rows are taken from.
template <typename T>
inline int pack_elements(int64_t row_elements, std::initializer_list<const void*> bases) {
  uint64_t bits = static_cast<uint64_t>(row_elements) * sizeof(T);
  for (const void* b : bases) bits |= reinterpret_cast<uintptr_t>(b);
  int bytes = 16;
  while (bytes > static_cast<int>(sizeof(T)) && bits % bytes != 0) bytes /= 2;
  return bytes / static_cast<int>(sizeof(T));
}

// a / b for non-negative a, b: a 32-bit division where both fit (the 64-bit one is a long
// instruction sequence, on the path to a decode-size kernel's first load).
__device__ __forceinline__ int64_t quotient(int64_t a, int64_t b) {
  return ((a | b) >> 32) == 0 ? int64_t(uint32_t(a) / uint32_t(b)) : a / b;
}

// Grid for a grid-stride loop over `items`: one item per thread while that fits the cap.
inline unsigned grid_for(int64_t items, int threads) {
  const int64_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 16 ? 65535 * 16 : blocks));
}

}  // namespace moekit::cuda
