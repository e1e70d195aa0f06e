#include "cuda_timing.h"

#include <vector>

#include "common/cuda_check.h"
#include "device_buffer.h"

namespace moekit::bench {

namespace {
constexpr size_t kL2FlushBytes = size_t{256} << 20;
}  // namespace

Timing time_cuda_graph(const std::function<void(cudaStream_t)>& enqueue, const TimingOptions& options) {
  static DeviceBuffer flush(kL2FlushBytes);
  cudaStream_t stream;
  MOEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  MOEKIT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue(stream);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
    throw;
  }
  MOEKIT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  MOEKIT_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));

  for (int i = 0; i < options.warmup; ++i) MOEKIT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  std::vector<cudaEvent_t> events(2 * options.repeat);
  for (cudaEvent_t& e : events) MOEKIT_CUDA_CHECK(cudaEventCreate(&e));
  for (int i = 0; i < options.repeat; ++i) {
    MOEKIT_CUDA_CHECK(cudaMemsetAsync(flush.data(), 0, kL2FlushBytes, stream));
    MOEKIT_CUDA_CHECK(cudaEventRecord(events[2 * i], stream));
    MOEKIT_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    MOEKIT_CUDA_CHECK(cudaEventRecord(events[2 * i + 1], stream));
  }
  MOEKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> seconds;
  for (int i = 0; i < options.repeat; ++i) {
    float ms = 0;
    MOEKIT_CUDA_CHECK(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]));
    seconds.push_back(ms * 1e-3);
  }
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  return summarize(std::move(seconds));
}

}  // namespace moekit::bench
