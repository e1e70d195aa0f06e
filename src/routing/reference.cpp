// The routing oracle: plain loops over one generic router (problem.h), full stable sorts for every
// choice (a stable sort by descending key keeps the lower index first among equal keys), fp64 sums.
#include <algorithm>
#include <limits>
#include <numeric>
#include <vector>

#include "common/host_values.h"
#include "moekit/dispatch.h"
#include "moekit/route.h"
#include "routing/reference.h"
#include "routing/router_math.h"
#include "routing/validate.h"

namespace moekit {
namespace routing {

namespace {

float load_float(DType dtype, const void* data, int64_t i) {
  TensorView t;
  t.data = const_cast<void*>(data);
  t.dtype = dtype;
  return static_cast<float>(detail::load_value(t, i));
}

std::vector<int> stable_order(const std::vector<int>& candidates, const std::vector<float>& key) {
  std::vector<int> order = candidates;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key[a] > key[b]; });
  return order;
}

}  // namespace

void reference_route(const RouterProblem& p) {
  const int E = p.E, G = p.groups, V = p.group_size(), R = p.routed, S = p.shared;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x(E), key(E), weight(E);
  for (int64_t m = 0; m < p.M; ++m) {
    for (int e = 0; e < E; ++e) x[e] = load_float(p.logits_dtype, p.logits, m * E + e);
    if (p.score == ScoreFunction::kSoftmax) {
      for (int e = 0; e < E; ++e) {
        float v = x[e];
        if (p.softcap != 0.f) v = router_softcap(v, p.softcap);
        if (p.bias && p.bias_on_logits) v = v + load_float(p.bias_dtype, p.bias, e);
        x[e] = nan_to_neg_inf(v);
      }
      const float mx = *std::max_element(x.begin(), x.end());
      std::vector<float> ex(E);
      double sum = 0;
      for (int e = 0; e < E; ++e) {
        if (mx == inf)
          ex[e] = x[e] == inf ? 1.f : 0.f;  // the +inf logits share the mass
        else if (mx == -inf)
          ex[e] = 0.f;  // nothing finite: every probability is 0
        else
          ex[e] = router_exp(x[e] - mx);
        sum += ex[e];
      }
      for (int e = 0; e < E; ++e) {
        weight[e] = sum > 0 ? static_cast<float>(ex[e] / sum) : 0.f;
        // Ranking on the unnormalised exp orders experts as the probabilities do.
        key[e] = p.bias && !p.bias_on_logits
                     ? nan_to_neg_inf(weight[e] + load_float(p.bias_dtype, p.bias, e))
                     : ex[e];
      }
    } else {
      for (int e = 0; e < E; ++e) {
        float s = round_to(router_sigmoid(x[e]), p.rounding);
        float t = p.bias ? round_to(s + load_float(p.bias_dtype, p.bias, e), p.rounding) : s;
        weight[e] = s == s ? s : 0.f;
        key[e] = nan_to_neg_inf(t);
      }
    }

    // Groups: score each by its best one or two keys, keep the topk_group best.
    std::vector<int> candidates;
    if (G == 1) {
      candidates.resize(E);
      std::iota(candidates.begin(), candidates.end(), 0);
    } else {
      std::vector<float> group_score(G);
      for (int g = 0; g < G; ++g) {
        std::vector<float> k(key.begin() + g * V, key.begin() + (g + 1) * V);
        std::sort(k.begin(), k.end(), std::greater<float>());
        group_score[g] =
            p.group_score_terms() == 2 ? nan_to_neg_inf(round_to(k[0] + k[1], p.rounding)) : k[0];
      }
      std::vector<int> all_groups(G);
      std::iota(all_groups.begin(), all_groups.end(), 0);
      std::vector<int> kept = stable_order(all_groups, group_score);
      kept.resize(p.topk_group);
      std::sort(kept.begin(), kept.end());
      for (int g : kept)
        for (int v = 0; v < V; ++v) candidates.push_back(g * V + v);
    }
    std::vector<int> chosen = stable_order(candidates, key);
    chosen.resize(R);

    double sum = 0;
    for (int j = 0; j < R; ++j) sum += weight[chosen[j]];
    float* w_out = p.weights + m * p.slots();
    int32_t* id_out = p.ids + m * p.slots();
    for (int j = 0; j < R + S; ++j) {
      double w = j < R ? weight[chosen[j]] : sum / p.rsf;
      if (p.renormalize && sum > 0) w /= sum;
      if (p.scale_by_rsf) w *= p.rsf;
      w_out[j] = static_cast<float>(w);
      id_out[j] = j < R ? chosen[j] : E + (j - R);
    }
  }
}

}  // namespace routing

namespace reference {

void topk_softmax(TensorView topk_weights, TensorView topk_indices, TensorView gating_output,
                  bool renormalize, float moe_softcapping, TensorView correction_bias,
                  RouterBiasMode bias_mode) {
  routing::reference_route(detail::validate_topk_softmax(topk_weights, topk_indices, gating_output,
                                                         renormalize, moe_softcapping,
                                                         correction_bias, bias_mode, Device{}));
}

void topk_sigmoid(TensorView topk_weights, TensorView topk_indices, TensorView gating_output,
                  bool renormalize, TensorView correction_bias) {
  routing::reference_route(detail::validate_topk_sigmoid(topk_weights, topk_indices, gating_output,
                                                         renormalize, correction_bias, Device{}));
}

void moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights, TensorView topk_ids,
                    const MoeFusedGateOptions& options) {
  routing::reference_route(
      detail::validate_moe_fused_gate(input, bias, topk_weights, topk_ids, options, Device{}));
}

void kimi_k2_moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                            TensorView topk_ids, int topk, bool renormalize,
                            double routed_scaling_factor,
                            bool apply_routed_scaling_factor_on_output) {
  routing::reference_route(detail::validate_kimi_k2_moe_fused_gate(
      input, bias, topk_weights, topk_ids, topk, renormalize, routed_scaling_factor,
      apply_routed_scaling_factor_on_output, Device{}));
}

void grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output, int topk,
                  bool renormalize, int num_expert_group, int topk_group,
                  int num_fused_shared_experts, double routed_scaling_factor) {
  routing::reference_route(detail::validate_grouped_topk(
      topk_weights, topk_ids, gating_output, TensorView{}, false, topk, renormalize,
      num_expert_group, topk_group, num_fused_shared_experts, routed_scaling_factor, Device{}));
}

void biased_grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output,
                         TensorView correction_bias, int topk, bool renormalize,
                         int num_expert_group, int topk_group, int num_fused_shared_experts,
                         double routed_scaling_factor) {
  routing::reference_route(detail::validate_grouped_topk(
      topk_weights, topk_ids, gating_output, correction_bias, true, topk, renormalize,
      num_expert_group, topk_group, num_fused_shared_experts, routed_scaling_factor, Device{}));
}

void route_and_align_block_size(TensorView gating_output, TensorView correction_bias,
                                TensorView topk_weights, TensorView topk_ids,
                                TensorView sorted_token_ids, TensorView experts_ids,
                                TensorView num_tokens_post_pad, const RouteAndAlignOptions& options) {
  detail::RouteAndAlignProblem p = detail::validate_route_and_align(
      gating_output, correction_bias, topk_weights, topk_ids, sorted_token_ids, experts_ids,
      num_tokens_post_pad, options, Device{});
  routing::reference_route(p.route);
  reference::moe_align_block_size_experts(topk_ids, p.route.E + p.route.shared, options.block_size,
                                          sorted_token_ids, experts_ids, num_tokens_post_pad,
                                          options.pad_sorted_token_ids,
                                          /*ignore_invalid_expert=*/true);
}

float router_exp(float x) { return routing::router_exp(x); }
float router_sigmoid(float x) { return routing::router_sigmoid(x); }
float router_tanh(float x) { return routing::router_tanh(x); }

}  // namespace reference
}  // namespace moekit
