// Fused per-head QK-RMSNorm + rotary position embedding, in place on the packed QKV projection
// output (Qwen3 / Qwen3-MoE, GLM-4.x). Same op and argument order as sgl-kernel's
// fused_qk_norm_rope, plus fp16, int64 positions and accurate trigonometry.
//
// The op runs on the device of `qkv` (CPU or CUDA); on CUDA it runs on `stream`, allocates nothing
// and never synchronises (safe inside CUDA-graph capture). T = 0 or Hq + Hk = 0 is a no-op.
#pragma once

#include <cstdint>

#include "moekit/tensor.h"

namespace moekit {

// For every token t and every Q head then K head (V heads are left untouched), with x the head's
// D values in fp32:
//   1. RMSNorm over all D:  y_d = x_d * w_d / sqrt(mean(x^2) + eps)   (w = q_weight or k_weight)
//   2. RoPE on the first R = rotary_dim dims (dims R..D-1 keep y), pair index i in [0, R/2):
//        f_i = base^(-2i/R), formed in fp64;
//        YaRN when factor != 1: hi = high (+0.001 if |low - high| <= 1e-6),
//          ramp = clamp((i - low) / (hi - low), 0, 1), f_i = f_i / factor * ramp + f_i * (1 - ramp);
//        theta = p * f_i with p = position_ids[t] kept an integer until this product (fp64, exact
//          for |p| <= 2^53), reduced modulo 2*pi in fp64, then sin/cos accurate to 2 ulp fp32;
//        NeoX (is_neox): pairs (i, i + R/2); interleaved (GPT-J): pairs (2i, 2i + 1);
//        (a, b) -> ((a cos - b sin) * A, (b cos + a sin) * A), A = attention_factor.
//   3. Round once to the dtype of qkv (RNE).
// The sum of squares is accumulated in fp32 (fp64 in the reference).
//
//   qkv            [T, (Hq + Hk + Hv) * D] bf16 or fp16, contiguous, modified in place
//   num_heads_q/k/v  Hq, Hk, Hv >= 0 (Q heads first, then K, then V)
//   head_dim       D in {64, 128, 256}
//   eps            >= 0
//   q_weight       [D] same dtype as qkv, contiguous (may be absent when Hq = 0)
//   k_weight       [D] same dtype as qkv, contiguous (may be absent when Hk = 0)
//   base           > 0
//   position_ids   [T] int32 or int64, contiguous
//   factor         > 0 (1 = no YaRN); low, high: YaRN correction range (finite)
//   attention_factor  finite (1 = none)
//   rotary_dim     R, -1 means D. 0 < R <= D, R % (D/32) == 0, and for NeoX R/(D/32)/2 must be a
//                  power of two (the rules of sgl-kernel).
MOEKIT_API void fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q, int64_t num_heads_k,
                                   int64_t num_heads_v, int64_t head_dim, double eps,
                                   TensorView q_weight, TensorView k_weight, double base,
                                   bool is_neox, TensorView position_ids, double factor, double low,
                                   double high, double attention_factor, int64_t rotary_dim = -1,
                                   Stream stream = {});

namespace reference {
MOEKIT_API void fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q, int64_t num_heads_k,
                                   int64_t num_heads_v, int64_t head_dim, double eps,
                                   TensorView q_weight, TensorView k_weight, double base,
                                   bool is_neox, TensorView position_ids, double factor, double low,
                                   double high, double attention_factor, int64_t rotary_dim = -1);
}  // namespace reference

}  // namespace moekit
