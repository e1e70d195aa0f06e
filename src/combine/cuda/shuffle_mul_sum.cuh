// apply_shuffle_mul_sum kernel: each thread owns one pack (16 bytes) of one output row; it reads
// the kBatch permutation entries and factors of its token, then the kBatch gathered input packs
// (several 16-byte loads in flight), and accumulates f * x in fp32 in ascending j. Entries outside
// [0, R) (the -1 of an invalid pair) are skipped. Grid-stride over any M.
#pragma once

#include "combine/cuda/vector_io.cuh"

namespace moekit::cuda {

template <typename T, typename F, int kVec>
__global__ void __launch_bounds__(256) apply_shuffle_mul_sum_kernel(
    const T* __restrict__ in, int64_t R, T* __restrict__ out, int64_t M, int64_t H,
    const int32_t* __restrict__ perm, int k, const F* __restrict__ factors) {
  using P = Pack<T, kVec>;
  constexpr int kBatch = 4;
  const int64_t packs_per_row = H / kVec;
  const int64_t total = M * packs_per_row;
  const P* in_packs = reinterpret_cast<const P*>(in);
  P* out_packs = reinterpret_cast<P*>(out);
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < total;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = c / packs_per_row, col = c - m * packs_per_row;
    float acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[v] = 0.f;
    for (int j0 = 0; j0 < k; j0 += kBatch) {
      int64_t src[kBatch];
      float f[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int64_t pair = m * k + j0 + b;
        const bool in_range = j0 + b < k;
        src[b] = in_range ? perm[pair] : -1;
        if (src[b] >= R) src[b] = -1;
        f[b] = (in_range && factors != nullptr) ? to_float(factors[pair]) : 1.f;
      }
      P x[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b)
        if (src[b] >= 0) x[b] = in_packs[src[b] * packs_per_row + col];
#pragma unroll
      for (int b = 0; b < kBatch; ++b)
        if (src[b] >= 0) {
#pragma unroll
          for (int v = 0; v < kVec; ++v) acc[v] += f[b] * to_float(x[b].v[v]);
        }
    }
    P y;
#pragma unroll
    for (int v = 0; v < kVec; ++v) y.v[v] = from_float<T>(acc[v]);
    out_packs[c] = y;
  }
}

}  // namespace moekit::cuda
