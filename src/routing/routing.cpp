// Public routing ops: validate on the host, then run on the tensors' device.
#include "common/backend.h"
#include "moekit/dispatch.h"
#include "moekit/route.h"
#include "routing/cpu/kernels.h"
#include "routing/cuda/launcher.h"
#include "routing/validate.h"

namespace moekit {
namespace {

void run(const routing::RouterProblem& p, Device device, Stream stream, const char* op) {
  if (p.M == 0) return;
  if (device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::route(p, stream), op);
  } else {
    cpu::route(p);
  }
}

}  // namespace

void topk_softmax(TensorView topk_weights, TensorView topk_indices, TensorView gating_output,
                  bool renormalize, float moe_softcapping, TensorView correction_bias,
                  RouterBiasMode bias_mode, Stream stream) {
  run(detail::validate_topk_softmax(topk_weights, topk_indices, gating_output, renormalize,
                                    moe_softcapping, correction_bias, bias_mode,
                                    gating_output.device),
      gating_output.device, stream, "topk_softmax");
}

void topk_sigmoid(TensorView topk_weights, TensorView topk_indices, TensorView gating_output,
                  bool renormalize, TensorView correction_bias, Stream stream) {
  run(detail::validate_topk_sigmoid(topk_weights, topk_indices, gating_output, renormalize,
                                    correction_bias, gating_output.device),
      gating_output.device, stream, "topk_sigmoid");
}

void moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights, TensorView topk_ids,
                    const MoeFusedGateOptions& options, Stream stream) {
  run(detail::validate_moe_fused_gate(input, bias, topk_weights, topk_ids, options, input.device),
      input.device, stream, "moe_fused_gate");
}

void kimi_k2_moe_fused_gate(TensorView input, TensorView bias, TensorView topk_weights,
                            TensorView topk_ids, int topk, bool renormalize,
                            double routed_scaling_factor,
                            bool apply_routed_scaling_factor_on_output, Stream stream) {
  run(detail::validate_kimi_k2_moe_fused_gate(input, bias, topk_weights, topk_ids, topk,
                                              renormalize, routed_scaling_factor,
                                              apply_routed_scaling_factor_on_output, input.device),
      input.device, stream, "kimi_k2_moe_fused_gate");
}

void grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output, int topk,
                  bool renormalize, int num_expert_group, int topk_group,
                  int num_fused_shared_experts, double routed_scaling_factor, Stream stream) {
  run(detail::validate_grouped_topk(topk_weights, topk_ids, gating_output, TensorView{}, false, topk,
                                    renormalize, num_expert_group, topk_group,
                                    num_fused_shared_experts, routed_scaling_factor,
                                    gating_output.device),
      gating_output.device, stream, "grouped_topk");
}

void biased_grouped_topk(TensorView topk_weights, TensorView topk_ids, TensorView gating_output,
                         TensorView correction_bias, int topk, bool renormalize,
                         int num_expert_group, int topk_group, int num_fused_shared_experts,
                         double routed_scaling_factor, Stream stream) {
  run(detail::validate_grouped_topk(topk_weights, topk_ids, gating_output, correction_bias, true,
                                    topk, renormalize, num_expert_group, topk_group,
                                    num_fused_shared_experts, routed_scaling_factor,
                                    gating_output.device),
      gating_output.device, stream, "biased_grouped_topk");
}

void route_and_align_block_size(TensorView gating_output, TensorView correction_bias,
                                TensorView topk_weights, TensorView topk_ids,
                                TensorView sorted_token_ids, TensorView experts_ids,
                                TensorView num_tokens_post_pad, const RouteAndAlignOptions& options,
                                Stream stream) {
  const Device device = gating_output.device;
  detail::RouteAndAlignProblem p = detail::validate_route_and_align(
      gating_output, correction_bias, topk_weights, topk_ids, sorted_token_ids, experts_ids,
      num_tokens_post_pad, options, device);
  if (device.kind == DeviceKind::kCUDA &&
      p.route.M * p.route.slots() <= routing::kMaxFusedRouteAlignPairs) {
    MOEKIT_CUDA_ONLY(cuda::route_and_align(p, stream), "route_and_align_block_size");
    return;
  }
  // Two steps: route, then align the ids just written (same stream, so in order on CUDA).
  run(p.route, device, stream, "route_and_align_block_size");
  moe_align_block_size_experts(topk_ids, p.route.E + p.route.shared, options.block_size,
                               sorted_token_ids, experts_ids, num_tokens_post_pad,
                               options.pad_sorted_token_ids, /*ignore_invalid_expert=*/true,
                               TensorView{}, stream);
}

}  // namespace moekit
