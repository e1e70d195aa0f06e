// The whole MoE layer's expert part on a CUDA GPU (sm_90a), BF16/FP16 weights.
//
//   fused_experts: hidden -> per-expert gate+up GEMM with the activation fused in its epilogue ->
//                  down GEMM with the top-k weight fused in its epilogue -> fixed-order combine.
//   fused_moe:     the same, routing first (softmax top-k over router logits).
//
// Weights are read in the logical layout of moekit/experts.h (w13 [E, 2I, H] or [E, I, H] for the
// no-mul activations, w2 [E, H, I]); no packing step is needed. Every call runs on `stream`,
// allocates nothing, never synchronises and is capturable in a CUDA graph; scratch comes from a
// caller-given `workspace` (uint8, at least *_workspace_size() bytes, 16-byte aligned).
// Results are bit-identical run to run (no float atomics; fixed reduction orders).
#pragma once

#include <cstddef>
#include <cstdint>

#include "moekit/experts.h"
#include "moekit/tensor.h"

namespace moekit {

// Bytes of workspace fused_experts needs for these shapes (depends on M, k, E, H, I and dtype).
//   hidden [M, H] bf16/fp16; topk_ids [M, k] int32; w13.weight [E, 2I or I, H]; w2.weight [E, H, I].
MOEKIT_API size_t fused_experts_workspace_size(TensorView hidden, const ExpertWeights& w13,
                                               const ExpertWeights& w2, TensorView topk_ids,
                                               const FusedExpertsOptions& options = {});

// out[m] = rsf * sum_t topk_weights[m, t] * W2[e] . act(W13[e] . hidden[m]), e = topk_ids[m, t];
// ids outside [0, E) (e.g. -1) contribute nothing. Supports options.scheme = kBF16 only (weights in
// the dtype of hidden), every Activation, w13/w2 bias (fp32 [E, R]), routed_scaling_factor and
// gate_up_interleaved (w13 and its bias with rows 2j = gate_j, 2j+1 = up_j; same results as halves).
// `output` may alias `hidden` (in place). H and I must be multiples of 8 (16-byte rows).
// Rounding to the dtype of hidden happens where the oracle rounds (cpu-moe.md 4.11): act(gate) * up,
// each slot's weighted output w * W2 . a, and the final sum; gate/up and W2 . a stay fp32.
//   hidden       [M, H] bf16/fp16, contiguous, CUDA
//   topk_weights [M, k] fp32;  topk_ids [M, k] int32
//   output       [M, H] dtype of hidden
//   workspace    uint8 [>= fused_experts_workspace_size(...)]
MOEKIT_API void fused_experts(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                              TensorView topk_weights, TensorView topk_ids, TensorView output,
                              TensorView workspace, const FusedExpertsOptions& options = {},
                              Stream stream = {});

// Workspace of fused_moe: routing outputs plus fused_experts' workspace.
MOEKIT_API size_t fused_moe_workspace_size(TensorView hidden, const ExpertWeights& w13,
                                           const ExpertWeights& w2, TensorView router_logits,
                                           int topk, const FusedExpertsOptions& options = {});

// Routes with softmax top-k (ties -> lower expert index; NaN logits rank last), optionally
// renormalising the k weights, then runs fused_experts.
//   router_logits [M, E] fp32/fp16/bf16
MOEKIT_API void fused_moe(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                          TensorView router_logits, int topk, bool renormalize, TensorView output,
                          TensorView workspace, const FusedExpertsOptions& options = {},
                          Stream stream = {});

}  // namespace moekit
