// moe_sum / moe_sum_reduce kernel: each thread owns one pack (16 bytes) of one output row, loads
// the k input packs of that column kBatch at a time (several 16-byte loads in flight; the launcher
// takes kBatch = 8 for k > 4, so one round of loads covers top-8), accumulates in ascending j in
// fp32 (fp64 for fp64), scales once and rounds once.
// A grid-stride loop covers any M; the pack width is chosen so that H needs no tail. Launched with
// programmatic dependent launch: it waits for the preceding grid before its first load.
#pragma once

#include "combine/cuda/vector_io.cuh"
#include "common/dependent_launch.cuh"

namespace moekit::cuda {

template <typename T, int kVec, int kBatch>
__global__ void __launch_bounds__(256) moe_sum_kernel(const T* __restrict__ in, T* __restrict__ out,
                                                      int64_t M, int k, int64_t H,
                                                      typename Accumulator<T>::type scale) {
  using P = Pack<T, kVec>;
  using Acc = typename Accumulator<T>::type;
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int64_t packs_per_row = H / kVec;
  const int64_t total = M * packs_per_row;
  const P* in_packs = reinterpret_cast<const P*>(in);
  P* out_packs = reinterpret_cast<P*>(out);
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < total;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = quotient(c, packs_per_row), col = c - m * packs_per_row;
    const P* src = in_packs + m * k * packs_per_row + col;
    Acc acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v) acc[v] = Acc(0);
    for (int j0 = 0; j0 < k; j0 += kBatch) {
      P x[kBatch];
#pragma unroll
      for (int b = 0; b < kBatch; ++b)
        if (j0 + b < k) x[b] = src[int64_t(j0 + b) * packs_per_row];
#pragma unroll
      for (int b = 0; b < kBatch; ++b)
        if (j0 + b < k) {
#pragma unroll
          for (int v = 0; v < kVec; ++v) acc[v] += Accumulator<T>::load(x[b].v[v]);
        }
    }
    P y;
#pragma unroll
    for (int v = 0; v < kVec; ++v) y.v[v] = Accumulator<T>::store(acc[v] * scale);
    out_packs[c] = y;
  }
}

}  // namespace moekit::cuda
