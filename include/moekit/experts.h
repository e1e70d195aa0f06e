// Expert compute: the MoE layer's grouped gate+up GEMM -> activation -> grouped down GEMM ->
// weighted top-k combine, for every weight scheme.
//
// Logical (unpacked) weight layouts, shared by the oracle and every back end's packing:
//   w13: [E, 2I, H] - rows 0..I-1 are the gate projection, rows I..2I-1 the up projection
//   w2:  [E, H, I]
// (a shared expert is the same with E = 1, or 2-D [2I, H] / [H, I]).
// Per scheme (R = rows, C = cols of one expert's matrix):
//   kBF16       weight in the activation dtype (bf16 or fp16) [E, R, C]; no scales.
//   kFP8BlockW8A8  weight e4m3 [E, R, C]; scale fp32 [E, ceil(R/block_n), ceil(C/block_k)];
//               activations quantised per token and block_k-wide K group to e4m3 (amax/448).
//   kFP8BlockW8A16 same weights; activations stay bf16/fp16 (CPU fused_experts scheme 2).
//   kInt8W8A8   weight int8 [E, R, C]; scale fp32 [E, R] (per output channel); activations
//               quantised per row to int8 (amax/127, RNE).
//   kInt4W4A8   weight uint8 [E, R, C/2] (two 4-bit codes 0..15 per byte, even k in the low
//               nibble); zero uint8 [E, R, C/group_size] (0..15); scale fp32 [E, R, C/group_size];
//               value = (q - z) * s; activations int8 per row as kInt8W8A8.
//   kNVFP4      weight uint8 [E, R, C/2] e2m1; block scale e4m3 [E, R, C/16]; global_scale fp32
//               [E] (value = e2m1 * scale / global_scale); activations quantised to NVFP4 with
//               input_global_scale fp32 [E].
//   kMXFP8      weight e4m3 [E, R, C]; scale e8m0 [E, R, C/32]; activations quantised to MXFP8.
//   kMXFP4      weight uint8 [E, R, C/2] e2m1; scale e8m0 [E, R, C/32]; activations bf16/fp16.
#pragma once

#include "moekit/tensor.h"

namespace moekit {

enum class WeightScheme {
  kBF16,  // also fp16: the weights take the activation dtype
  kFP8BlockW8A8,
  kFP8BlockW8A16,
  kInt8W8A8,
  kInt4W4A8,
  kNVFP4,
  kMXFP8,
  kMXFP4,
};

MOEKIT_API const char* weight_scheme_name(WeightScheme scheme);

enum class Activation {
  kSiluAndMul,      // silu(gate) * up
  kGeluAndMul,      // gelu_erf(gate) * up
  kGeluTanhAndMul,  // gelu_tanh(gate) * up
  kSwigluOai,       // gpt-oss clamped SwiGLU, needs alpha and limit (interleaved sources are
                    // de-interleaved when packing; the oracle reads halves)
  kSilu,            // no-mul variants: w13 has I rows (not 2I), a = act(h)
  kGelu,
};

// One projection's weights for every expert, in the logical layout above. Absent tensors are
// default-constructed views.
struct ExpertWeights {
  TensorView weight;
  TensorView scale;
  TensorView zero;
  TensorView global_scale;        // kNVFP4
  TensorView input_global_scale;  // kNVFP4 activation scale
  TensorView bias;                // optional fp32 [E, R], added to the fp32 GEMM result
};

struct FusedExpertsOptions {
  WeightScheme scheme = WeightScheme::kBF16;
  Activation activation = Activation::kSiluAndMul;
  float swiglu_alpha = 0.f;  // kSwigluOai only
  float swiglu_limit = 0.f;
  int block_n = 128;  // FP8 block scales: rows / cols per scale
  int block_k = 128;
  int group_size = 128;  // kInt4W4A8 K-group
  // Multiplies the combined routed output (1.0 = off); applied once, after the top-k sum.
  double routed_scaling_factor = 1.0;
};

namespace reference {

// The oracle MoE layer (expert part): for each token m and slot t with e = topk_ids[m, t] in
// [0, E) (-1 = slot dropped, contributes 0), y_t = topk_weights[m, t] * W2[e] . act(W13[e] . x_m),
// out[m] = rsf * sum_t y_t. Rounding points per scheme as ../shared/spec/cpu-moe.md section 4.11;
// dot products accumulate in fp64 (int64 for integer GEMMs).
//   hidden       [M, H] bf16/fp16
//   topk_weights [M, k] fp32;  topk_ids [M, k] int32
//   output       [M, H] dtype of hidden (may alias hidden)
// `rows` (optional, int32 [R]) restricts the computation to those token rows (the others are left
// untouched): the benchmark checks a sample of a large batch this way.
MOEKIT_API void fused_experts(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                              TensorView topk_weights, TensorView topk_ids, TensorView output,
                              const FusedExpertsOptions& options, TensorView rows = {});

// Shared expert: out[m] = round(D[m] + rsf * fused_experts_out[m]) where D is the dense gated MLP
// of the single expert (w13 [2I, H] or [1, 2I, H]); fused_experts_out optional.
MOEKIT_API void shared_expert(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                              TensorView fused_experts_out, TensorView output,
                              const FusedExpertsOptions& options);

}  // namespace reference
}  // namespace moekit
