// Argument checks of fused_qk_norm_rope, shared by the oracle and the fast paths.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit::detail {

// The validated call, with rotary_dim resolved (-1 -> head_dim).
struct QkNormRopeArgs {
  TensorView qkv, q_weight, k_weight, position_ids;
  int64_t num_tokens = 0, num_heads_q = 0, num_heads_k = 0, num_heads_v = 0;
  int64_t head_dim = 0, rotary_dim = 0;
  double eps = 0, base = 0, factor = 1, low = 0, high = 0, attention_factor = 1;
  bool is_neox = true;
};

QkNormRopeArgs validate_fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q,
                                           int64_t num_heads_k, int64_t num_heads_v,
                                           int64_t head_dim, double eps, TensorView q_weight,
                                           TensorView k_weight, double base, bool is_neox,
                                           TensorView position_ids, double factor, double low,
                                           double high, double attention_factor,
                                           int64_t rotary_dim, Device device);

}  // namespace moekit::detail
