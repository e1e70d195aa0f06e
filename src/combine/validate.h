// Argument checks of the combine ops, shared by the oracle and the fast paths.
#pragma once

#include "moekit/tensor.h"

namespace moekit::detail {

void validate_moe_sum(const TensorView& input, const TensorView& output, Device device);

}  // namespace moekit::detail
