// moekit/gpu_experts.h: the MoE layer's expert part (and routing + experts) on a CUDA GPU.
#include "experts_arg.h"
#include "moekit/gpu_experts.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

constexpr const char* kFusedExpertsDoc =
    "The MoE layer's expert part on a CUDA GPU: out[m] = rsf * sum_t topk_weights[m, t] * "
    "W2[e] . act(W13[e] . hidden[m]), e = topk_ids[m, t] (ids outside [0, E) contribute "
    "nothing). Weights in the logical layout (no packing); scheme bf16 (weights in the dtype of "
    "hidden); H and I multiples of 8. Bit-identical run to run; capturable in a CUDA graph.\n\n"
    "hidden       [M, H] bfloat16/float16, contiguous, CUDA\n"
    "w13, w2      ExpertWeights: weight [E, 2I, H] (or [E, I, H] for no-mul activations) and "
    "[E, H, I]; optional bias float32 [E, R]\n"
    "topk_weights [M, k] float32; topk_ids [M, k] int32\n"
    "output       [M, H] dtype of hidden, written (may be hidden)\n"
    "workspace    uint8 [>= fused_experts_workspace_size(...)], 16-byte aligned";

constexpr const char* kFusedMoeDoc =
    "Routing (softmax top-k, optional renormalisation; ties -> lower expert; NaN logits last) "
    "then fused_experts, on a CUDA GPU.\n\n"
    "router_logits [M, E] float32/float16/bfloat16; workspace uint8 [>= "
    "fused_moe_workspace_size(...)]; other arguments as fused_experts.";

}  // namespace

void bind_gpu_experts(nb::module_& m) {
  m.def(
      "fused_experts_workspace_size",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2, Tensor topk_ids,
         const FusedExpertsOptions& options) {
        ExpertWeightsArg w13_arg, w2_arg;
        return moekit::fused_experts_workspace_size(hidden.input("hidden"), w13_arg.view(w13, "w13"),
                                                    w2_arg.view(w2, "w2"),
                                                    topk_ids.input("topk_ids"), options);
      },
      "hidden"_a, "w13"_a, "w2"_a, "topk_ids"_a, "options"_a = FusedExpertsOptions(),
      "Bytes of workspace fused_experts needs for these shapes.");
  m.def(
      "fused_experts",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2,
         Tensor topk_weights, Tensor topk_ids, Tensor output, Tensor workspace,
         const FusedExpertsOptions& options, uintptr_t stream) {
        ExpertWeightsArg w13_arg, w2_arg;
        TensorView x = hidden.input("hidden"), tw = topk_weights.input("topk_weights"),
                   ids = topk_ids.input("topk_ids"), out = output.output("output"),
                   ws = workspace.output("workspace");
        ExpertWeights w13_view = w13_arg.view(w13, "w13"), w2_view = w2_arg.view(w2, "w2");
        nb::gil_scoped_release nogil;
        moekit::fused_experts(x, w13_view, w2_view, tw, ids, out, ws, options,
                              stream_from(stream));
      },
      "hidden"_a, "w13"_a, "w2"_a, "topk_weights"_a, "topk_ids"_a, "output"_a, "workspace"_a,
      "options"_a = FusedExpertsOptions(), "stream"_a = 0, kFusedExpertsDoc);
  m.def(
      "fused_moe_workspace_size",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2,
         Tensor router_logits, int topk, const FusedExpertsOptions& options) {
        ExpertWeightsArg w13_arg, w2_arg;
        return moekit::fused_moe_workspace_size(hidden.input("hidden"), w13_arg.view(w13, "w13"),
                                                w2_arg.view(w2, "w2"),
                                                router_logits.input("router_logits"), topk,
                                                options);
      },
      "hidden"_a, "w13"_a, "w2"_a, "router_logits"_a, "topk"_a,
      "options"_a = FusedExpertsOptions(), "Bytes of workspace fused_moe needs for these shapes.");
  m.def(
      "fused_moe",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2,
         Tensor router_logits, int topk, bool renormalize, Tensor output, Tensor workspace,
         const FusedExpertsOptions& options, uintptr_t stream) {
        ExpertWeightsArg w13_arg, w2_arg;
        TensorView x = hidden.input("hidden"), logits = router_logits.input("router_logits"),
                   out = output.output("output"), ws = workspace.output("workspace");
        ExpertWeights w13_view = w13_arg.view(w13, "w13"), w2_view = w2_arg.view(w2, "w2");
        nb::gil_scoped_release nogil;
        moekit::fused_moe(x, w13_view, w2_view, logits, topk, renormalize, out, ws, options,
                          stream_from(stream));
      },
      "hidden"_a, "w13"_a, "w2"_a, "router_logits"_a, "topk"_a, "renormalize"_a, "output"_a,
      "workspace"_a, "options"_a = FusedExpertsOptions(), "stream"_a = 0, kFusedMoeDoc);
}

}  // namespace moekit::python
