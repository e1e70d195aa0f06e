// Programmatic dependent launch (PDL): a kernel launched with the attribute may get its CTAs
// resident while the preceding kernel of the stream finishes; it must wait before touching that
// kernel's outputs. Both device calls are no-ops in a kernel launched without the attribute.
#pragma once

#include <cuda_runtime.h>

#include "common/cuda_check.h"

namespace moekit::cuda {

// Wait until the preceding grid has finished and its writes are visible.
__device__ __forceinline__ void wait_for_preceding_grid() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

// Let the next kernel of the stream (launched with the attribute) get its CTAs resident now.
__device__ __forceinline__ void allow_dependent_launch() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

// How a kernel is launched beyond grid, block, shared memory and stream.
struct LaunchOptions {
  bool overlap = false;      // PDL: may start while the preceding kernel of the stream finishes
  unsigned cluster_x = 0;    // > 0: thread-block clusters of cluster_x CTAs along x
  bool cooperative = false;  // every CTA resident at once (grid-wide barriers)
};

// Launches `kernel` with the attributes `options` asks for (a plain launch when none).
template <typename Kernel, typename... Args>
void launch_with_attributes(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                            LaunchOptions options, const Args&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[3];
  unsigned n = 0;
  if (options.overlap) {
    attribute[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (options.cluster_x > 0) {
    attribute[n].id = cudaLaunchAttributeClusterDimension;
    attribute[n++].val.clusterDim = {options.cluster_x, 1, 1};
  }
  if (options.cooperative) {
    attribute[n].id = cudaLaunchAttributeCooperative;
    attribute[n++].val.cooperative = 1;
  }
  config.attrs = attribute;
  config.numAttrs = n;
  MOEKIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, args...));
}

template <typename Kernel, typename... Args>
void launch_dependent(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                      bool overlap, const Args&... args) {
  launch_with_attributes(kernel, grid, block, smem, stream, LaunchOptions{overlap}, args...);
}

}  // namespace moekit::cuda
