// shuffle_rows kernels: one warp-stride loop per destination row, copying it in Vec-sized pieces
// (the widest size that divides the row pitch and both base addresses); a missing source row is
// written as zeros. At decode sizes (the copy fits one wave of threads) one piece per thread
// instead: the map entry, then a single load, so the kernel waits for two round trips, not one per
// unrolled batch of the row loop. Both launch with programmatic dependent launch and wait for the
// preceding grid before their first load.
#pragma once

#include <cstdint>

#include "common/dependent_launch.cuh"

namespace moekit::cuda {

template <int kBytes>
struct alignas(kBytes) Bytes {
  unsigned char b[kBytes];
};

template <int kBytes>
__global__ void shuffle_rows_kernel(const unsigned char* __restrict__ input, int64_t src_rows,
                                    const int32_t* __restrict__ dst2src_map,
                                    unsigned char* __restrict__ output, int64_t dst_rows,
                                    int64_t row_bytes) {
  using Vec = Bytes<kBytes>;
  wait_for_preceding_grid();
  allow_dependent_launch();
  const int64_t vecs_per_row = row_bytes / kBytes;
  const int64_t warps_total = int64_t(gridDim.x) * (blockDim.x / 32);
  const int lane = threadIdx.x % 32;
  for (int64_t r = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; r < dst_rows;
       r += warps_total) {
    const int64_t src = dst2src_map[r];
    Vec* dst = reinterpret_cast<Vec*>(output + r * row_bytes);
    if (src >= 0 && src < src_rows) {
      const Vec* from = reinterpret_cast<const Vec*>(input + src * row_bytes);
#pragma unroll 4
      for (int64_t v = lane; v < vecs_per_row; v += 32) dst[v] = from[v];
    } else {
      Vec zero{};
      for (int64_t v = lane; v < vecs_per_row; v += 32) dst[v] = zero;
    }
  }
}

// One Vec per thread: piece i of the whole output (row i / vecs_per_row); at most 2^32 pieces.
template <int kBytes>
__global__ void shuffle_rows_flat_kernel(const unsigned char* __restrict__ input, int64_t src_rows,
                                         const int32_t* __restrict__ dst2src_map,
                                         unsigned char* __restrict__ output, uint32_t pieces,
                                         uint32_t vecs_per_row) {
  using Vec = Bytes<kBytes>;
  wait_for_preceding_grid();
  allow_dependent_launch();
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pieces) return;
  const uint32_t r = i / vecs_per_row, v = i - r * vecs_per_row;
  const int64_t src = dst2src_map[r];
  Vec* dst = reinterpret_cast<Vec*>(output) + i;
  if (src >= 0 && src < src_rows)
    *dst = reinterpret_cast<const Vec*>(input)[src * vecs_per_row + v];
  else
    *dst = Vec{};
}

}  // namespace moekit::cuda
