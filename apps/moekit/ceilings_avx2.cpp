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

// The timed chains run in a call of their own, with no call inside: around the clock call GCC kept
// them on the stack, and every step then waited on a store-to-load forward (half the real peak).
__attribute__((noinline)) void run_chains(__m256* c, __m256 a, __m256 b, long n) {
  __m256 r[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) r[j] = c[j];
  for (long i = 0; i < n; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) r[j] = _mm256_fmadd_ps(r[j], a, b);
  }
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) c[j] = r[j];
}

// 12 independent accumulator chains cover the FMA latency (4 cycles) x 2 ports with room to
// spare; acc = acc * a + b converges to b / (1 - a), so nothing overflows or goes subnormal.
double fma_fp32_peak(int threads, double seconds) {
  std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
    __m256 c[12];
    for (__m256& x : c) x = _mm256_set1_ps(1.f);
    constexpr long kInner = 4096;
    long iterations = 0;
    double start = now_seconds(), elapsed = 0;
    do {
      run_chains(c, a, b, kInner);
      iterations += kInner;
      elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    __m256 sum = c[0];
    for (int j = 1; j < 12; ++j) sum = _mm256_add_ps(sum, c[j]);
    __asm__ volatile("" : : "v"(sum));  // the result is used: the chains stay
    rate[omp_get_thread_num()] = static_cast<double>(iterations) * 12 * 8 * 2 / elapsed;
  }
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx2 fma fp32", CpuIsa::kAvx2, fma_fp32_peak);

}  // namespace moekit::bench
