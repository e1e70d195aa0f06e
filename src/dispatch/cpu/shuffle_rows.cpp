// CPU shuffle_rows: threads over destination rows. Small copies take one memcpy per row; copies
// larger than the caches prefetch the next row's source while copying a row and write the
// destination around the cache (no read-for-ownership of lines that are overwritten whole): two
// rows at a time with 32-byte stores on AVX2 (shuffle_rows_avx2.cpp), one at a time otherwise.
#include <emmintrin.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/parallel.h"
#include "dispatch/cpu/kernels.h"
#include "moekit/cpu.h"

namespace moekit::cpu {
namespace {

// One destination row from `src` (or zeros when src is null), `next` (the next row's source, may be
// null) prefetched line by line alongside; dst is 16-byte aligned.
void copy_row_streamed(unsigned char* dst, const unsigned char* src, const unsigned char* next,
                       int64_t bytes) {
  int64_t o = 0;
  const __m128i zero = _mm_setzero_si128();
  for (; o + 64 <= bytes; o += 64) {
    if (next) _mm_prefetch(reinterpret_cast<const char*>(next + o), _MM_HINT_T0);
    __m128i a = zero, b = zero, c = zero, d = zero;
    if (src) {
      a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + o));
      b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + o + 16));
      c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + o + 32));
      d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + o + 48));
    }
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + o), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + o + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + o + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + o + 48), d);
  }
  if (o == bytes) return;
  if (src) std::memcpy(dst + o, src + o, static_cast<size_t>(bytes - o));
  else std::memset(dst + o, 0, static_cast<size_t>(bytes - o));
}

}  // namespace

void shuffle_rows(const detail::ShuffleRowsProblem& p) {
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(p.row_bytes, 1));
  const bool streamed = 2 * p.dst_rows * p.row_bytes >= detail::kStreamingMinBytes && p.row_bytes % 16 == 0 &&
                        reinterpret_cast<uintptr_t>(p.output) % 16 == 0;
  const bool streamed_avx2 = streamed && cpu_isa() >= CpuIsa::kAvx2 && p.row_bytes % 32 == 0 &&
                             reinterpret_cast<uintptr_t>(p.output) % 32 == 0;
  detail::parallel_for(p.dst_rows, grain, [&](int64_t r0, int64_t r1) {
    if (streamed_avx2) {
      avx2::shuffle_rows_streamed(p, r0, r1);
      return;
    }
    if (streamed) {
      for (int64_t r = r0; r < r1; ++r)
        copy_row_streamed(p.output + r * p.row_bytes, p.source_row(r), r + 1 < r1 ? p.source_row(r + 1) : nullptr,
                          p.row_bytes);
      _mm_sfence();
      return;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const unsigned char* src = p.source_row(r);
      unsigned char* dst = p.output + r * p.row_bytes;
      if (src) std::memcpy(dst, src, static_cast<size_t>(p.row_bytes));
      else std::memset(dst, 0, static_cast<size_t>(p.row_bytes));
    }
  });
}

}  // namespace moekit::cpu
