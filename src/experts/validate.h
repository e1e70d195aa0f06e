// Argument checks of the expert layer, shared by the oracle and the CPU / GPU fast paths: one
// place decides which tensors each weight scheme needs, with which dtype and shape. Each throws
// moekit::Error naming the argument ("w13.scale: expected shape [8, 32, 56], got [8, 32, 57]").
#pragma once

#include <cstdint>

#include "moekit/experts.h"

namespace moekit::detail {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// True for the "act(gate) * up" activations (w13 has 2I rows), false for kSilu / kGelu (I rows).
bool activation_is_gated(Activation activation);
// True when the scheme stores two 4-bit codes per byte (INT4, NVFP4, MXFP4).
bool scheme_is_4bit(WeightScheme scheme);
// Stored width of a weight row of `cols` logical columns.
int64_t packed_cols(WeightScheme scheme, int64_t cols);

// Sizes of one fused_experts / shared_expert call, as derived by the validators.
struct ExpertDims {
  int64_t M = 0, topk = 0;  // topk = 0 for shared_expert
  int64_t E = 0, H = 0, I = 0;
  int64_t w13_rows = 0;  // 2I (gated) or I
};

// Options that do not depend on shapes: activation parameters, block sizes, group size, rsf.
void validate_expert_options(const FusedExpertsOptions& options);

// One projection of `scheme`: weight [E, R, packed_cols(C)], its scales / zeros / global scales
// as documented in experts.h, optional bias fp32 [E, R]; unused tensors must be absent.
// `name` is "w13" or "w2" (messages say "w13.scale: ..."); act_dtype = dtype of hidden.
void validate_expert_weights(const ExpertWeights& w, const char* name,
                             const FusedExpertsOptions& options, DType act_dtype, int64_t E,
                             int64_t R, int64_t C, Device device);

// Everything of fused_experts except the id values (which a GPU path cannot read on the host):
// hidden [M, H] bf16/fp16, weights per scheme, topk_weights [M, k] fp32/bf16/fp16, topk_ids
// [M, k] int32/int64, output [M, H] dtype of hidden, all on `device` and contiguous.
ExpertDims validate_fused_experts(const TensorView& hidden, const ExpertWeights& w13,
                                  const ExpertWeights& w2, const TensorView& topk_weights,
                                  const TensorView& topk_ids, const TensorView& output,
                                  const FusedExpertsOptions& options, Device device);

// Host-readable ids: each in [0, E) or -1; else an error naming the first bad entry
// ("topk_ids[3, 1] = 300, expected in [0, 256) or -1").
void check_topk_id_values(const TensorView& topk_ids, int64_t E);

// Host-readable INT4 zero points: each in 0..15.
void check_int4_zero_values(const TensorView& zero, const char* name);

// Optional row subset: int32 [R], distinct, each in [0, M).
void validate_rows(const TensorView& rows, int64_t M, Device device);

// shared_expert: weights 2-D (or 3-D with E = 1), fused_experts_out optional [M, H] dtype of
// hidden. Returns dims with E = 1, topk = 0. Use as_single_expert() to view 2-D weights as 3-D.
ExpertDims validate_shared_expert(const TensorView& hidden, const ExpertWeights& w13,
                                  const ExpertWeights& w2, const TensorView& fused_experts_out,
                                  const TensorView& output, const FusedExpertsOptions& options,
                                  Device device);

// 2-D shared-expert weights viewed with a leading E = 1 on every defined tensor (3-D unchanged).
ExpertWeights as_single_expert(const ExpertWeights& w);

}  // namespace moekit::detail
