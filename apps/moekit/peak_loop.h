// The register-resident peak loop of the per-ISA ceilings files: 12 independent accumulator chains
// of one instruction on every thread, long enough to cover its latency x ports. Each ISA file
// defines a Step in an anonymous namespace (so its instantiation stays in that file, compiled with
// that file's flags):
//   V         accumulator vector;  Operands  the instruction's other operands
//   init()    starting accumulator; operands()  values that keep the chains finite
//   step(c, o) one instruction;     add(x, y)    to use the result;  kFlops  per instruction
#pragma once

#include "bench_backend.h"

namespace moekit::bench {

// The timed chains run in a call of their own, with no call inside: around the clock call GCC kept
// them on the stack, and every step then waited on a store-to-load forward (half the real peak).
template <typename Step>
__attribute__((noinline)) void run_chains(typename Step::V* c, typename Step::Operands o, long n) {
  typename Step::V r[12];
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) r[j] = c[j];
  for (long i = 0; i < n; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) r[j] = Step::step(r[j], o);
  }
#pragma GCC unroll 12
  for (int j = 0; j < 12; ++j) c[j] = r[j];
}

// FLOP/s of all threads together, each running the chains for `seconds`.
// No std:: containers here: an inline library function instantiated in files compiled with
// different ISA flags is merged by the linker into one copy, which could carry AVX-512 code into
// the AVX2 path.
template <typename Step>
double chain_peak(int threads, double seconds) {
  double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
  {
    const typename Step::Operands o = Step::operands();
    typename Step::V c[12];
    for (auto& x : c) x = Step::init();
    constexpr long kInner = 4096;
    long iterations = 0;
    double start = now_seconds(), elapsed = 0;
    do {
      run_chains<Step>(c, o, kInner);
      iterations += kInner;
      elapsed = now_seconds() - start;
    } while (elapsed < seconds);
    typename Step::V sum = c[0];
    for (int j = 1; j < 12; ++j) sum = Step::add(sum, c[j]);
    __asm__ volatile("" : : "v"(sum));  // the result is used: the chains stay
    total += static_cast<double>(iterations) * 12 * Step::kFlops / elapsed;
  }
  return total;
}

}  // namespace moekit::bench
