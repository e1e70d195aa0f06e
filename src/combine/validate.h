// Argument checks of the combine ops, shared by the oracle and the fast paths.
#pragma once

#include "moekit/tensor.h"

namespace moekit::detail {

void validate_moe_sum(const TensorView& input, const TensorView& output, Device device);
void validate_moe_sum_reduce(const TensorView& input, const TensorView& output,
                             double routed_scaling_factor, Device device);
void validate_apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                                    const TensorView& permutation, const TensorView& factors,
                                    Device device);

}  // namespace moekit::detail
