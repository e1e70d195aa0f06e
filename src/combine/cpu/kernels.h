// CPU combine kernels (inputs already validated).
#pragma once

#include "moekit/tensor.h"

namespace moekit::cpu {

void moe_sum(const TensorView& input, const TensorView& output);

}  // namespace moekit::cpu
