// CPU fused_qk_norm_rope (inputs already validated).
#pragma once

#include <cstdint>

#include "rope/rotary_frequencies.h"
#include "rope/validate.h"

namespace moekit::cpu {

void fused_qk_norm_rope(const detail::QkNormRopeArgs& args, const detail::RotaryFrequencies& freqs);

// One token's rotation, expanded per element e < R: out[e] = y[e] * cos_a[e] + y[partner[e]] *
// sin_a[e], with the attention factor folded into both and the sign of sin folded into sin_a.
struct RotaryRow {
  float cos_a[256];
  float sin_a[256];
};

// Normalises and rotates one head of D 16-bit values in place (kernels of one ISA).
struct HeadArgs {
  int head_dim, rotary_dim, half;
  bool is_neox, fp16;
  float eps;
};
void normalize_rotate_head_avx2(uint16_t* head, const float* weight, const RotaryRow& row,
                                const HeadArgs& args);

}  // namespace moekit::cpu
