// Row primitive of the CPU combine kernels: a weighted sum of rows in fp32, read from and stored to
// the storage dtype, AVX2 + F16C (rows_avx2.cpp). Conversions round exactly like common/numeric.h; the
// weighted accumulation uses FMA, so it may differ from the scalar path by an ulp of the fp32 sum.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit::cpu::avx2 {

// For sums over more data than the caches hold: the rows the next call reads (prefetched during
// this one, so each 4 KiB row does not wait for the hardware prefetcher to find it) and whether
// `out` goes around the cache (no read-for-ownership of lines that are written whole).
struct RowStreaming {
  const void* const* next_rows = nullptr;
  int64_t next_n = 0;
  bool stream_out = false;
};

// out[h] = round(scale * (((0 + f[0] x_0[h]) + f[1] x_1[h]) + ...)) over the n rows x_j (fp32
// sums in ascending j, each step a fused multiply-add; f == null: plain adds), 32 columns at a time
// held in registers. With `streaming`, call finish_streamed_stores() before other threads read out.
void sum_rows(const void* const* rows, const float* f, int64_t n, DType dtype, float scale, void* out,
              int64_t H, const RowStreaming* streaming = nullptr);

// Calls that read + write at least this much stream (about the last-level cache of one CPU die;
// beyond it a written row is evicted by the rows read after it before anyone reads it back).
constexpr int64_t kStreamingMinBytes = int64_t{32} << 20;

// Orders this thread's streamed stores before whatever follows (an sfence).
void finish_streamed_stores();

}  // namespace moekit::cpu::avx2
