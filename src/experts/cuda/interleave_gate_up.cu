// interleave_gate_up on the GPU: one grid-stride copy in the widest word (16 down to 1 bytes) that
// divides the row length and both pointers.
#include <cuda_runtime.h>

#include "common/cuda_check.h"
#include "common/device_info.h"
#include "experts/cuda/interleave_gate_up.h"

namespace moekit::cuda {
namespace {

template <typename Word>
__global__ void interleave_gate_up_kernel(const Word* __restrict__ src, Word* __restrict__ dst,
                                          int64_t rows, int64_t I, int64_t row_words) {
  const int64_t total = rows * row_words;
  for (int64_t u = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; u < total;
       u += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = u / row_words, w = u - row * row_words;
    const int64_t outer = row / (2 * I), r = row - outer * 2 * I;
    const int64_t from = outer * 2 * I + ((r & 1) ? I + (r >> 1) : (r >> 1));
    dst[u] = src[from * row_words + w];
  }
}

template <typename Word>
void launch(const void* src, void* dst, int64_t rows, int64_t I, int64_t row_bytes, cudaStream_t s) {
  const int64_t row_words = row_bytes / int64_t(sizeof(Word));
  const int64_t total = rows * row_words;
  const int threads = 256;
  interleave_gate_up_kernel<Word><<<grid_stride_ctas(total, threads, 32), threads, 0, s>>>(
      static_cast<const Word*>(src), static_cast<Word*>(dst), rows, I, row_words);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void interleave_gate_up(const void* src, void* dst, int64_t outer, int64_t I, int64_t row_bytes,
                        Stream stream) {
  const int64_t rows = outer * 2 * I;
  if (rows == 0 || row_bytes == 0) return;
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  const uint64_t bits = uint64_t(row_bytes) | reinterpret_cast<uintptr_t>(src) |
                        reinterpret_cast<uintptr_t>(dst);
  if (bits % 16 == 0) launch<uint4>(src, dst, rows, I, row_bytes, s);
  else if (bits % 8 == 0) launch<uint2>(src, dst, rows, I, row_bytes, s);
  else if (bits % 4 == 0) launch<uint32_t>(src, dst, rows, I, row_bytes, s);
  else if (bits % 2 == 0) launch<uint16_t>(src, dst, rows, I, row_bytes, s);
  else launch<uint8_t>(src, dst, rows, I, row_bytes, s);
}

}  // namespace moekit::cuda
