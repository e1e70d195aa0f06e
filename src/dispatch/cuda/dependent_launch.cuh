// Programmatic dependent launch from the device side (both are no-ops in a kernel launched without
// the attribute or with nothing before it).
#pragma once

namespace moekit::cuda {

// Wait until the preceding grid has finished and its writes are visible.
__device__ __forceinline__ void wait_for_preceding_grid() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

// Let the next kernel of the stream (launched with the attribute) get its CTAs resident now.
__device__ __forceinline__ void allow_dependent_launch() {
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

}  // namespace moekit::cuda
