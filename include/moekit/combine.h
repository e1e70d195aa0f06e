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

namespace reference {
MOEKIT_API void moe_sum(TensorView input, TensorView output);
}  // namespace reference

}  // namespace moekit
