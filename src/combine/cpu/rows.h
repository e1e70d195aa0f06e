// Row primitive of the CPU combine kernels: a weighted sum of rows in fp32, read from and stored to
// the storage dtype, AVX2 + F16C (rows_avx2.cpp). Conversions round exactly like common/numeric.h; the
// weighted accumulation uses FMA, so it may differ from the scalar path by an ulp of the fp32 sum.
#pragma once

#include <cstdint>
#include <utility>

#include "common/small_array.h"
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

// Orders this thread's streamed stores before whatever follows (an sfence).
void finish_streamed_stores();

// One thread's tokens [begin, end) of a combine: out row m = sum_rows over token m's rows.
// gather(m, rows, weights) writes token m's rows and their factors and returns how many (at most k);
// the factors reach sum_rows only when `weighted`. Rows are gathered one token ahead, so that with
// `streamed` sum_rows prefetches the next token's rows and writes out around the cache.
template <typename Gather>
void sum_tokens(int64_t begin, int64_t end, int64_t k, bool weighted, bool streamed, DType dtype, float scale,
                char* out, int64_t H, const Gather& gather) {
  detail::SmallArray<const void*, 128> rows(2 * k);
  detail::SmallArray<float, 128> weights(2 * k);
  const void** cur = rows.data();
  const void** next = cur + k;
  float* cur_w = weights.data();
  float* next_w = cur_w + k;
  const int64_t row_bytes = H * static_cast<int64_t>(dtype_size(dtype));
  RowStreaming s;
  s.stream_out = true;
  int64_t n = gather(begin, cur, cur_w);
  for (int64_t m = begin; m < end; ++m) {
    s.next_rows = next;
    s.next_n = m + 1 < end ? gather(m + 1, next, next_w) : 0;
    sum_rows(cur, weighted ? cur_w : nullptr, n, dtype, scale, out + m * row_bytes, H, streamed ? &s : nullptr);
    std::swap(cur, next);
    std::swap(cur_w, next_w);
    n = s.next_n;
  }
  if (streamed) finish_streamed_stores();
}

}  // namespace moekit::cpu::avx2
