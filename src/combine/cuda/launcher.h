// CUDA combine launchers (inputs already validated; stream-ordered, no allocation, no sync).
#pragma once

#include "moekit/tensor.h"

namespace moekit::cuda {

void moe_sum(const TensorView& input, const TensorView& output, Stream stream);
void moe_sum_reduce(const TensorView& input, const TensorView& output, double routed_scaling_factor,
                    Stream stream);
void apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                           const TensorView& permutation, const TensorView& factors, Stream stream);

}  // namespace moekit::cuda
