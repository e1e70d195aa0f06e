// Device facts for launch heuristics, queried on the host once per device and cached.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "common/cuda_check.h"

namespace moekit::cuda {

// SM count of the current device (the one a launch goes to). Each call costs a cudaGetDevice; the
// attribute query runs on a device's first use only. Neither enqueues work or synchronises, so a
// call stays legal while the stream is being captured into a graph.
inline int current_device_sm_count() {
  constexpr int kCachedDevices = 64;
  static std::atomic<int> cached[kCachedDevices];  // 0: not queried yet (static storage: zeroed)
  int device = 0;
  MOEKIT_CUDA_CHECK(cudaGetDevice(&device));
  const bool cacheable = device >= 0 && device < kCachedDevices;
  if (cacheable) {
    const int sms = cached[device].load(std::memory_order_relaxed);
    if (sms > 0) return sms;
  }
  int sms = 0;
  MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (cacheable) cached[device].store(sms, std::memory_order_relaxed);
  return sms;
}

// CTAs of a grid-stride kernel over `items` threads' work: at least one, at most ctas_per_sm on
// each SM of the current device (the threads then loop instead of more CTAs being launched).
inline unsigned grid_stride_ctas(int64_t items, int threads, int ctas_per_sm) {
  const int64_t blocks = (items + threads - 1) / threads;
  const int64_t cap = int64_t(current_device_sm_count()) * ctas_per_sm;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace moekit::cuda
