// Row primitives of the CPU combine kernels: fp32 accumulator rows fed from and stored to the
// storage dtype, AVX2 + F16C (rows_avx2.cpp). Conversions round exactly like common/numeric.h; the
// weighted accumulation uses FMA, so it may differ from the scalar path by an ulp of the fp32 sum.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit::cpu::avx2 {

// acc[h] = fma(f, row[h], acc[h]) (acc[h] += row[h] when f == 1) for h < H; dtype fp32/fp16/bf16.
void accumulate_row(const void* row, DType dtype, float f, float* acc, int64_t H);
// out[h] = round(acc[h] * scale) for h < H.
void store_row(const float* acc, float scale, DType dtype, void* out, int64_t H);

}  // namespace moekit::cpu::avx2
