// CUDA launcher of interleave_gate_up (inputs validated by src/experts/interleave_gate_up.cpp).
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit::cuda {

// src / dst viewed as [outer, 2I, row_bytes] bytes: dst row 2j <- src row j, 2j + 1 <- I + j.
void interleave_gate_up(const void* src, void* dst, int64_t outer, int64_t I, int64_t row_bytes,
                        Stream stream);

}  // namespace moekit::cuda
