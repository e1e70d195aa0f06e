// Expert compute: the MoE layer's grouped gate+up GEMM -> activation -> grouped down GEMM ->
// weighted top-k combine, for every weight scheme.
//
// Logical (unpacked) weight layouts, shared by the oracle and every back end's packing:
//   w13: [E, 2I, H] - rows 0..I-1 are the gate projection, rows I..2I-1 the up projection
//        ("halves"; [E, I, H] for the no-mul activations kSilu / kGelu). With
//        FusedExpertsOptions::gate_up_interleaved the rows are interleaved instead (gpt-oss,
//        TRT-LLM): row 2j = gate_j, row 2j+1 = up_j. Gated activations only (kSiluAndMul,
//        kGeluAndMul, kGeluTanhAndMul, kSwigluOai) and scheme kBF16 only (block scales of the
//        other schemes would not map to halves blocks); w13.bias [E, 2I] follows the same row
//        order. interleave_gate_up() converts a halves tensor to this layout.
//   w2:  [E, H, I]
// (a shared expert is the same with E = 1, or 2-D [2I, H] / [H, I] with every other tensor of that
// ExpertWeights also without the E dimension).
// Per scheme (R = rows, C = cols of one expert's matrix; all tensors contiguous; packed 4-bit data
// holds ceil(C/2) bytes per row, element 2j in the low nibble; block counts round up, so a last
// partial block has its own scale):
//   kBF16       weight in the activation dtype (bf16 or fp16) [E, R, C]; no scales.
//   kFP8BlockW8A8  weight e4m3 [E, R, C]; scale fp32 [E, ceil(R/block_n), ceil(C/block_k)];
//               activations quantised per token and block_k-wide K group to e4m3:
//               s = max(amax, 1e-10) / 448, q = e4m3(x / s) (quantize_fp8_per_token_group).
//   kFP8BlockW8A16 same weights; activations stay bf16/fp16 (CPU fused_experts scheme 2).
//   kInt8W8A8   weight int8 [E, R, C]; scale fp32 [E, R] (or [E, R, 1]; per output channel);
//               activations quantised per row to int8 (amax/127, RNE; quantize_int8_per_row).
//   kInt4W4A8   weight uint8 [E, R, ceil(C/2)] (4-bit codes 0..15); zero uint8 [E, R, C/group_size]
//               (0..15); scale fp32 [E, R, C/group_size]; value = (q - z) * s; C % group_size == 0;
//               activations int8 per row as kInt8W8A8.
//   kNVFP4      weight uint8 [E, R, ceil(C/2)] e2m1; block scale e4m3 [E, R, ceil(C/16)];
//               global_scale fp32 [E] (value = e2m1 * scale / global_scale); activations quantised
//               to NVFP4 (quantize_nvfp4) with input_global_scale fp32 [E] of the slot's expert.
//   kMXFP8      weight e4m3 [E, R, C]; scale e8m0 [E, R, ceil(C/32)]; activations quantised to
//               MXFP8 per 32 (quantize_mxfp8).
//   kMXFP4      weight uint8 [E, R, ceil(C/2)] e2m1; scale e8m0 [E, R, ceil(C/32)]; activations
//               bf16/fp16.
// Tensors a scheme does not use must be absent (an error names them otherwise).
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
  kSwigluOai,       // gpt-oss clamped SwiGLU, needs alpha and limit (gpt-oss stores w13
                    // interleaved: FusedExpertsOptions::gate_up_interleaved)
  kSilu,            // no-mul variants: w13 has I rows (not 2I), a = act(h)
  kGelu,
};

MOEKIT_API const char* activation_name(Activation activation);

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
  // kSwigluOai only (gpt-oss: 1.702 and 7.0); both must stay 0 for the other activations.
  //   g' = min(g, limit), u' = clamp(u, -limit, limit), a = g' * sigmoid(alpha * g') * (u' + 1)
  float swiglu_alpha = 0.f;
  float swiglu_limit = 0.f;
  int block_n = 128;  // FP8 block scales: rows / cols per scale
  int block_k = 128;
  int group_size = 128;  // kInt4W4A8 K-group
  // Multiplies the combined routed output (1.0 = off); applied once, after the top-k sum, in fp32:
  // out = round(float(rsf) * sum_t y_t). shared_expert: scales fused_experts_out instead.
  double routed_scaling_factor = 1.0;
  // kFP8BlockW8A16 only: evaluate as upstream's large-batch mode (B), each dequantised weight
  // rounded to the activation dtype before the GEMM. Default: mode (A), exact dequantised weights
  // (block sums scaled in fp32). Fast kernels are checked against mode (A).
  bool fp8_round_dequantized_weights = false;
  // w13 (and w13.bias) rows interleaved: row 2j = gate_j, row 2j+1 = up_j (see the layout comment
  // above). Gated activations and kBF16 only; false = halves.
  bool gate_up_interleaved = false;
};

// Layout conversion for FusedExpertsOptions::gate_up_interleaved: out = w13 with the gate/up rows
// along `dim` interleaved, out[.., 2j, ..] = w13[.., j, ..] (gate), out[.., 2j + 1, ..] =
// w13[.., I + j, ..] (up), where w13.size(dim) = 2I. dim is the gate/up row dimension (negative
// counts from the end): 1 for w13 [E, 2I, H] and its bias [E, 2I], 0 for a shared expert's [2I, H]
// and [2I]. Any dtype (packed 4-bit weights too: whole rows move). Both contiguous, same dtype,
// shape and device; out must not overlap w13. CPU tensors: a host loop. CUDA tensors: one copy
// kernel on `stream` (no allocation, no sync, graph-capturable). Done once at load time.
MOEKIT_API void interleave_gate_up(TensorView w13, TensorView out, int dim, Stream stream = {});

namespace reference {

// The oracle MoE layer (expert part): for each token m and slot t with e = topk_ids[m, t] in
// [0, E) (-1 = slot dropped, contributes 0, its weight ignored; any other id outside [0, E) is an
// error raised before anything is written), y_t = topk_weights[m, t] * W2[e] . act(W13[e] . x_m),
// out[m] = rsf * sum_t y_t. Every dot product accumulates in fp64 (int64 for integer GEMMs) and is
// converted once to fp32 (scales and bias applied in fp64 before that conversion). Rounding points
// (cpu-moe.md section 4.11; "round" = RNE to the dtype of hidden):
//   Q1  GEMM-1 input quantised:  INT8/INT4 per token (int8, amax/127); FP8 W8A8 per block_k group;
//       MXFP8 per 32; NVFP4 per 16 with input_global_scale[e]. Others: x as is.
//   R0  gate/up rounded before the activation: FP8 (both), INT4, NVFP4, MXFP8, MXFP4 (not BF16/INT8)
//   R1  a = round(act(gate) * up), product in fp32 (every scheme)
//   Q2  a quantised per (token, slot) row, same format as Q1
//   R1b GEMM-2 result (+ bias) rounded: FP8 (both), NVFP4, MXFP8, MXFP4 (not BF16/INT8/INT4)
//   R2  y_t = round(float(w) * d) in fp32
//   R3  out = round(float(rsf) * (y_0 + y_1 + ...)) summed in fp32 in slot order
// The GPU-only schemes (FP8 W8A8, NVFP4, MXFP8) follow SGLang's composition (gpu-ops.md 6.2/6.3):
// bf16/fp16 grouped-GEMM outputs, hence R0 and R1b. Weights decode exactly (FP8 mode (A)).
// NVFP4 GEMMs: alpha * sum_k (e2m1 * sf)_act * (e2m1 * sf)_w with alpha = 1 / (gs_act * gs_w)
// computed in fp32 (as the grouped GEMM's `alphas`). A quantised row or group whose amax is not
// finite gets a NaN scale (quant.h), so its whole output row becomes NaN.
// bias: w13.bias [E, R13] is added to the GEMM-1 result, w2.bias [E, H] to the GEMM-2 result.
//   hidden       [M, H] bf16/fp16
//   topk_weights [M, k] fp32/bf16/fp16;  topk_ids [M, k] int32 (int64 accepted)
//   output       [M, H] dtype of hidden (may alias hidden: identical result)
// `rows` (optional, int32 [R], distinct, in [0, M)) restricts the computation to those token rows
// (the others are left untouched): the benchmark checks a sample of a large batch this way.
// Runs on the CPU (all tensors host memory); per row it touches only the selected experts.
MOEKIT_API void fused_experts(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                              TensorView topk_weights, TensorView topk_ids, TensorView output,
                              const FusedExpertsOptions& options, TensorView rows = {});

// Shared expert (cpu-moe.md section 5): out[m] = round(D[m] + float(rsf) * fused_experts_out[m])
// in fp32, where D is the dense gated MLP of the single expert with the rounding points of the
// routed oracle for the same scheme (Q1, R0, R1, Q2, R1b; no routing weight, no R2/R3).
// w13 [2I, H] or [1, 2I, H] (w2 likewise); rsf = options.routed_scaling_factor; fused_experts_out
// optional ([M, H], dtype of hidden). Output may alias hidden or fused_experts_out.
MOEKIT_API void shared_expert(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                              TensorView fused_experts_out, TensorView output,
                              const FusedExpertsOptions& options);

}  // namespace reference
}  // namespace moekit
