// AVX2 ceilings: the fp32 FMA peak and the streaming read used for the bandwidth figure. Compiled
// with -mavx2 -mfma; called only when the CPU has AVX2.
#include <immintrin.h>

#include "bench_backend.h"
#include "ceilings.h"
#include "peak_loop.h"

namespace moekit::bench {

unsigned long long read_sum_avx2(const void* data, size_t bytes) {
  const auto* p = static_cast<const __m256i*>(data);
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i + 4 <= bytes / 32; i += 4) {
    a = _mm256_add_epi64(a, _mm256_load_si256(p + i));
    b = _mm256_add_epi64(b, _mm256_load_si256(p + i + 1));
    c = _mm256_add_epi64(c, _mm256_load_si256(p + i + 2));
    d = _mm256_add_epi64(d, _mm256_load_si256(p + i + 3));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  alignas(32) unsigned long long lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

namespace {

// acc = acc * 0.999 + 1e-3 converges to b / (1 - a): nothing overflows or goes subnormal.
struct Fma256 {
  using V = __m256;
  struct Operands {
    __m256 a, b;
  };
  static constexpr double kFlops = 8 * 2;
  static V init() { return _mm256_set1_ps(1.f); }
  static Operands operands() { return {_mm256_set1_ps(0.999f), _mm256_set1_ps(1e-3f)}; }
  static V step(V c, const Operands& o) { return _mm256_fmadd_ps(c, o.a, o.b); }
  static V add(V x, V y) { return _mm256_add_ps(x, y); }
};

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx2 fma fp32", CpuIsa::kAvx2, chain_peak<Fma256>);

}  // namespace moekit::bench
