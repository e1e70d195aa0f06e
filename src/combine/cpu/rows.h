// Row primitive of the CPU combine kernels: a weighted sum of rows in fp32, read from and stored to
// the storage dtype, AVX2 + F16C (rows_avx2.cpp). Conversions round exactly like common/numeric.h; the
// weighted accumulation uses FMA, so it may differ from the scalar path by an ulp of the fp32 sum.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit::cpu::avx2 {

// out[h] = round(scale * (((0 + f[0] x_0[h]) + f[1] x_1[h]) + ...)) over the n rows x_j (fp32
// sums in ascending j, each step a fused multiply-add; f == null: plain adds), 32 columns at a time
// held in registers.
void sum_rows(const void* const* rows, const float* f, int64_t n, DType dtype, float scale, void* out,
              int64_t H);

}  // namespace moekit::cpu::avx2
