// Public GPU expert ops: validate on the host, then launch on the tensors' CUDA device.
#include <cstdint>

#include "common/backend.h"
#include "common/checks.h"
#include "experts/configs.h"
#include "experts/cuda/launcher.h"
#include "moekit/gpu_experts.h"

namespace moekit {
namespace {

struct LayerShape {
  int64_t M, k, E, H, I;
  bool gated;
  bool interleaved;  // FusedExpertsOptions::gate_up_interleaved
};

bool is_gated(Activation a) { return a != Activation::kSilu && a != Activation::kGelu; }

// Shape/dtype checks shared by the size query and the ops; `topk` < 0 reads k from topk_ids.
LayerShape check_layer(const TensorView& hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                       int64_t M, int64_t k, const FusedExpertsOptions& options) {
  using namespace detail;
  check_defined(hidden, "hidden");
  check_dtype_in(hidden, "hidden", {DType::kBFloat16, DType::kFloat16});
  check_ndim(hidden, "hidden", 2);
  require(options.scheme == WeightScheme::kBF16, "options.scheme: expected kBF16 (weights in the "
          "dtype of hidden) for the GPU fused_experts, got scheme #", static_cast<int>(options.scheme));
  check_defined(w13.weight, "w13.weight");
  check_defined(w2.weight, "w2.weight");
  check_same_dtype(w13.weight, "w13.weight", hidden, "hidden");
  check_same_dtype(w2.weight, "w2.weight", hidden, "hidden");
  check_ndim(w13.weight, "w13.weight", 3);
  check_ndim(w2.weight, "w2.weight", 3);
  LayerShape s{};
  s.M = M;
  s.k = k;
  s.E = w13.weight.size(0);
  s.H = hidden.size(1);
  s.I = w2.weight.size(2);
  s.gated = is_gated(options.activation);
  s.interleaved = options.gate_up_interleaved;
  require(!options.gate_up_interleaved || s.gated, "options.gate_up_interleaved: expected false for the "
          "no-mul activation ", activation_name(options.activation), " (w13 has I rows), got true");
  require(s.E >= 1, "w13.weight: expected at least one expert, got shape ", detail::shape_of(w13.weight));
  check_shape(w13.weight, "w13.weight", {s.E, s.gated ? 2 * s.I : s.I, s.H});
  check_shape(w2.weight, "w2.weight", {s.E, s.H, s.I});
  require(s.H % 8 == 0, "hidden: expected a hidden size that is a multiple of 8 on the GPU, got ", s.H);
  require(s.I % 8 == 0, "w2.weight: expected an intermediate size that is a multiple of 8 on the GPU, got ",
          s.I);
  require(s.I >= 1 && s.H >= 1, "w2.weight: expected non-empty expert matrices, got shape ",
          detail::shape_of(w2.weight));
  require(s.E <= 16384, "w13.weight: expected at most 16384 experts, got ", s.E);
  require(s.k >= 1, "topk: expected at least 1 slot per token, got ", s.k);
  require(s.M * s.k < (int64_t(1) << 31), "topk_ids: expected fewer than 2^31 (token, slot) pairs, got ",
          s.M * s.k);
  return s;
}

void check_bias(const ExpertWeights& w, const char* name, int64_t E, int64_t R, Device device) {
  if (!w.bias.defined()) return;
  detail::check_tensor(w.bias, name, DType::kFloat32, device);
  detail::check_shape(w.bias, name, {E, R});
}

void check_unused(const ExpertWeights& w, const char* prefix) {
  const std::string p(prefix);
  detail::require(!w.scale.defined() && !w.zero.defined() && !w.global_scale.defined() &&
                      !w.input_global_scale.defined(),
                  p, ": expected no scale/zero tensors for the kBF16 scheme, got some");
}

void check_workspace(const TensorView& workspace, size_t need, Device device) {
  detail::check_defined(workspace, "workspace");
  detail::check_device(workspace, "workspace", device);
  detail::check_contiguous(workspace, "workspace");
  detail::require(workspace.nbytes() >= need, "workspace: expected at least ", need,
                  " bytes (fused_experts_workspace_size), got ", workspace.nbytes());
  detail::require(reinterpret_cast<uintptr_t>(workspace.data) % 16 == 0,
                  "workspace: expected a 16-byte aligned pointer");
}

size_t layer_workspace(const LayerShape& s, DType dtype) {
  const cuda::ExpertsPlan plan =
      cuda::choose_experts_plan(s.M, static_cast<int>(s.k), s.E, s.H, s.I, s.gated, s.interleaved);
  return cuda::experts_workspace_layout(s.M, s.k, s.E, s.H, s.I, dtype_size(dtype), cuda::kMinTileTokens,
                                        plan.grouped, s.gated ? 2 * s.I : s.I, plan.fused_act,
                                        plan.gemm2_tail_split)
      .total;
}

#if defined(MOEKIT_WITH_CUDA)
void run_layer(const LayerShape& s, TensorView hidden, const ExpertWeights& w13,
               const ExpertWeights& w2, const float* topk_weights, const int* topk_ids,
               TensorView output, void* workspace, const FusedExpertsOptions& options,
               Stream stream) {
  cuda::FusedExpertsArgs a{};
  a.hidden = hidden.data;
  a.w13 = w13.weight.data;
  a.w2 = w2.weight.data;
  a.w13_bias = w13.bias.defined() ? w13.bias.ptr<float>() : nullptr;
  a.w2_bias = w2.bias.defined() ? w2.bias.ptr<float>() : nullptr;
  a.topk_weights = topk_weights;
  a.topk_ids = topk_ids;
  a.output = output.data;
  a.workspace = workspace;
  a.M = s.M;
  a.k = s.k;
  a.E = s.E;
  a.H = s.H;
  a.I = s.I;
  a.gated = s.gated;
  a.gate_up_interleaved = options.gate_up_interleaved;
  a.activation = options.activation;
  a.swiglu_alpha = options.swiglu_alpha;
  a.swiglu_limit = options.swiglu_limit;
  a.routed_scaling_factor = static_cast<float>(options.routed_scaling_factor);
  a.dtype = hidden.dtype;
  cuda::fused_experts(a, stream);
}
#endif

// The kernels move rows in 16-byte vectors (cp.async, TMA, uint4); with H and I multiples of 8 every
// row then starts aligned when the tensor does.
void check_aligned16(const TensorView& t, const char* name) {
  detail::require(reinterpret_cast<uintptr_t>(t.data) % 16 == 0, name,
                  ": expected a 16-byte aligned data pointer on the GPU, got ", t.data);
}

void check_common(const TensorView& hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                  const TensorView& output, const LayerShape& s, const FusedExpertsOptions& options) {
  const Device dev = hidden.device;
  check_aligned16(hidden, "hidden");
  check_aligned16(w13.weight, "w13.weight");
  check_aligned16(w2.weight, "w2.weight");
  check_aligned16(output, "output");
  detail::check_contiguous(hidden, "hidden");
  detail::check_tensor(w13.weight, "w13.weight", hidden.dtype, dev);
  detail::check_tensor(w2.weight, "w2.weight", hidden.dtype, dev);
  check_unused(w13, "w13");
  check_unused(w2, "w2");
  check_bias(w13, "w13.bias", s.E, s.gated ? 2 * s.I : s.I, dev);
  check_bias(w2, "w2.bias", s.E, s.H, dev);
  detail::check_tensor(output, "output", hidden.dtype, dev);
  detail::check_shape(output, "output", {s.M, s.H});
  if (options.activation == Activation::kSwigluOai)
    detail::require(options.swiglu_limit > 0.f, "options.swiglu_limit: expected > 0 for kSwigluOai, got ",
                    options.swiglu_limit);
}

void require_cuda(const TensorView& hidden, const char* op) {
  if (hidden.device.kind != DeviceKind::kCUDA)
    detail::fail(detail::cat(op, ": hidden: expected a CUDA tensor (this entry point is the GPU "
                             "path), got ", device_name(hidden.device)),
                 ErrorKind::NotSupported);
}

}  // namespace

size_t fused_experts_workspace_size(TensorView hidden, const ExpertWeights& w13,
                                    const ExpertWeights& w2, TensorView topk_ids,
                                    const FusedExpertsOptions& options) {
  detail::check_defined(topk_ids, "topk_ids");
  detail::check_ndim(topk_ids, "topk_ids", 2);
  const LayerShape s = check_layer(hidden, w13, w2, hidden.size(0), topk_ids.size(1), options);
  return layer_workspace(s, hidden.dtype);
}

void fused_experts(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                   TensorView topk_weights, TensorView topk_ids, TensorView output,
                   TensorView workspace, const FusedExpertsOptions& options, Stream stream) {
  detail::check_defined(topk_ids, "topk_ids");
  detail::check_ndim(topk_ids, "topk_ids", 2);
  const LayerShape s = check_layer(hidden, w13, w2, hidden.size(0), topk_ids.size(1), options);
  const Device dev = hidden.device;
  check_common(hidden, w13, w2, output, s, options);
  detail::check_tensor(topk_ids, "topk_ids", DType::kInt32, dev);
  detail::check_shape(topk_ids, "topk_ids", {s.M, s.k});
  detail::check_tensor(topk_weights, "topk_weights", DType::kFloat32, dev);
  detail::check_shape(topk_weights, "topk_weights", {s.M, s.k});
  if (s.M == 0) return;
  check_workspace(workspace, layer_workspace(s, hidden.dtype), dev);
  require_cuda(hidden, "fused_experts");
  MOEKIT_CUDA_ONLY(run_layer(s, hidden, w13, w2, topk_weights.ptr<float>(), topk_ids.ptr<int>(),
                             output, workspace.data, options, stream),
                   "fused_experts");
}

namespace {
size_t routing_bytes(int64_t M, int64_t k) {
  return cuda::align_up_256(size_t(M * k) * 4) * 2;  // weights fp32, then ids int32
}
}  // namespace

size_t fused_moe_workspace_size(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                                TensorView router_logits, int topk,
                                const FusedExpertsOptions& options) {
  const LayerShape s = check_layer(hidden, w13, w2, hidden.size(0), topk, options);
  return routing_bytes(s.M, s.k) + layer_workspace(s, hidden.dtype);
}

void fused_moe(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
               TensorView router_logits, int topk, bool renormalize, TensorView output,
               TensorView workspace, const FusedExpertsOptions& options, Stream stream) {
  const LayerShape s = check_layer(hidden, w13, w2, hidden.size(0), topk, options);
  const Device dev = hidden.device;
  check_common(hidden, w13, w2, output, s, options);
  detail::check_defined(router_logits, "router_logits");
  detail::check_device(router_logits, "router_logits", dev);
  detail::check_dtype_in(router_logits, "router_logits",
                         {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  detail::check_contiguous(router_logits, "router_logits");
  detail::check_shape(router_logits, "router_logits", {s.M, s.E});
  detail::check_range("topk", topk, 1, s.E);
  if (s.M == 0) return;
  const size_t route = routing_bytes(s.M, s.k);
  check_workspace(workspace, route + layer_workspace(s, hidden.dtype), dev);
  require_cuda(hidden, "fused_moe");
#if defined(MOEKIT_WITH_CUDA)
  auto* base = static_cast<unsigned char*>(workspace.data);
  float* weights = reinterpret_cast<float*>(base);
  int* ids = reinterpret_cast<int*>(base + route / 2);
  cuda::softmax_topk(router_logits.data, router_logits.dtype, s.M, s.E, topk, renormalize, weights,
                     ids, stream);
  run_layer(s, hidden, w13, w2, weights, ids, output, base + route, options, stream);
#else
  MOEKIT_CUDA_ONLY((void)0, "fused_moe");
#endif
}

}  // namespace moekit
