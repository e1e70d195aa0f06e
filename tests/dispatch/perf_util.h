// Timing for the dispatch/combine performance tests: `launches` back-to-back calls captured in one
// CUDA graph, the graph replayed `replays` times; returns the median microseconds per call.
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

}  // namespace moekit::test
