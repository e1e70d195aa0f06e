// Routing: choose each token's top-k experts and their weights from the router logits.
//
// Every op takes tensors on one device (CPU or CUDA) and runs there; CUDA ops run on `stream`,
// allocate nothing and never synchronise (safe inside CUDA-graph capture). M = 0 is a no-op.
// Outputs are passed in: weights fp32 [M, k], ids int32 [M, k], both contiguous.
//
// Rules shared by every op (../shared/spec/gpu-ops.md sections 0 and 1):
//   - E (experts) in 1..512, routed top-k in 1..16 and <= E; logits fp32/fp16/bf16 [M, E],
//     contiguous, upcast to fp32 (the fused gates keep some values rounded to the input type).
//   - Ties: among equal selection scores the lower expert index wins; each row lists its experts in
//     descending selection score.
//   - A NaN logit or selection score is treated as -inf (ranks last) and weighs 0: a row of NaN picks
//     experts 0..k-1 with weight 0 (renormalisation keeps 0). A +inf logit takes the whole softmax
//     mass (several share it equally); sigmoid(+inf) = 1, sigmoid(-inf) = 0.
//   - exp, sigmoid and tanh are moekit's own fp32 functions (exp and sigmoid within 2 ulp, tanh 4,
//     results below FLT_MIN flushed to 0), bit-identical on every back end, so ids agree exactly
//     between the oracle, the CPU and the CUDA paths; sums feeding weights accumulate in fp64.
//   - Results are bit-identical run to run and for every thread count.
#pragma once

#include "moekit/tensor.h"

namespace moekit {

constexpr int kMaxRouterExperts = 512;
constexpr int kMaxRouterTopk = 16;  // routed slots; fused shared-expert slots come on top

// How topk_softmax uses `correction_bias`.
enum class RouterBiasMode {
  kLogit,          // added to the logits before the softmax: changes choice and weight (sgl-kernel)
  kSelectionOnly,  // choice on softmax(logits) + bias, weight = unbiased softmax (SGLang's fallback)
};

// Softmax router (Mixtral / Qwen-MoE). Per row: x = logits; if moe_softcapping c != 0,
// x = c * tanh(x / c); if bias (kLogit) x += bias; p = softmax(x); choose the k largest p (kLogit)
// or p + bias (kSelectionOnly); weight = p; renormalize divides by the sum of the k weights.
//   topk_weights    [M, k] fp32, out;  topk_indices [M, k] int32, out
//   gating_output   [M, E] fp32/fp16/bf16
//   correction_bias optional [E] fp32
MOEKIT_API void topk_softmax(TensorView topk_weights, TensorView topk_indices,
                             TensorView gating_output, bool renormalize = false,
                             float moe_softcapping = 0.f, TensorView correction_bias = {},
                             RouterBiasMode bias_mode = RouterBiasMode::kLogit, Stream stream = {});

// Sigmoid router: s = sigmoid(x); choose the k largest s + bias; weight = s (never biased);
// renormalize divides by the sum of the k weights. Arguments as topk_softmax.
MOEKIT_API void topk_sigmoid(TensorView topk_weights, TensorView topk_indices,
                             TensorView gating_output, bool renormalize = false,
                             TensorView correction_bias = {}, Stream stream = {});

struct MoeFusedGateOptions {
  int num_expert_group = 1;  // G, divides E
  int topk_group = 1;        // groups kept, 1..G
  int topk = 1;              // output slots: routed R = topk - num_fused_shared_experts, 1..16
  int num_fused_shared_experts = 0;  // S shared slots appended with ids E, E+1, ..., E+S-1
  // Must be > 0 when S > 0 or the apply flag is set (sgl-kernel's default 0 divides by zero).
  double routed_scaling_factor = 0.0;
  bool apply_routed_scaling_factor_on_output = false;
  bool renormalize = true;  // false: weights are the plain sigmoids (sgl-kernel always renormalises)
};

// DeepSeek-V3 grouped gate. Per row, in the input type T (fp32 math, results rounded to T for
// fp16/bf16 input): s = T(sigmoid(x)), t = T(s + bias); group score = T(best t + second best t) of
// the group (the single t when a group has one expert); keep the topk_group best groups (ties: lower
// group index); choose R experts of the kept groups by t; routed weight = float(s); shared slot
// weight = (sum of routed weights) / rsf; renormalize divides every slot by the routed sum; the
// apply flag then multiplies every slot by rsf.
//   input        [M, E] fp32/fp16/bf16
//   bias         [E] dtype of input or fp32
//   topk_weights [M, topk] fp32, out;  topk_ids [M, topk] int32, out
MOEKIT_API void moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                               TensorView topk_ids, const MoeFusedGateOptions& options,
                               Stream stream = {});

// Kimi-K2 gate (one group, no shared experts), fp32 math for every input type: s = sigmoid(x),
// choose topk by s + bias, weight = s; if renormalize and the sum > 0: divide by the sum and then,
// if the apply flag is set, multiply by rsf. Compatibility quirk kept from sgl-kernel: the apply flag
// does nothing when renormalize is false.
//   input [M, E] fp32/fp16/bf16; bias [E] dtype of input or fp32; outputs [M, topk]
MOEKIT_API void kimi_k2_moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                                       TensorView topk_ids, int topk, bool renormalize = true,
                                       double routed_scaling_factor = 1.0,
                                       bool apply_routed_scaling_factor_on_output = false,
                                       Stream stream = {});

// The routers of sgl-kernel's CPU backend (here on CPU and CUDA tensors alike), with the CPU
// routed-scaling semantics: rsf multiplies every weight whenever it is given (default 1.0 =
// off) - the caller applies rsf exactly once per layer. Shared slots as moe_fused_gate (weight
// sum / rsf before renormalisation, ids E..E+S-1).
//
// DeepSeek-V2 grouped softmax: p = softmax(x); group score = max p of the group; keep topk_group
// groups; choose topk - S experts of the kept groups by p; weight = p; renormalize divides by the
// routed sum; then every slot * rsf.
MOEKIT_API void grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output,
                             int topk, bool renormalize, int num_expert_group, int topk_group,
                             int num_fused_shared_experts = 0, double routed_scaling_factor = 1.0,
                             Stream stream = {});

// Biased grouped sigmoid (all fp32, no rounding to the logit type): moe_fused_gate's math with the
// rsf rule above. correction_bias [E] fp32 or the logits dtype.
MOEKIT_API void biased_grouped_topk(TensorView topk_weights, TensorView topk_ids,
                                    TensorView gating_output, TensorView correction_bias, int topk,
                                    bool renormalize, int num_expert_group, int topk_group,
                                    int num_fused_shared_experts = 0,
                                    double routed_scaling_factor = 1.0, Stream stream = {});

// Route, then bucket the routing result by expert for the grouped GEMMs: the chosen router op
// writes topk_weights / topk_ids exactly as it does alone, and sorted_token_ids / experts_ids /
// num_tokens_post_pad are those of moe_align_block_size_experts(topk_ids, E + S, block_size, ...,
// pad_sorted_token_ids, ignore_invalid_expert = true) (dispatch.h; S = fused shared experts, whose
// ids E..E+S-1 are real buckets). On CUDA a few rows (decode) take one launch that does both; more
// rows take the router launch and a dependent align launch; same results either way.
//   gating_output [M, E], correction_bias as the chosen router op takes it (required by the gate)
//   topk_weights [M, k] fp32, topk_ids [M, k] int32: out
//   sorted_token_ids [P] int32, experts_ids [B] int32, num_tokens_post_pad [1] int32: out, with
//   the capacity moe_align_block_size_capacity(M * k, E + S, block_size) gives
struct RouteAndAlignOptions {
  enum class Router { kTopkSoftmax, kTopkSigmoid, kMoeFusedGate };
  Router router = Router::kTopkSoftmax;
  bool renormalize = false;                           // kTopkSoftmax, kTopkSigmoid
  float moe_softcapping = 0.f;                        // kTopkSoftmax
  RouterBiasMode bias_mode = RouterBiasMode::kLogit;  // kTopkSoftmax
  MoeFusedGateOptions gate = {};  // kMoeFusedGate (its own renormalize flag applies)
  int64_t block_size = 64;
  bool pad_sorted_token_ids = false;
};

MOEKIT_API void route_and_align_block_size(TensorView gating_output, TensorView correction_bias,
                                           TensorView topk_weights, TensorView topk_ids,
                                           TensorView sorted_token_ids, TensorView experts_ids,
                                           TensorView num_tokens_post_pad,
                                           const RouteAndAlignOptions& options, Stream stream = {});

namespace reference {

MOEKIT_API void topk_softmax(TensorView topk_weights, TensorView topk_indices,
                             TensorView gating_output, bool renormalize = false,
                             float moe_softcapping = 0.f, TensorView correction_bias = {},
                             RouterBiasMode bias_mode = RouterBiasMode::kLogit);
MOEKIT_API void topk_sigmoid(TensorView topk_weights, TensorView topk_indices,
                             TensorView gating_output, bool renormalize = false,
                             TensorView correction_bias = {});
MOEKIT_API void moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                               TensorView topk_ids, const MoeFusedGateOptions& options);
MOEKIT_API void kimi_k2_moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                                       TensorView topk_ids, int topk, bool renormalize = true,
                                       double routed_scaling_factor = 1.0,
                                       bool apply_routed_scaling_factor_on_output = false);
MOEKIT_API void grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output,
                             int topk, bool renormalize, int num_expert_group, int topk_group,
                             int num_fused_shared_experts = 0, double routed_scaling_factor = 1.0);
MOEKIT_API void biased_grouped_topk(TensorView topk_weights, TensorView topk_ids,
                                    TensorView gating_output, TensorView correction_bias, int topk,
                                    bool renormalize, int num_expert_group, int topk_group,
                                    int num_fused_shared_experts = 0,
                                    double routed_scaling_factor = 1.0);

// The oracle: the router oracle, then the moe_align_block_size_experts oracle.
MOEKIT_API void route_and_align_block_size(TensorView gating_output, TensorView correction_bias,
                                           TensorView topk_weights, TensorView topk_ids,
                                           TensorView sorted_token_ids, TensorView experts_ids,
                                           TensorView num_tokens_post_pad,
                                           const RouteAndAlignOptions& options);

// The router's fp32 functions (exposed for tests and other layers): bit-identical everywhere.
MOEKIT_API float router_exp(float x);
MOEKIT_API float router_sigmoid(float x);
MOEKIT_API float router_tanh(float x);

}  // namespace reference
}  // namespace moekit
