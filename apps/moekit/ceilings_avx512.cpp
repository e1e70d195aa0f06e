// AVX-512 fp32 FMA peak (the ceiling of the avx512 ISA path). Compiled with the avx512 flags; runs
// only when the CPU supports that path.
#include <immintrin.h>
#include <omp.h>

#include <vector>

#include "bench_backend.h"
#include "ceilings.h"

namespace moekit::bench {
namespace {

// The timed chains run in a call of their own, with no call inside: around the clock call GCC kept
// them on the stack, and every step then waited on a store-to-load forward (half the real peak).
__attribute__((noinline)) void run_chains(__m512* c, __m512 a, __m512 b, long n) {
  __m512 r[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) r[j] = c[j];
  for (long i = 0; i < n; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) r[j] = _mm512_fmadd_ps(r[j], a, b);
  }
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) c[j] = r[j];
}

// 12 independent chains cover the FMA latency (4 cycles) x 2 ports; acc = acc * a + b converges.
double fma_fp32_peak_avx512(int threads, double seconds) {
  std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
    __m512 c[12];
    for (__m512& x : c) x = _mm512_set1_ps(1.f);
    constexpr long kInner = 4096;
    long iterations = 0;
    double start = now_seconds(), elapsed = 0;
    do {
      run_chains(c, a, b, kInner);
      iterations += kInner;
      elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    __m512 sum = c[0];
    for (int j = 1; j < 12; ++j) sum = _mm512_add_ps(sum, c[j]);
    __asm__ volatile("" : : "v"(sum));  // the result is used: the chains stay
    rate[omp_get_thread_num()] = static_cast<double>(iterations) * 12 * 16 * 2 / elapsed;
  }
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx512 fma fp32", CpuIsa::kAvx512, fma_fp32_peak_avx512);

}  // namespace moekit::bench
