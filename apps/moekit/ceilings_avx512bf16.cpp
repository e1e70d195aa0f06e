// AVX-512-BF16 peak: VDPBF16PS (16 lanes x 2 bf16 pairs x 2 FLOP = 64 FLOP per instruction) on 12
// independent accumulators. Compiled with the avx512bf16 flags; runs only where supported.
#include <immintrin.h>
#include <omp.h>

#include <vector>

#include "bench_backend.h"
#include "ceilings.h"

namespace moekit::bench {
namespace {

// The timed chains run in a call of their own, with no call inside: around the clock call GCC kept
// them on the stack, and every step then waited on a store-to-load forward (half the real peak).
__attribute__((noinline)) void run_chains(__m512* c, __m512bh a, __m512bh b, long n) {
  __m512 r[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) r[j] = c[j];
  for (long i = 0; i < n; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) r[j] = _mm512_dpbf16_ps(r[j], a, b);
  }
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) c[j] = r[j];
}

double dpbf16_peak(int threads, double seconds) {
  std::vector<double> rate(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    // Small operands: the accumulators grow by 2e-6 per step and never overflow.
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    const __m512bh b = a;
    __m512 c[12];
    for (__m512& x : c) x = _mm512_setzero_ps();
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
    rate[omp_get_thread_num()] = static_cast<double>(iterations) * 12 * 64 / elapsed;
  }
  double total = 0;
  for (double r : rate) total += r;
  return total;
}

}  // namespace

MOEKIT_REGISTER_CPU_PEAK("avx512-bf16 dpbf16ps", CpuIsa::kAvx512Bf16, dpbf16_peak);

}  // namespace moekit::bench
