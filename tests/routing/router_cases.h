// Shared pieces of the routing tests: one description of a router call that runs any op on the
// oracle or the public entry, and input generators with the awkward values the spec lists.
#pragma once

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "common/test_util.h"
#include "moekit/route.h"

namespace moekit::test {

enum class RouterOp { kSoftmax, kSigmoid, kFusedGate, kKimi, kGrouped, kBiasedGrouped };

inline const char* router_op_name(RouterOp op) {
  switch (op) {
    case RouterOp::kSoftmax: return "topk_softmax";
    case RouterOp::kSigmoid: return "topk_sigmoid";
    case RouterOp::kFusedGate: return "moe_fused_gate";
    case RouterOp::kKimi: return "kimi_k2_moe_fused_gate";
    case RouterOp::kGrouped: return "grouped_topk";
    default: return "biased_grouped_topk";
  }
}

struct RouterCall {
  RouterOp op = RouterOp::kSoftmax;
  bool renormalize = false;
  float softcap = 0.f;
  bool use_bias = false;
  RouterBiasMode bias_mode = RouterBiasMode::kLogit;
  int topk = 1;  // all slots, shared included
  int groups = 1, topk_group = 1, shared = 0;
  double rsf = 1.0;
  bool apply = false;

  std::string describe() const {
    return std::string(router_op_name(op)) + " topk=" + std::to_string(topk) +
           " G=" + std::to_string(groups) + " tg=" + std::to_string(topk_group) +
           " S=" + std::to_string(shared) + " renorm=" + std::to_string(renormalize) +
           " softcap=" + std::to_string(softcap) + " bias=" + std::to_string(use_bias) +
           " sel_only=" + std::to_string(bias_mode == RouterBiasMode::kSelectionOnly) +
           " rsf=" + std::to_string(rsf) + " apply=" + std::to_string(apply);
  }

  // Runs the op on views (oracle when `oracle`, else the public entry on the views' device).
  void run(bool oracle, TensorView logits, TensorView bias, TensorView weights, TensorView ids,
           Stream stream = {}) const {
    TensorView b = use_bias ? bias : TensorView{};
    MoeFusedGateOptions o;
    o.num_expert_group = groups;
    o.topk_group = topk_group;
    o.topk = topk;
    o.num_fused_shared_experts = shared;
    o.routed_scaling_factor = rsf;
    o.apply_routed_scaling_factor_on_output = apply;
    o.renormalize = renormalize;
    switch (op) {
      case RouterOp::kSoftmax:
        if (oracle) reference::topk_softmax(weights, ids, logits, renormalize, softcap, b, bias_mode);
        else topk_softmax(weights, ids, logits, renormalize, softcap, b, bias_mode, stream);
        break;
      case RouterOp::kSigmoid:
        if (oracle) reference::topk_sigmoid(weights, ids, logits, renormalize, b);
        else topk_sigmoid(weights, ids, logits, renormalize, b, stream);
        break;
      case RouterOp::kFusedGate:
        if (oracle) reference::moe_fused_gate(logits, bias, weights, ids, o);
        else moe_fused_gate(logits, bias, weights, ids, o, stream);
        break;
      case RouterOp::kKimi:
        if (oracle) reference::kimi_k2_moe_fused_gate(logits, bias, weights, ids, topk, renormalize, rsf, apply);
        else kimi_k2_moe_fused_gate(logits, bias, weights, ids, topk, renormalize, rsf, apply, stream);
        break;
      case RouterOp::kGrouped:
        if (oracle) reference::grouped_topk(weights, ids, logits, topk, renormalize, groups, topk_group, shared, rsf);
        else grouped_topk(weights, ids, logits, topk, renormalize, groups, topk_group, shared, rsf, stream);
        break;
      case RouterOp::kBiasedGrouped:
        if (oracle) reference::biased_grouped_topk(weights, ids, logits, bias, topk, renormalize, groups, topk_group, shared, rsf);
        else biased_grouped_topk(weights, ids, logits, bias, topk, renormalize, groups, topk_group, shared, rsf, stream);
        break;
    }
  }
};

// Logits with the awkward values mixed in: row 0 constant (all ties), row 1 all NaN, row 2 with
// values from four levels (many exact ties), row 3 with +inf entries, and elsewhere about 2% of
// entries NaN or -inf; `specials` = false gives plain normal logits.
inline void fill_logits(HostTensor& t, std::mt19937_64& rng, bool specials, double scale = 2.0) {
  t.fill_normal(rng, 0.0, scale);
  if (!specials) return;
  const int64_t M = t.shape()[0], E = t.shape()[1];
  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::uniform_real_distribution<double> u(0, 1);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t e = 0; e < E; ++e) {
      double v = t.get(m * E + e);
      switch (m % 8) {
        case 0: v = 0.75; break;
        case 1: v = nan; break;
        case 2: v = std::floor(v) ; break;
        case 3: if (u(rng) < 0.05) v = inf; break;
        default:
          if (u(rng) < 0.01) v = nan;
          else if (u(rng) < 0.01) v = -inf;
      }
      t.set(m * E + e, v);
    }
}

// Ids identical, weights within 1e-6 relative.
inline ::testing::AssertionResult RoutesMatch(const HostTensor& w, const HostTensor& ids,
                                              const HostTensor& w_ref, const HostTensor& ids_ref) {
  if (!ids.bytes_equal(ids_ref)) {
    for (int64_t i = 0; i < ids.numel(); ++i)
      if (ids.get(i) != ids_ref.get(i))
        return ::testing::AssertionFailure()
               << "ids differ at flat index " << i << " (row " << i / ids.shape()[1] << "): got "
               << ids.get(i) << ", oracle " << ids_ref.get(i);
  }
  return AllClose(w, w_ref, 0.0, 1e-6);
}

}  // namespace moekit::test
