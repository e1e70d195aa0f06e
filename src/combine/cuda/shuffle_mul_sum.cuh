// apply_shuffle_mul_sum kernel: each thread owns one pack (16 bytes) column of kItems consecutive
// output rows (consecutive threads take consecutive columns, so accesses stay coalesced). It reads
// the permutation entries and factors of those rows, kBatch of each at a time, then issues all
// kItems x kBatch gathered input loads before using any (at small k one row per thread leaves too
// few bytes in flight to reach the copy bandwidth), and accumulates f * x in fp32 in ascending j.
// Entries outside [0, R) (the -1 of an invalid pair) are skipped. Grid-stride over any M.
// Launched with programmatic dependent launch: it waits for the preceding grid before its first load.
#pragma once

#include "combine/cuda/vector_io.cuh"
#include "common/dependent_launch.cuh"

namespace moekit::cuda {

template <typename T, typename F, int kVec, int kItems, int kBatch>
__global__ void __launch_bounds__(256) apply_shuffle_mul_sum_kernel(
    const T* __restrict__ in, int64_t R, T* __restrict__ out, int64_t M, int64_t H,
    const int32_t* __restrict__ perm, int k, const F* __restrict__ factors) {
  using P = Pack<T, kVec>;
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int64_t packs_per_row = H / kVec;
  const int64_t total = (M + kItems - 1) / kItems * packs_per_row;
  const P* in_packs = reinterpret_cast<const P*>(in);
  P* out_packs = reinterpret_cast<P*>(out);
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < total;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t group = quotient(c, packs_per_row), col = c - group * packs_per_row;
    const int64_t m0 = group * kItems;
    const int rows = int(min(int64_t(kItems), M - m0));
    float acc[kItems][kVec];
#pragma unroll
    for (int u = 0; u < kItems; ++u)
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc[u][v] = 0.f;
    for (int j0 = 0; j0 < k; j0 += kBatch) {
      int32_t src[kItems][kBatch];  // permutation entries are int32
      float f[kItems][kBatch];
#pragma unroll
      for (int u = 0; u < kItems; ++u)
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
          const int64_t pair = (m0 + u) * k + j0 + b;
          const bool in_range = u < rows && j0 + b < k;
          src[u][b] = in_range ? perm[pair] : -1;
          if (int64_t(src[u][b]) >= R) src[u][b] = -1;
          f[u][b] = (in_range && factors != nullptr) ? to_float(factors[pair]) : 1.f;
        }
      P x[kItems][kBatch];
#pragma unroll
      for (int u = 0; u < kItems; ++u)
#pragma unroll
        for (int b = 0; b < kBatch; ++b)
          if (src[u][b] >= 0) x[u][b] = in_packs[int64_t(src[u][b]) * packs_per_row + col];
#pragma unroll
      for (int u = 0; u < kItems; ++u)
#pragma unroll
        for (int b = 0; b < kBatch; ++b)
          if (src[u][b] >= 0) {
#pragma unroll
            for (int v = 0; v < kVec; ++v) acc[u][v] += f[u][b] * to_float(x[u][b].v[v]);
          }
    }
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      if (u >= rows) break;
      P y;
#pragma unroll
      for (int v = 0; v < kVec; ++v) y.v[v] = from_float<T>(acc[u][v]);
      out_packs[(m0 + u) * packs_per_row + col] = y;
    }
  }
}

}  // namespace moekit::cuda
