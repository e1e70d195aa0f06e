// GPU timing for back ends (CUDA builds): the work is captured once into a CUDA graph, then each
// timed replay follows a 256 MiB memset that evicts L2 (so weights come from HBM, as in a real
// layer), with events around the replay only; the median replay time is reported.
#pragma once

#include <cuda_runtime.h>

#include <functional>

#include "bench_backend.h"

namespace moekit::bench {

// `enqueue` must be stream-ordered and capturable (no sync, no allocation); it gets the stream to
// launch on. Errors raise moekit::Error naming the failing call.
Timing time_cuda_graph(const std::function<void(cudaStream_t)>& enqueue, const TimingOptions& options);

}  // namespace moekit::bench
