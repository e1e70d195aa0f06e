// CUDA combine launchers (inputs already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "moekit/tensor.h"

namespace moekit::cuda {

void moe_sum(const TensorView& input, const TensorView& output, Stream stream);

}  // namespace moekit::cuda
