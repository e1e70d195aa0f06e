// Static work splitting over the CPU thread pool (OpenMP). Chunks are fixed by (n, threads), so a
// body that writes disjoint outputs gives the same result for every thread count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "moekit/cpu.h"

namespace moekit::detail {

// Memory-bound CPU ops whose call reads + writes at least this much prefetch ahead and write their
// output with streaming stores (about the last-level cache of one CPU die; beyond it a written row
// is evicted by the rows read after it before anyone reads it back).
constexpr int64_t kStreamingMinBytes = int64_t{32} << 20;

// Calls body(begin, end) over [0, n) split into at most cpu_threads() contiguous ranges of at least
// `grain` items each.
template <typename Body>
void parallel_for(int64_t n, int64_t grain, const Body& body) {
  if (n <= 0) return;
  int64_t threads = std::min<int64_t>(cpu_threads(), (n + std::max<int64_t>(grain, 1) - 1) /
                                                         std::max<int64_t>(grain, 1));
  if (threads <= 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel for num_threads(static_cast<int>(threads)) schedule(static, 1)
  for (int64_t t = 0; t < threads; ++t) {
    int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) body(begin, end);
  }
}

}  // namespace moekit::detail
