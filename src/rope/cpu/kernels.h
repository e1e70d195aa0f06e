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

// Whole tokens at a time (AVX2), for rotated ranges of whole 16-value blocks: NeoX with R/2 % 16 == 0,
// interleaved with R % 16 == 0 (tokens_fit_avx2). Per token the angles are reduced 4 at a time and
// the weights folded into the cos/sin rows once for all heads; per group of up to 8 heads one pass
// reads x into the sums of squares, one sqrt and divide give the 8 inv_rms, a second pass (from L1)
// writes inv_rms * (x w cos + x_partner w_partner sin). The next token's heads are prefetched while
// this token's are processed.
struct TokenArgs {
  uint16_t* qkv = nullptr;
  int64_t width = 0;  // values per token row
  int64_t heads_q = 0, heads_k = 0;
  const int32_t* positions32 = nullptr;  // one of the two
  const int64_t* positions64 = nullptr;
  const float* q_weight = nullptr;  // [head_dim] each
  const float* k_weight = nullptr;
  float attention_factor = 1.f;
  HeadArgs head;
};
bool tokens_fit_avx2(const HeadArgs& args);
void normalize_rotate_tokens_avx2(const TokenArgs& args, const detail::RotaryFrequencies& freqs,
                                  int64_t begin, int64_t end);

}  // namespace moekit::cpu
