// Per-row score computation of the CPU router, one function per ISA with bit-identical keys.
// Inputs: x = the row's logits as fp32, bias = fp32 [E] or null; both readable up to
// round_up(E, 8) (the tails are ignored). Outputs key[E] (selection score, never NaN) and
// weight[E] (the unnormalised routed weight: softmax probability or sigmoid); both 32-byte aligned
// with room for round_up(E, 8) entries (the AVX2 path writes whole vectors).
#pragma once

#include "routing/problem.h"

namespace moekit::cpu {

constexpr int kRowCapacity = 512;  // kMaxRouterExperts, a multiple of 8

void score_row_scalar(const routing::RouterProblem& p, const float* x, const float* bias,
                      float* key, float* weight);
void score_row_avx2(const routing::RouterProblem& p, const float* x, const float* bias, float* key,
                    float* weight);

}  // namespace moekit::cpu
