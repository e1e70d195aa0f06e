// moekit/route.h: choosing each token's top-k experts and weights from the router logits.
#include <string>

#include "bindings.h"
#include "moekit/route.h"
#include "moekit/status.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

RouterBiasMode parse_bias_mode(const std::string& mode) {
  if (mode == "logit") return RouterBiasMode::kLogit;
  if (mode == "selection_only") return RouterBiasMode::kSelectionOnly;
  throw Error(ErrorKind::InvalidArgument,
              "bias_mode: expected \"logit\" or \"selection_only\", got \"" + mode + "\"");
}

MoeFusedGateOptions gate_options(int num_expert_group, int topk_group, int topk,
                                 int num_fused_shared_experts, double routed_scaling_factor,
                                 bool apply_routed_scaling_factor_on_output, bool renormalize) {
  MoeFusedGateOptions o;
  o.num_expert_group = num_expert_group;
  o.topk_group = topk_group;
  o.topk = topk;
  o.num_fused_shared_experts = num_fused_shared_experts;
  o.routed_scaling_factor = routed_scaling_factor;
  o.apply_routed_scaling_factor_on_output = apply_routed_scaling_factor_on_output;
  o.renormalize = renormalize;
  return o;
}

RouteAndAlignOptions route_and_align_options(
    const std::string& router, bool renormalize, float moe_softcapping, const std::string& bias_mode,
    int num_expert_group, int topk_group, int topk, int num_fused_shared_experts,
    double routed_scaling_factor, bool apply_routed_scaling_factor_on_output,
    bool gate_renormalize, int64_t block_size, bool pad_sorted_token_ids) {
  RouteAndAlignOptions o;
  using Router = RouteAndAlignOptions::Router;
  if (router == "topk_softmax") {
    o.router = Router::kTopkSoftmax;
  } else if (router == "topk_sigmoid") {
    o.router = Router::kTopkSigmoid;
  } else if (router == "moe_fused_gate") {
    o.router = Router::kMoeFusedGate;
  } else {
    throw Error(ErrorKind::InvalidArgument,
                "router: expected \"topk_softmax\", \"topk_sigmoid\" or \"moe_fused_gate\", got \"" +
                    router + "\"");
  }
  o.renormalize = renormalize;
  o.moe_softcapping = moe_softcapping;
  o.bias_mode = parse_bias_mode(bias_mode);
  o.gate = gate_options(num_expert_group, topk_group, topk, num_fused_shared_experts,
                        routed_scaling_factor, apply_routed_scaling_factor_on_output,
                        gate_renormalize);
  o.block_size = block_size;
  o.pad_sorted_token_ids = pad_sorted_token_ids;
  return o;
}

constexpr const char* kRouteAndAlignDoc =
    "Route, then bucket the result by expert for the grouped GEMMs, in one launch on CUDA for up "
    "to 4096 (token, slot) pairs. router: \"topk_softmax\" (renormalize, moe_softcapping, "
    "bias_mode), \"topk_sigmoid\" (renormalize) or \"moe_fused_gate\" (num_expert_group, "
    "topk_group, topk, num_fused_shared_experts, routed_scaling_factor, apply flag, "
    "gate_renormalize). topk_weights / topk_ids are written as the router op alone writes them; "
    "sorted_token_ids / experts_ids / num_tokens_post_pad as moe_align_block_size_experts(topk_ids, "
    "E + S, block_size, ..., pad_sorted_token_ids, ignore_invalid_expert=True).\n\n"
    "gating_output [M, E]; correction_bias [E] or None (required by the gate)\n"
    "topk_weights [M, k] float32, topk_ids [M, k] int32: written\n"
    "sorted_token_ids [P] int32, experts_ids [B] int32, num_tokens_post_pad [1] int32: written; "
    "capacity from moe_align_block_size_capacity(M * k, E + S, block_size)";

constexpr const char* kTopkSoftmaxDoc =
    "Softmax router (Mixtral / Qwen-MoE). Per row: x = logits; if moe_softcapping c != 0, "
    "x = c*tanh(x/c); with bias_mode \"logit\" x += correction_bias; p = softmax(x); choose the k "
    "largest p (\"selection_only\": the k largest p + bias, weight unbiased); weight = p; "
    "renormalize divides by the sum of the k weights. Ties: lower expert index first; rows list "
    "experts in descending score; NaN logits rank last with weight 0.\n\n"
    "topk_weights    [M, k] float32, written\n"
    "topk_indices    [M, k] int32, written\n"
    "gating_output   [M, E] float32/float16/bfloat16, contiguous (E <= 512, k <= 16)\n"
    "correction_bias [E] float32 or None";

constexpr const char* kTopkSigmoidDoc =
    "Sigmoid router: s = sigmoid(x); choose the k largest s + correction_bias; weight = s (never "
    "biased); renormalize divides by the sum of the k weights.\n\n"
    "topk_weights [M, k] float32, written; topk_indices [M, k] int32, written\n"
    "gating_output [M, E] float32/float16/bfloat16; correction_bias [E] float32 or None";

constexpr const char* kMoeFusedGateDoc =
    "DeepSeek-V3 grouped gate (sigmoid + bias, group top-2 sums, topk_group groups kept, topk "
    "slots of which the last num_fused_shared_experts are shared experts with ids E, E+1, ...; "
    "computed in the input type T for float16/bfloat16).\n\n"
    "input        [M, E] float32/float16/bfloat16\n"
    "bias         [E] dtype of input or float32\n"
    "topk_weights [M, topk] float32, written; topk_ids [M, topk] int32, written\n"
    "routed_scaling_factor must be > 0 when there are shared slots or the apply flag is set.";

constexpr const char* kKimiDoc =
    "Kimi-K2 gate (one group): s = sigmoid(x), choose topk by s + bias, weight = s; if renormalize "
    "and the sum > 0: divide by it and then, with the apply flag, multiply by routed_scaling_factor "
    "(sgl-kernel quirk kept: the apply flag does nothing when renormalize is False).\n\n"
    "input [M, E] float32/float16/bfloat16; bias [E] dtype of input or float32\n"
    "topk_weights [M, topk] float32, written; topk_ids [M, topk] int32, written";

constexpr const char* kGroupedTopkDoc =
    "DeepSeek-V2 grouped softmax router (sgl-kernel's CPU backend): p = softmax(x); group score "
    "= max p of the group; "
    "keep topk_group groups; choose topk - S experts by p; renormalize; every slot * "
    "routed_scaling_factor (CPU semantics: applied whenever given).\n\n"
    "topk_weights [M, topk] float32, written; topk_ids [M, topk] int32, written\n"
    "gating_output [M, E] float32/float16/bfloat16 (CPU or CUDA)";

constexpr const char* kBiasedGroupedTopkDoc =
    "Biased grouped sigmoid router (sgl-kernel's CPU backend): moe_fused_gate's math in fp32, "
    "with every slot * "
    "routed_scaling_factor whenever it is given (CPU semantics).\n\n"
    "topk_weights [M, topk] float32, written; topk_ids [M, topk] int32, written\n"
    "gating_output [M, E] float32/float16/bfloat16; correction_bias [E] float32 or the logits "
    "dtype (CPU or CUDA)";

}  // namespace

void bind_route(nb::module_& m) {
  // Fast paths take `stream` last; the oracles (reference_*) take the same arguments without it.
  m.def(
      "topk_softmax",
      [](Tensor topk_weights, Tensor topk_indices, Tensor gating_output, bool renormalize,
         float moe_softcapping, OptionalTensor correction_bias, const std::string& bias_mode,
         uintptr_t stream) {
        TensorView w = topk_weights.output("topk_weights"),
                   ids = topk_indices.output("topk_indices"),
                   logits = gating_output.input("gating_output"),
                   bias = input(correction_bias, "correction_bias");
        RouterBiasMode mode = parse_bias_mode(bias_mode);
        nb::gil_scoped_release nogil;
        moekit::topk_softmax(w, ids, logits, renormalize, moe_softcapping, bias, mode,
                             stream_from(stream));
      },
      "topk_weights"_a, "topk_indices"_a, "gating_output"_a, "renormalize"_a = false,
      "moe_softcapping"_a = 0.f, "correction_bias"_a = nb::none(), "bias_mode"_a = "logit",
      "stream"_a = 0, kTopkSoftmaxDoc);
  m.def(
      "reference_topk_softmax",
      [](Tensor topk_weights, Tensor topk_indices, Tensor gating_output, bool renormalize,
         float moe_softcapping, OptionalTensor correction_bias, const std::string& bias_mode) {
        TensorView w = topk_weights.output("topk_weights"),
                   ids = topk_indices.output("topk_indices"),
                   logits = gating_output.input("gating_output"),
                   bias = input(correction_bias, "correction_bias");
        RouterBiasMode mode = parse_bias_mode(bias_mode);
        nb::gil_scoped_release nogil;
        moekit::reference::topk_softmax(w, ids, logits, renormalize, moe_softcapping, bias, mode);
      },
      "topk_weights"_a, "topk_indices"_a, "gating_output"_a, "renormalize"_a = false,
      "moe_softcapping"_a = 0.f, "correction_bias"_a = nb::none(), "bias_mode"_a = "logit",
      kTopkSoftmaxDoc);

  m.def(
      "topk_sigmoid",
      [](Tensor topk_weights, Tensor topk_indices, Tensor gating_output, bool renormalize,
         OptionalTensor correction_bias, uintptr_t stream) {
        TensorView w = topk_weights.output("topk_weights"),
                   ids = topk_indices.output("topk_indices"),
                   logits = gating_output.input("gating_output"),
                   bias = input(correction_bias, "correction_bias");
        nb::gil_scoped_release nogil;
        moekit::topk_sigmoid(w, ids, logits, renormalize, bias, stream_from(stream));
      },
      "topk_weights"_a, "topk_indices"_a, "gating_output"_a, "renormalize"_a = false,
      "correction_bias"_a = nb::none(), "stream"_a = 0, kTopkSigmoidDoc);
  m.def(
      "reference_topk_sigmoid",
      [](Tensor topk_weights, Tensor topk_indices, Tensor gating_output, bool renormalize,
         OptionalTensor correction_bias) {
        TensorView w = topk_weights.output("topk_weights"),
                   ids = topk_indices.output("topk_indices"),
                   logits = gating_output.input("gating_output"),
                   bias = input(correction_bias, "correction_bias");
        nb::gil_scoped_release nogil;
        moekit::reference::topk_sigmoid(w, ids, logits, renormalize, bias);
      },
      "topk_weights"_a, "topk_indices"_a, "gating_output"_a, "renormalize"_a = false,
      "correction_bias"_a = nb::none(), kTopkSigmoidDoc);

  m.def(
      "moe_fused_gate",
      [](Tensor input_, Tensor bias, Tensor topk_weights, Tensor topk_ids, int num_expert_group,
         int topk_group, int topk, int num_fused_shared_experts, double routed_scaling_factor,
         bool apply_routed_scaling_factor_on_output, bool renormalize, uintptr_t stream) {
        TensorView x = input_.input("input"), b = bias.input("bias"),
                   w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids");
        MoeFusedGateOptions o = gate_options(num_expert_group, topk_group, topk,
                                             num_fused_shared_experts, routed_scaling_factor,
                                             apply_routed_scaling_factor_on_output, renormalize);
        nb::gil_scoped_release nogil;
        moekit::moe_fused_gate(x, b, w, ids, o, stream_from(stream));
      },
      "input"_a, "bias"_a, "topk_weights"_a, "topk_ids"_a, "num_expert_group"_a, "topk_group"_a,
      "topk"_a, "num_fused_shared_experts"_a = 0, "routed_scaling_factor"_a = 0.0,
      "apply_routed_scaling_factor_on_output"_a = false, "renormalize"_a = true, "stream"_a = 0,
      kMoeFusedGateDoc);
  m.def(
      "reference_moe_fused_gate",
      [](Tensor input_, Tensor bias, Tensor topk_weights, Tensor topk_ids, int num_expert_group,
         int topk_group, int topk, int num_fused_shared_experts, double routed_scaling_factor,
         bool apply_routed_scaling_factor_on_output, bool renormalize) {
        TensorView x = input_.input("input"), b = bias.input("bias"),
                   w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids");
        MoeFusedGateOptions o = gate_options(num_expert_group, topk_group, topk,
                                             num_fused_shared_experts, routed_scaling_factor,
                                             apply_routed_scaling_factor_on_output, renormalize);
        nb::gil_scoped_release nogil;
        moekit::reference::moe_fused_gate(x, b, w, ids, o);
      },
      "input"_a, "bias"_a, "topk_weights"_a, "topk_ids"_a, "num_expert_group"_a, "topk_group"_a,
      "topk"_a, "num_fused_shared_experts"_a = 0, "routed_scaling_factor"_a = 0.0,
      "apply_routed_scaling_factor_on_output"_a = false, "renormalize"_a = true,
      kMoeFusedGateDoc);

  m.def(
      "kimi_k2_moe_fused_gate",
      [](Tensor input_, Tensor bias, Tensor topk_weights, Tensor topk_ids, int topk,
         bool renormalize, double routed_scaling_factor,
         bool apply_routed_scaling_factor_on_output, uintptr_t stream) {
        TensorView x = input_.input("input"), b = bias.input("bias"),
                   w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids");
        nb::gil_scoped_release nogil;
        moekit::kimi_k2_moe_fused_gate(x, b, w, ids, topk, renormalize, routed_scaling_factor,
                                       apply_routed_scaling_factor_on_output,
                                       stream_from(stream));
      },
      "input"_a, "bias"_a, "topk_weights"_a, "topk_ids"_a, "topk"_a, "renormalize"_a = true,
      "routed_scaling_factor"_a = 1.0, "apply_routed_scaling_factor_on_output"_a = false,
      "stream"_a = 0, kKimiDoc);
  m.def(
      "reference_kimi_k2_moe_fused_gate",
      [](Tensor input_, Tensor bias, Tensor topk_weights, Tensor topk_ids, int topk,
         bool renormalize, double routed_scaling_factor,
         bool apply_routed_scaling_factor_on_output) {
        TensorView x = input_.input("input"), b = bias.input("bias"),
                   w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids");
        nb::gil_scoped_release nogil;
        moekit::reference::kimi_k2_moe_fused_gate(x, b, w, ids, topk, renormalize,
                                                  routed_scaling_factor,
                                                  apply_routed_scaling_factor_on_output);
      },
      "input"_a, "bias"_a, "topk_weights"_a, "topk_ids"_a, "topk"_a, "renormalize"_a = true,
      "routed_scaling_factor"_a = 1.0, "apply_routed_scaling_factor_on_output"_a = false,
      kKimiDoc);

  m.def(
      "grouped_topk",
      [](Tensor topk_weights, Tensor topk_ids, Tensor gating_output, int topk, bool renormalize,
         int num_expert_group, int topk_group, int num_fused_shared_experts,
         double routed_scaling_factor, uintptr_t stream) {
        TensorView w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids"),
                   logits = gating_output.input("gating_output");
        nb::gil_scoped_release nogil;
        moekit::grouped_topk(w, ids, logits, topk, renormalize, num_expert_group, topk_group,
                             num_fused_shared_experts, routed_scaling_factor, stream_from(stream));
      },
      "topk_weights"_a, "topk_ids"_a, "gating_output"_a, "topk"_a, "renormalize"_a,
      "num_expert_group"_a, "topk_group"_a, "num_fused_shared_experts"_a = 0,
      "routed_scaling_factor"_a = 1.0, "stream"_a = 0, kGroupedTopkDoc);
  m.def(
      "reference_grouped_topk",
      [](Tensor topk_weights, Tensor topk_ids, Tensor gating_output, int topk, bool renormalize,
         int num_expert_group, int topk_group, int num_fused_shared_experts,
         double routed_scaling_factor) {
        TensorView w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids"),
                   logits = gating_output.input("gating_output");
        nb::gil_scoped_release nogil;
        moekit::reference::grouped_topk(w, ids, logits, topk, renormalize, num_expert_group,
                                        topk_group, num_fused_shared_experts,
                                        routed_scaling_factor);
      },
      "topk_weights"_a, "topk_ids"_a, "gating_output"_a, "topk"_a, "renormalize"_a,
      "num_expert_group"_a, "topk_group"_a, "num_fused_shared_experts"_a = 0,
      "routed_scaling_factor"_a = 1.0, kGroupedTopkDoc);

  m.def(
      "biased_grouped_topk",
      [](Tensor topk_weights, Tensor topk_ids, Tensor gating_output, Tensor correction_bias,
         int topk, bool renormalize, int num_expert_group, int topk_group,
         int num_fused_shared_experts, double routed_scaling_factor, uintptr_t stream) {
        TensorView w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids"),
                   logits = gating_output.input("gating_output"),
                   bias = correction_bias.input("correction_bias");
        nb::gil_scoped_release nogil;
        moekit::biased_grouped_topk(w, ids, logits, bias, topk, renormalize, num_expert_group,
                                    topk_group, num_fused_shared_experts, routed_scaling_factor,
                                    stream_from(stream));
      },
      "topk_weights"_a, "topk_ids"_a, "gating_output"_a, "correction_bias"_a, "topk"_a,
      "renormalize"_a, "num_expert_group"_a, "topk_group"_a, "num_fused_shared_experts"_a = 0,
      "routed_scaling_factor"_a = 1.0, "stream"_a = 0, kBiasedGroupedTopkDoc);
  m.def(
      "reference_biased_grouped_topk",
      [](Tensor topk_weights, Tensor topk_ids, Tensor gating_output, Tensor correction_bias,
         int topk, bool renormalize, int num_expert_group, int topk_group,
         int num_fused_shared_experts, double routed_scaling_factor) {
        TensorView w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids"),
                   logits = gating_output.input("gating_output"),
                   bias = correction_bias.input("correction_bias");
        nb::gil_scoped_release nogil;
        moekit::reference::biased_grouped_topk(w, ids, logits, bias, topk, renormalize,
                                               num_expert_group, topk_group,
                                               num_fused_shared_experts, routed_scaling_factor);
      },
      "topk_weights"_a, "topk_ids"_a, "gating_output"_a, "correction_bias"_a, "topk"_a,
      "renormalize"_a, "num_expert_group"_a, "topk_group"_a, "num_fused_shared_experts"_a = 0,
      "routed_scaling_factor"_a = 1.0, kBiasedGroupedTopkDoc);
  for (bool reference : {false, true}) {
    auto body = [reference](Tensor gating_output, OptionalTensor correction_bias,
                            Tensor topk_weights, Tensor topk_ids, Tensor sorted_token_ids,
                            Tensor experts_ids, Tensor num_tokens_post_pad,
                            const std::string& router, bool renormalize, float moe_softcapping,
                            const std::string& bias_mode, int num_expert_group, int topk_group,
                            int topk, int num_fused_shared_experts, double routed_scaling_factor,
                            bool apply_routed_scaling_factor_on_output, bool gate_renormalize,
                            int64_t block_size, bool pad_sorted_token_ids, uintptr_t stream) {
      TensorView logits = gating_output.input("gating_output"),
                 bias = input(correction_bias, "correction_bias"),
                 w = topk_weights.output("topk_weights"), ids = topk_ids.output("topk_ids"),
                 sorted = sorted_token_ids.output("sorted_token_ids"),
                 experts = experts_ids.output("experts_ids"),
                 post_pad = num_tokens_post_pad.output("num_tokens_post_pad");
      RouteAndAlignOptions o = route_and_align_options(
          router, renormalize, moe_softcapping, bias_mode, num_expert_group, topk_group, topk,
          num_fused_shared_experts, routed_scaling_factor, apply_routed_scaling_factor_on_output,
          gate_renormalize, block_size, pad_sorted_token_ids);
      nb::gil_scoped_release nogil;
      if (reference) {
        moekit::reference::route_and_align_block_size(logits, bias, w, ids, sorted, experts,
                                                      post_pad, o);
      } else {
        moekit::route_and_align_block_size(logits, bias, w, ids, sorted, experts, post_pad, o,
                                           stream_from(stream));
      }
    };
    // The oracle ignores `stream`.
    m.def(reference ? "reference_route_and_align_block_size" : "route_and_align_block_size", body,
          "gating_output"_a, "correction_bias"_a.none(), "topk_weights"_a, "topk_ids"_a,
          "sorted_token_ids"_a, "experts_ids"_a, "num_tokens_post_pad"_a,
          "router"_a = "topk_softmax", "renormalize"_a = false, "moe_softcapping"_a = 0.f,
          "bias_mode"_a = "logit", "num_expert_group"_a = 1, "topk_group"_a = 1, "topk"_a = 1,
          "num_fused_shared_experts"_a = 0, "routed_scaling_factor"_a = 0.0,
          "apply_routed_scaling_factor_on_output"_a = false, "gate_renormalize"_a = true,
          "block_size"_a = 64, "pad_sorted_token_ids"_a = false, "stream"_a = 0,
          kRouteAndAlignDoc);
  }
}

}  // namespace moekit::python
