// CUDA error handling for launchers: every runtime call and every launch is checked and turned into
// moekit::Error(Runtime) naming the call site.
#pragma once

#include <cuda_runtime.h>

#include "common/checks.h"

#define MOEKIT_CUDA_CHECK(expr)                                                              \
  do {                                                                                       \
    cudaError_t moekit_err_ = (expr);                                                        \
    if (moekit_err_ != cudaSuccess)                                                          \
      ::moekit::detail::fail(::moekit::detail::cat(#expr, " failed: ",                       \
                                                   cudaGetErrorString(moekit_err_), " at ",  \
                                                   __FILE__, ":", __LINE__),                 \
                             ::moekit::ErrorKind::Runtime);                                  \
  } while (0)

// After a <<<>>> launch: catches bad configurations without synchronising.
#define MOEKIT_CUDA_CHECK_LAUNCH() MOEKIT_CUDA_CHECK(cudaGetLastError())

namespace moekit::detail {
inline cudaStream_t as_cuda_stream(void* handle) { return static_cast<cudaStream_t>(handle); }
}  // namespace moekit::detail
