// Timing of the CUDA performance figures (dispatch, combine, rope and routing tests): `launches`
// back-to-back calls captured in one CUDA graph (launch latency amortised), the graph replayed
// `replays` times; returns the median microseconds per call. graph_time_cold_us puts an L2 flush before every call and subtracts the
// flushes' own time, for bandwidth figures that must not be served from L2.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "moekit/tensor.h"

namespace moekit::test {

template <typename Op>
double graph_time_us(const Op& op, int launches = 20, int replays = 15) {
  cudaStream_t stream;
  cudaStreamCreate(&stream);
  op(Stream{stream});  // warm-up outside the capture
  cudaStreamSynchronize(stream);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
  for (int i = 0; i < launches; ++i) op(Stream{stream});
  cudaStreamEndCapture(stream, &graph);
  cudaGraphInstantiate(&exec, graph, 0);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> us;
  for (int r = 0; r < replays; ++r) {
    cudaEventRecord(start, stream);
    cudaGraphLaunch(exec, stream);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    us.push_back(1000.0 * ms / launches);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

// Writes more bytes than the L2 holds (50 MiB on H100) so that the next kernel reads from DRAM.
class L2Flush {
 public:
  L2Flush() { cudaMalloc(&scratch_, kBytes); }
  ~L2Flush() { cudaFree(scratch_); }
  L2Flush(const L2Flush&) = delete;
  L2Flush& operator=(const L2Flush&) = delete;
  void operator()(Stream s) const {
    cudaMemsetAsync(scratch_, 0, kBytes, static_cast<cudaStream_t>(s.handle));
  }

 private:
  static constexpr size_t kBytes = size_t{256} << 20;
  void* scratch_ = nullptr;
};

template <typename Op>
double graph_time_cold_us(const Op& op, int launches = 10, int replays = 9) {
  const L2Flush flush;
  const double both = graph_time_us([&](Stream s) { flush(s); op(s); }, launches, replays);
  const double flush_only = graph_time_us([&](Stream s) { flush(s); }, launches, replays);
  return std::max(both - flush_only, 1e-3);
}

}  // namespace moekit::test
