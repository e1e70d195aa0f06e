// CPU combine kernels (inputs already validated).
#pragma once

#include "moekit/tensor.h"

namespace moekit::cpu {

void moe_sum(const TensorView& input, const TensorView& output);
void moe_sum_reduce(const TensorView& input, const TensorView& output, double routed_scaling_factor);
void apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                           const TensorView& permutation, const TensorView& factors);

}  // namespace moekit::cpu
