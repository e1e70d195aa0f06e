// AVX2 streamed rows of shuffle_rows: two destination rows at a time, their lines interleaved, with
// the next two rows' sources prefetched alongside. Two random source rows in flight instead of one
// keep more misses outstanding; 32-byte streaming stores write each line in two stores (four
// 16-byte ones, interleaved over two rows, left the write-combining buffers half full).
#include <immintrin.h>

#include "dispatch/cpu/kernels.h"

namespace moekit::cpu::avx2 {
namespace {

inline void prefetch(const unsigned char* p) {
  if (p) _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
}

inline __m256i load32(const unsigned char* src, int64_t o) {
  return src ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + o)) : _mm256_setzero_si256();
}

inline void stream32(unsigned char* dst, int64_t o, __m256i v) {
  _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + o), v);
}

}  // namespace

void shuffle_rows_streamed(const detail::ShuffleRowsProblem& p, int64_t r0, int64_t r1) {
  auto source = [&](int64_t r) { return r < r1 ? p.source_row(r) : nullptr; };
  const int64_t bytes = p.row_bytes;
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    const unsigned char *s0 = source(r), *s1 = source(r + 1);
    const unsigned char *n0 = source(r + 2), *n1 = source(r + 3);
    unsigned char* d0 = p.output + r * bytes;
    unsigned char* d1 = d0 + bytes;
    int64_t o = 0;
    for (; o + 64 <= bytes; o += 64) {
      prefetch(n0 ? n0 + o : nullptr);
      prefetch(n1 ? n1 + o : nullptr);
      const __m256i a = load32(s0, o), b = load32(s0, o + 32), c = load32(s1, o), d = load32(s1, o + 32);
      stream32(d0, o, a);
      stream32(d0, o + 32, b);
      stream32(d1, o, c);
      stream32(d1, o + 32, d);
    }
    if (o < bytes) {  // a 32-byte tail
      const __m256i a = load32(s0, o), c = load32(s1, o);
      stream32(d0, o, a);
      stream32(d1, o, c);
    }
  }
  if (r < r1) {
    const unsigned char* s = source(r);
    unsigned char* d = p.output + r * bytes;
    for (int64_t o = 0; o < bytes; o += 32) stream32(d, o, load32(s, o));
  }
  _mm_sfence();
}

}  // namespace moekit::cpu::avx2
