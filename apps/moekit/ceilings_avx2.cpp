// AVX2 ceilings: the fp32 FMA peak and the streaming read used for the bandwidth figure. Compiled
// with -mavx2 -mfma; called only when the CPU has AVX2.
#include <immintrin.h>
#include <omp.h>

#include <vector>

#include "bench_backend.h"
#include "ceilings.h"

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

// 12 independent accumulator chains cover the FMA latency (4 cycles) x 2 ports with room to
// spare; acc = acc * a + b converges to b / (1 - a), so nothing overflows or goes subnormal.
double fma_fp32_peak(int threads, double seconds) {
  std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
    __m256 c0 = _mm256_set1_ps(1.f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0,
           c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    constexpr long kInner = 4096;
    long iterations = 0;
    double start = now_seconds(), elapsed = 0;
    do {
      for (long i = 0; i < kInner; ++i) {
        c0 = _mm256_fmadd_ps(c0, a, b);
        c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b);
        c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b);
        c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b);
        c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b);
        c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b);
        c11 = _mm256_fmadd_ps(c11, a, b);
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
      }
      iterations += kInner;
      elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                               _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    sum = _mm256_add_ps(sum, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    volatile float keep = _mm256_cvtss_f32(sum);
    (void)keep;
    rate[omp_get_thread_num()] = static_cast<double>(iterations) * 12 * 8 * 2 / elapsed;
  }
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx2 fma fp32", CpuIsa::kAvx2, fma_fp32_peak);

}  // namespace moekit::bench
