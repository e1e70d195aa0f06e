#include "routing/validate.h"

#include <cmath>

#include "common/checks.h"
#include "dispatch/validate.h"

namespace moekit::detail {
namespace {

using routing::RouterProblem;
using routing::ScoreFunction;

// Logits [M, E] and the two outputs [M, slots]; fills M, E, pointers.
void check_logits_and_outputs(RouterProblem& p, const TensorView& logits, const char* logits_name,
                              const TensorView& weights, const char* weights_name,
                              const TensorView& ids, const char* ids_name, Device device) {
  check_defined(logits, logits_name);
  check_device(logits, logits_name, device);
  check_dtype_in(logits, logits_name, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  check_ndim(logits, logits_name, 2);
  check_contiguous(logits, logits_name);
  const int64_t M = logits.size(0), E = logits.size(1);
  require(E >= 1 && E <= kMaxRouterExperts, logits_name, ": expected 1..", kMaxRouterExperts,
          " experts (size(1)), got ", E);
  check_tensor(weights, weights_name, DType::kFloat32, device);
  check_tensor(ids, ids_name, DType::kInt32, device);
  check_ndim(weights, weights_name, 2);
  require(weights.size(0) == M, weights_name, ": expected ", M, " rows (the rows of ", logits_name,
          "), got shape ", detail::shape_of(weights));
  check_shape(ids, ids_name, {M, weights.size(1)});
  p.M = M;
  p.E = static_cast<int>(E);
  p.logits = logits.data;
  p.logits_dtype = logits.dtype;
  p.weights = weights.ptr<float>();
  p.ids = ids.ptr<int32_t>();
}

void check_bias(RouterProblem& p, const TensorView& bias, const char* name, const TensorView& logits,
                bool logits_dtype_allowed, Device device) {
  check_device(bias, name, device);
  if (logits_dtype_allowed && bias.dtype != DType::kFloat32)
    check_same_dtype(bias, name, logits, "the logits");
  else
    check_dtype(bias, name, DType::kFloat32);
  check_shape(bias, name, {p.E});
  check_contiguous(bias, name);
  p.bias = bias.data;
  p.bias_dtype = bias.dtype;
}

void check_routed_topk(int routed, int E, const char* what) {
  int hi = E < kMaxRouterTopk ? E : kMaxRouterTopk;
  require(routed >= 1 && routed <= hi, what, ": expected 1..", hi,
          " routed experts per token (at most 16 and at most E = ", E, "), got ", routed);
}

void check_groups(RouterProblem& p, int groups, int topk_group) {
  require(groups >= 1 && p.E % groups == 0, "num_expert_group: expected a divisor of E = ", p.E,
          ", got ", groups);
  require(topk_group >= 1 && topk_group <= groups, "topk_group: expected 1..num_expert_group = ",
          groups, ", got ", topk_group);
  const int V = p.E / groups;
  require(p.routed <= topk_group * V, "topk: expected routed experts (", p.routed,
          ") <= topk_group * experts per group = ", topk_group, " * ", V);
  p.groups = groups;
  p.topk_group = topk_group;
}

void check_rsf(double rsf, const char* why) {
  require(std::isfinite(rsf) && rsf > 0, "routed_scaling_factor: expected a finite value > 0 ", why,
          ", got ", rsf);
}

}  // namespace

RouterProblem validate_topk_softmax(const TensorView& topk_weights, const TensorView& topk_indices,
                                    const TensorView& gating_output, bool renormalize,
                                    float moe_softcapping, const TensorView& correction_bias,
                                    RouterBiasMode bias_mode, Device device) {
  RouterProblem p;
  p.score = ScoreFunction::kSoftmax;
  check_logits_and_outputs(p, gating_output, "gating_output", topk_weights, "topk_weights",
                           topk_indices, "topk_indices", device);
  p.routed = static_cast<int>(topk_weights.size(1));
  check_routed_topk(p.routed, p.E, "topk_weights.size(1)");
  require(std::isfinite(moe_softcapping), "moe_softcapping: expected a finite value, got ",
          moe_softcapping);
  if (correction_bias.defined())
    check_bias(p, correction_bias, "correction_bias", gating_output, false, device);
  p.softcap = moe_softcapping;
  p.bias_on_logits = bias_mode == RouterBiasMode::kLogit;
  p.renormalize = renormalize;
  return p;
}

RouterProblem validate_topk_sigmoid(const TensorView& topk_weights, const TensorView& topk_indices,
                                    const TensorView& gating_output, bool renormalize,
                                    const TensorView& correction_bias, Device device) {
  RouterProblem p;
  p.score = ScoreFunction::kSigmoid;
  check_logits_and_outputs(p, gating_output, "gating_output", topk_weights, "topk_weights",
                           topk_indices, "topk_indices", device);
  p.routed = static_cast<int>(topk_weights.size(1));
  check_routed_topk(p.routed, p.E, "topk_weights.size(1)");
  if (correction_bias.defined())
    check_bias(p, correction_bias, "correction_bias", gating_output, false, device);
  p.renormalize = renormalize;
  return p;
}

RouterProblem validate_moe_fused_gate(const TensorView& input, const TensorView& bias,
                                      const TensorView& topk_weights, const TensorView& topk_ids,
                                      const MoeFusedGateOptions& o, Device device) {
  RouterProblem p;
  p.score = ScoreFunction::kSigmoid;
  check_logits_and_outputs(p, input, "input", topk_weights, "topk_weights", topk_ids, "topk_ids",
                           device);
  check_defined(bias, "bias");
  check_bias(p, bias, "bias", input, true, device);
  require(o.num_fused_shared_experts >= 0 && o.num_fused_shared_experts <= kMaxRouterTopk,
          "num_fused_shared_experts: expected 0..", kMaxRouterTopk, ", got ",
          o.num_fused_shared_experts);
  require(topk_weights.size(1) == o.topk, "topk_weights: expected ", o.topk,
          " columns (topk), got shape ", detail::shape_of(topk_weights));
  p.shared = o.num_fused_shared_experts;
  p.routed = o.topk - o.num_fused_shared_experts;
  check_routed_topk(p.routed, p.E, "topk - num_fused_shared_experts");
  check_groups(p, o.num_expert_group, o.topk_group);
  if (p.shared > 0 || o.apply_routed_scaling_factor_on_output)
    check_rsf(o.routed_scaling_factor,
              "when num_fused_shared_experts > 0 or apply_routed_scaling_factor_on_output is set");
  p.rounding = input.dtype == DType::kBFloat16  ? routing::Rounding::kBF16
               : input.dtype == DType::kFloat16 ? routing::Rounding::kFP16
                                                : routing::Rounding::kNone;
  p.renormalize = o.renormalize;
  p.scale_by_rsf = o.apply_routed_scaling_factor_on_output;
  p.rsf = o.routed_scaling_factor;
  return p;
}

RouterProblem validate_kimi_k2_moe_fused_gate(const TensorView& input, const TensorView& bias,
                                              const TensorView& topk_weights,
                                              const TensorView& topk_ids, int topk,
                                              bool renormalize, double routed_scaling_factor,
                                              bool apply_routed_scaling_factor_on_output,
                                              Device device) {
  RouterProblem p;
  p.score = ScoreFunction::kSigmoid;
  check_logits_and_outputs(p, input, "input", topk_weights, "topk_weights", topk_ids, "topk_ids",
                           device);
  check_defined(bias, "bias");
  check_bias(p, bias, "bias", input, true, device);
  require(topk_weights.size(1) == topk, "topk_weights: expected ", topk,
          " columns (topk), got shape ", detail::shape_of(topk_weights));
  p.routed = topk;
  check_routed_topk(topk, p.E, "topk");
  p.renormalize = renormalize;
  // sgl-kernel scales only inside its renormalize branch.
  p.scale_by_rsf = renormalize && apply_routed_scaling_factor_on_output;
  if (p.scale_by_rsf)
    check_rsf(routed_scaling_factor, "when renormalize and apply_routed_scaling_factor_on_output");
  p.rsf = routed_scaling_factor;
  return p;
}

RouterProblem validate_grouped_topk(const TensorView& topk_weights, const TensorView& topk_ids,
                                    const TensorView& gating_output,
                                    const TensorView& correction_bias, bool biased, int topk,
                                    bool renormalize, int num_expert_group, int topk_group,
                                    int num_fused_shared_experts, double routed_scaling_factor,
                                    Device device) {
  RouterProblem p;
  p.score = biased ? ScoreFunction::kSigmoid : ScoreFunction::kSoftmax;
  check_logits_and_outputs(p, gating_output, "gating_output", topk_weights, "topk_weights",
                           topk_ids, "topk_ids", device);
  if (biased) {
    check_defined(correction_bias, "correction_bias");
    check_bias(p, correction_bias, "correction_bias", gating_output, true, device);
  }
  require(num_fused_shared_experts >= 0 && num_fused_shared_experts <= kMaxRouterTopk,
          "num_fused_shared_experts: expected 0..", kMaxRouterTopk, ", got ",
          num_fused_shared_experts);
  require(topk_weights.size(1) == topk, "topk_weights: expected ", topk,
          " columns (topk), got shape ", detail::shape_of(topk_weights));
  p.shared = num_fused_shared_experts;
  p.routed = topk - num_fused_shared_experts;
  check_routed_topk(p.routed, p.E, "topk - num_fused_shared_experts");
  check_groups(p, num_expert_group, topk_group);
  check_rsf(routed_scaling_factor, "(it multiplies the weights)");
  p.renormalize = renormalize;
  p.scale_by_rsf = routed_scaling_factor != 1.0;
  p.rsf = routed_scaling_factor;
  return p;
}

RouteAndAlignProblem validate_route_and_align(const TensorView& gating_output,
                                              const TensorView& correction_bias,
                                              const TensorView& topk_weights,
                                              const TensorView& topk_ids,
                                              const TensorView& sorted_token_ids,
                                              const TensorView& experts_ids,
                                              const TensorView& num_tokens_post_pad,
                                              const RouteAndAlignOptions& o, Device device) {
  RouteAndAlignProblem p;
  switch (o.router) {
    case RouteAndAlignOptions::Router::kTopkSoftmax:
      p.route = validate_topk_softmax(topk_weights, topk_ids, gating_output, o.renormalize,
                                      o.moe_softcapping, correction_bias, o.bias_mode, device);
      break;
    case RouteAndAlignOptions::Router::kTopkSigmoid:
      p.route = validate_topk_sigmoid(topk_weights, topk_ids, gating_output, o.renormalize,
                                      correction_bias, device);
      break;
    default:
      p.route = validate_moe_fused_gate(gating_output, correction_bias, topk_weights, topk_ids,
                                        o.gate, device);
  }
  p.align = validate_align(topk_ids, p.route.E + p.route.shared, o.block_size, sorted_token_ids,
                           experts_ids, num_tokens_post_pad, o.pad_sorted_token_ids,
                           /*ignore_invalid_expert=*/true, TensorView{}, device);
  return p;
}

}  // namespace moekit::detail
