// The one test every kernel of the GPU expert path applies to a top-k id.
#pragma once

namespace moekit::cuda {

// Whether id `e` names one of the layer's E experts. Ids outside [0, E) (-1 where expert
// parallelism left a slot to another rank, or any other value) are skipped: no row, no weight.
__device__ __forceinline__ bool is_layer_expert(int e, int E) { return e >= 0 && e < E; }

}  // namespace moekit::cuda
