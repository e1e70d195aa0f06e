// shuffle_rows kernel: one warp-stride loop per destination row, copying it in Vec-sized pieces
// (the widest size that divides the row pitch and both base addresses); a missing source row is
// written as zeros.
#pragma once

#include <cstdint>

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

}  // namespace moekit::cuda
