// Combine: sum the k expert outputs of each token back into one row.
//
// Every op takes tensors on one device (CPU or CUDA) and runs there; CUDA ops run on `stream`,
// allocate nothing and never synchronise (safe inside CUDA-graph capture). M = 0 is a no-op.
#pragma once

#include "moekit/tensor.h"

namespace moekit {

// out[m, h] = sum_j input[m, j, h], accumulated in fp32 (fp64 for fp64), rounded once (RN).
//   input  [M, k, H] fp32/fp16/bf16, contiguous
//   output [M, H]    same dtype, contiguous
MOEKIT_API void moe_sum(TensorView input, TensorView output, Stream stream = {});

// out[m, h] = round(routed_scaling_factor * sum_j input[m, j, h]): fp32 accumulation (fp64 for
// fp64), the scale applied after the sum, one rounding (RN).
//   input  [M, k, H] fp32/fp16/bf16/fp64, contiguous
//   output [M, H]    same dtype, contiguous
MOEKIT_API void moe_sum_reduce(TensorView input, TensorView output,
                               double routed_scaling_factor = 1.0, Stream stream = {});

// out[m, :] = sum_{j < k} f[m * k + j] * input[permutation[m * k + j], :], k = len(permutation) / M,
// fp32 accumulation, one rounding. A permutation entry of -1 (or outside [0, R)) is skipped.
//   input        [R, H] fp32/fp16/bf16, contiguous (R is usually M * k)
//   output       [M, H] same dtype, contiguous
//   permutation  [M * k] int32 (the output_permutation of prepare_moe_input)
//   factors      optional [M * k] or [M, k], in the output dtype or fp32; absent = 1
MOEKIT_API void apply_shuffle_mul_sum(TensorView input, TensorView output, TensorView permutation,
                                      TensorView factors = {}, Stream stream = {});

namespace reference {
MOEKIT_API void moe_sum(TensorView input, TensorView output);
MOEKIT_API void moe_sum_reduce(TensorView input, TensorView output,
                               double routed_scaling_factor = 1.0);
MOEKIT_API void apply_shuffle_mul_sum(TensorView input, TensorView output, TensorView permutation,
                                      TensorView factors = {});
}  // namespace reference

}  // namespace moekit
