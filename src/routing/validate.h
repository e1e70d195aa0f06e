// Argument checks of the routing ops, shared by the oracle and the fast paths. Each returns the
// problem the op describes (pointers included); nothing is read from the tensors' memory.
#pragma once

#include "dispatch/problem.h"
#include "moekit/route.h"
#include "routing/problem.h"

namespace moekit::detail {

routing::RouterProblem validate_topk_softmax(const TensorView& topk_weights,
                                             const TensorView& topk_indices,
                                             const TensorView& gating_output, bool renormalize,
                                             float moe_softcapping,
                                             const TensorView& correction_bias,
                                             RouterBiasMode bias_mode, Device device);
routing::RouterProblem validate_topk_sigmoid(const TensorView& topk_weights,
                                             const TensorView& topk_indices,
                                             const TensorView& gating_output, bool renormalize,
                                             const TensorView& correction_bias, Device device);
routing::RouterProblem validate_moe_fused_gate(const TensorView& input, const TensorView& bias,
                                               const TensorView& topk_weights,
                                               const TensorView& topk_ids,
                                               const MoeFusedGateOptions& options, Device device);
routing::RouterProblem validate_kimi_k2_moe_fused_gate(
    const TensorView& input, const TensorView& bias, const TensorView& topk_weights,
    const TensorView& topk_ids, int topk, bool renormalize, double routed_scaling_factor,
    bool apply_routed_scaling_factor_on_output, Device device);
routing::RouterProblem validate_grouped_topk(const TensorView& topk_weights,
                                             const TensorView& topk_ids,
                                             const TensorView& gating_output,
                                             const TensorView& correction_bias, bool biased,
                                             int topk, bool renormalize, int num_expert_group,
                                             int topk_group, int num_fused_shared_experts,
                                             double routed_scaling_factor, Device device);

struct RouteAndAlignProblem {
  routing::RouterProblem route;
  AlignProblem align;
};
RouteAndAlignProblem validate_route_and_align(const TensorView& gating_output,
                                              const TensorView& correction_bias,
                                              const TensorView& topk_weights,
                                              const TensorView& topk_ids,
                                              const TensorView& sorted_token_ids,
                                              const TensorView& experts_ids,
                                              const TensorView& num_tokens_post_pad,
                                              const RouteAndAlignOptions& options, Device device);

}  // namespace moekit::detail
