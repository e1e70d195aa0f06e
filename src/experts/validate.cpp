#include "experts/validate.h"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_values.h"

namespace moekit {

const char* weight_scheme_name(WeightScheme scheme) {
  switch (scheme) {
    case WeightScheme::kBF16: return "bf16";
    case WeightScheme::kFP8BlockW8A8: return "fp8_block_w8a8";
    case WeightScheme::kFP8BlockW8A16: return "fp8_block_w8a16";
    case WeightScheme::kInt8W8A8: return "int8_w8a8";
    case WeightScheme::kInt4W4A8: return "int4_w4a8";
    case WeightScheme::kNVFP4: return "nvfp4";
    case WeightScheme::kMXFP8: return "mxfp8";
    case WeightScheme::kMXFP4: return "mxfp4";
  }
  return "unknown";
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::kSiluAndMul: return "silu_and_mul";
    case Activation::kGeluAndMul: return "gelu_and_mul";
    case Activation::kGeluTanhAndMul: return "gelu_tanh_and_mul";
    case Activation::kSwigluOai: return "swiglu_oai";
    case Activation::kSilu: return "silu";
    case Activation::kGelu: return "gelu";
  }
  return "unknown";
}

namespace detail {
namespace {

std::string join(const char* a, const char* b) { return std::string(a) + "." + b; }

std::string shape_text(std::initializer_list<int64_t> shape) {
  std::string s = "[";
  int i = 0;
  for (int64_t v : shape) s += (i++ ? ", " : "") + std::to_string(v);
  return s + "]";
}

void check_tensor_on(const TensorView& t, const std::string& name, Device device) {
  check_defined(t, name.c_str());
  check_device(t, name.c_str(), device);
  check_contiguous(t, name.c_str());
}

void check_absent(const TensorView& t, const std::string& name, WeightScheme scheme) {
  require(!t.defined(), name, ": expected no tensor (scheme ", weight_scheme_name(scheme),
          " does not use it), got one of shape ", detail::shape_of(t));
}

// A required tensor of exact dtype and shape.
void check_exact(const TensorView& t, const std::string& name, DType dtype,
                 std::initializer_list<int64_t> shape, Device device) {
  check_tensor_on(t, name, device);
  check_dtype(t, name.c_str(), dtype);
  check_shape(t, name.c_str(), shape);
}

void check_positive(const char* name, int64_t v) {
  require(v >= 1, name, ": expected a value >= 1, got ", v);
}

bool uses_block_fp8(WeightScheme s) {
  return s == WeightScheme::kFP8BlockW8A8 || s == WeightScheme::kFP8BlockW8A16;
}

}  // namespace

bool activation_is_gated(Activation activation) {
  return activation != Activation::kSilu && activation != Activation::kGelu;
}

bool scheme_is_4bit(WeightScheme scheme) {
  return scheme == WeightScheme::kInt4W4A8 || scheme == WeightScheme::kNVFP4 ||
         scheme == WeightScheme::kMXFP4;
}

int64_t packed_cols(WeightScheme scheme, int64_t cols) {
  return scheme_is_4bit(scheme) ? ceil_div(cols, 2) : cols;
}

void validate_expert_options(const FusedExpertsOptions& o) {
  switch (o.scheme) {
    case WeightScheme::kBF16: case WeightScheme::kFP8BlockW8A8: case WeightScheme::kFP8BlockW8A16:
    case WeightScheme::kInt8W8A8: case WeightScheme::kInt4W4A8: case WeightScheme::kNVFP4:
    case WeightScheme::kMXFP8: case WeightScheme::kMXFP4: break;
    default: fail(cat("scheme: expected a WeightScheme value, got ", static_cast<int>(o.scheme)));
  }
  switch (o.activation) {
    case Activation::kSiluAndMul: case Activation::kGeluAndMul: case Activation::kGeluTanhAndMul:
    case Activation::kSwigluOai: case Activation::kSilu: case Activation::kGelu: break;
    default: fail(cat("activation: expected an Activation value, got ", static_cast<int>(o.activation)));
  }
  if (o.activation == Activation::kSwigluOai) {
    require(std::isfinite(o.swiglu_alpha) && o.swiglu_alpha != 0.f,
            "swiglu_alpha: expected a finite non-zero value for swiglu_oai (gpt-oss: 1.702), got ",
            o.swiglu_alpha);
    require(std::isfinite(o.swiglu_limit) && o.swiglu_limit > 0.f,
            "swiglu_limit: expected a finite value > 0 for swiglu_oai (gpt-oss: 7.0), got ",
            o.swiglu_limit);
  } else {
    require(o.swiglu_alpha == 0.f, "swiglu_alpha: expected 0 (only swiglu_oai uses it; activation is ",
            activation_name(o.activation), "), got ", o.swiglu_alpha);
    require(o.swiglu_limit == 0.f, "swiglu_limit: expected 0 (only swiglu_oai uses it; activation is ",
            activation_name(o.activation), "), got ", o.swiglu_limit);
  }
  if (uses_block_fp8(o.scheme)) {
    check_positive("block_n", o.block_n);
    check_positive("block_k", o.block_k);
  }
  if (o.scheme == WeightScheme::kInt4W4A8) check_positive("group_size", o.group_size);
  require(std::isfinite(o.routed_scaling_factor), "routed_scaling_factor: expected a finite value, got ",
          o.routed_scaling_factor);
  require(!o.gate_up_interleaved || activation_is_gated(o.activation),
          "gate_up_interleaved: expected false for the no-mul activation ", activation_name(o.activation),
          " (w13 has I rows, no gate/up pairs), got true");
  require(!o.gate_up_interleaved || o.scheme == WeightScheme::kBF16,
          "gate_up_interleaved: expected false for scheme ", weight_scheme_name(o.scheme),
          " (interleaved w13 rows are supported for bf16 weights only), got true");
  require(!o.fp8_round_dequantized_weights || o.scheme == WeightScheme::kFP8BlockW8A16,
          "fp8_round_dequantized_weights: expected false (only fp8_block_w8a16 has mode B; scheme is ",
          weight_scheme_name(o.scheme), "), got true");
}

void validate_expert_weights(const ExpertWeights& w, const char* name,
                             const FusedExpertsOptions& o, DType act_dtype, int64_t E, int64_t R,
                             int64_t C, Device device) {
  const WeightScheme s = o.scheme;
  const std::string wn = join(name, "weight"), sn = join(name, "scale"), zn = join(name, "zero"),
                    gn = join(name, "global_scale"), in = join(name, "input_global_scale"),
                    bn = join(name, "bias");
  DType wdtype = DType::kUInt8;
  switch (s) {
    case WeightScheme::kBF16: wdtype = act_dtype; break;
    case WeightScheme::kFP8BlockW8A8: case WeightScheme::kFP8BlockW8A16: case WeightScheme::kMXFP8:
      wdtype = DType::kFloat8E4M3; break;
    case WeightScheme::kInt8W8A8: wdtype = DType::kInt8; break;
    default: break;
  }
  check_exact(w.weight, wn, wdtype, {E, R, packed_cols(s, C)}, device);

  switch (s) {
    case WeightScheme::kBF16: check_absent(w.scale, sn, s); break;
    case WeightScheme::kFP8BlockW8A8: case WeightScheme::kFP8BlockW8A16:
      check_exact(w.scale, sn, DType::kFloat32, {E, ceil_div(R, o.block_n), ceil_div(C, o.block_k)},
                  device);
      break;
    case WeightScheme::kInt8W8A8:
      check_tensor_on(w.scale, sn, device);
      check_dtype(w.scale, sn.c_str(), DType::kFloat32);
      require((w.scale.ndim == 2 && w.scale.shape[0] == E && w.scale.shape[1] == R) ||
                  (w.scale.ndim == 3 && w.scale.shape[0] == E && w.scale.shape[1] == R &&
                   w.scale.shape[2] == 1),
              sn, ": expected shape ", shape_text({E, R}), " or ", shape_text({E, R, 1}), ", got ",
              detail::shape_of(w.scale));
      break;
    case WeightScheme::kInt4W4A8:
      require(C % o.group_size == 0, "group_size: expected a divisor of the ", name,
              " input size ", C, ", got ", o.group_size);
      check_exact(w.scale, sn, DType::kFloat32, {E, R, C / o.group_size}, device);
      break;
    case WeightScheme::kNVFP4:
      check_exact(w.scale, sn, DType::kFloat8E4M3, {E, R, ceil_div(C, 16)}, device);
      break;
    case WeightScheme::kMXFP8: case WeightScheme::kMXFP4:
      check_exact(w.scale, sn, DType::kFloat8E8M0, {E, R, ceil_div(C, 32)}, device);
      break;
  }
  if (s == WeightScheme::kInt4W4A8)
    check_exact(w.zero, zn, DType::kUInt8, {E, R, C / o.group_size}, device);
  else
    check_absent(w.zero, zn, s);
  if (s == WeightScheme::kNVFP4) {
    check_exact(w.global_scale, gn, DType::kFloat32, {E}, device);
    check_exact(w.input_global_scale, in, DType::kFloat32, {E}, device);
  } else {
    check_absent(w.global_scale, gn, s);
    check_absent(w.input_global_scale, in, s);
  }
  if (w.bias.defined()) check_exact(w.bias, bn, DType::kFloat32, {E, R}, device);
}

namespace {

void check_hidden(const TensorView& hidden, Device device) {
  check_tensor_on(hidden, "hidden", device);
  check_dtype_in(hidden, "hidden", {DType::kBFloat16, DType::kFloat16});
  check_ndim(hidden, "hidden", 2);
}

// E, H, I and the w13 row count from hidden and the (3-D) weights, then every weight tensor.
void derive_and_check_weights(ExpertDims& d, const TensorView& hidden, const ExpertWeights& w13,
                              const ExpertWeights& w2, const FusedExpertsOptions& options,
                              Device device) {
  check_defined(w13.weight, "w13.weight");
  check_ndim(w13.weight, "w13.weight", 3);
  d.E = w13.weight.shape[0];
  d.w13_rows = w13.weight.shape[1];
  d.H = hidden.shape[1];
  check_positive("E (w13.weight.size(0))", d.E);
  check_positive("H (hidden.size(1))", d.H);
  check_positive("w13 rows (w13.weight.size(1))", d.w13_rows);
  if (activation_is_gated(options.activation)) {
    require(d.w13_rows % 2 == 0, "w13.weight: expected an even row count 2I (gate and up rows) for ",
            activation_name(options.activation), ", got shape ", detail::shape_of(w13.weight));
    d.I = d.w13_rows / 2;
  } else {
    d.I = d.w13_rows;
  }
  validate_expert_weights(w13, "w13", options, hidden.dtype, d.E, d.w13_rows, d.H, device);
  validate_expert_weights(w2, "w2", options, hidden.dtype, d.E, d.H, d.I, device);
}

}  // namespace

ExpertDims validate_fused_experts(const TensorView& hidden, const ExpertWeights& w13,
                                  const ExpertWeights& w2, const TensorView& topk_weights,
                                  const TensorView& topk_ids, const TensorView& output,
                                  const FusedExpertsOptions& options, Device device) {
  validate_expert_options(options);
  check_hidden(hidden, device);
  ExpertDims d;
  d.M = hidden.shape[0];
  derive_and_check_weights(d, hidden, w13, w2, options, device);

  check_tensor_on(topk_ids, "topk_ids", device);
  check_dtype_in(topk_ids, "topk_ids", {DType::kInt32, DType::kInt64});
  check_ndim(topk_ids, "topk_ids", 2);
  require(topk_ids.shape[0] == d.M, "topk_ids: expected ", d.M, " rows (the tokens of hidden), got shape ",
          detail::shape_of(topk_ids));
  d.topk = topk_ids.shape[1];
  check_positive("topk (topk_ids.size(1))", d.topk);
  require(d.M * d.topk <= std::numeric_limits<int32_t>::max(), "topk_ids: expected M * topk <= 2^31 - 1, got ",
          d.M, " * ", d.topk);
  check_tensor_on(topk_weights, "topk_weights", device);
  check_dtype_in(topk_weights, "topk_weights", {DType::kFloat32, DType::kBFloat16, DType::kFloat16});
  check_shape(topk_weights, "topk_weights", {d.M, d.topk});

  check_tensor_on(output, "output", device);
  check_same_dtype(output, "output", hidden, "hidden");
  check_shape(output, "output", {d.M, d.H});
  return d;
}

void check_topk_id_values(const TensorView& topk_ids, int64_t E) {
  const int64_t M = topk_ids.shape[0], k = topk_ids.shape[1];
  for (int64_t i = 0; i < M * k; ++i) {
    const int64_t id = topk_ids.dtype == DType::kInt32 ? topk_ids.ptr<int32_t>()[i]
                                                       : topk_ids.ptr<int64_t>()[i];
    require(id == -1 || (id >= 0 && id < E), "topk_ids[", i / k, ", ", i % k, "] = ", id,
            ", expected in [0, ", E, ") or -1");
  }
}

void check_int4_zero_values(const TensorView& zero, const char* name) {
  const int64_t n = zero.numel();
  for (int64_t i = 0; i < n; ++i)
    require(zero.ptr<uint8_t>()[i] <= 15, name, ": expected zero points in 0..15, got ",
            int{zero.ptr<uint8_t>()[i]}, " at flat index ", i);
}

void validate_rows(const TensorView& rows, int64_t M, Device device) {
  check_tensor_on(rows, "rows", device);
  check_dtype(rows, "rows", DType::kInt32);
  check_ndim(rows, "rows", 1);
  if (device.kind != DeviceKind::kCPU) return;
  std::vector<bool> seen(static_cast<size_t>(M), false);
  for (int64_t i = 0; i < rows.shape[0]; ++i) {
    const int64_t r = rows.ptr<int32_t>()[i];
    require(r >= 0 && r < M, "rows[", i, "] = ", r, ", expected in [0, ", M, ")");
    require(!seen[r], "rows[", i, "] = ", r, ", expected distinct rows (it appears twice)");
    seen[r] = true;
  }
}

ExpertWeights as_single_expert(const ExpertWeights& w) {
  if (w.weight.ndim != 2) return w;
  auto unsqueeze = [](TensorView t) {
    if (!t.defined() || t.ndim >= TensorView::kMaxDims) return t;
    for (int d = t.ndim; d > 0; --d) {
      t.shape[d] = t.shape[d - 1];
      t.strides[d] = t.strides[d - 1];
    }
    t.shape[0] = 1;
    t.strides[0] = t.ndim ? t.shape[1] * t.strides[1] : 1;
    ++t.ndim;
    return t;
  };
  auto as_vector = [](TensorView t) {
    if (t.defined() && t.ndim == 0) {
      t.ndim = 1;
      t.shape[0] = 1;
      t.strides[0] = 1;
    }
    return t;
  };
  ExpertWeights r = w;
  r.weight = unsqueeze(w.weight);
  r.scale = unsqueeze(w.scale);
  r.zero = unsqueeze(w.zero);
  r.bias = unsqueeze(w.bias);
  r.global_scale = as_vector(w.global_scale);
  r.input_global_scale = as_vector(w.input_global_scale);
  return r;
}

ExpertDims validate_shared_expert(const TensorView& hidden, const ExpertWeights& w13_in,
                                  const ExpertWeights& w2_in, const TensorView& fused_experts_out,
                                  const TensorView& output, const FusedExpertsOptions& options,
                                  Device device) {
  validate_expert_options(options);
  check_hidden(hidden, device);
  check_defined(w13_in.weight, "w13.weight");
  check_defined(w2_in.weight, "w2.weight");
  require(w13_in.weight.ndim == 2 || (w13_in.weight.ndim == 3 && w13_in.weight.shape[0] == 1),
          "w13.weight: expected a 2-D [2I, H] or 3-D [1, 2I, H] tensor, got shape ",
          detail::shape_of(w13_in.weight));
  require(w2_in.weight.ndim == w13_in.weight.ndim,
          "w2.weight: expected the rank of w13.weight (", w13_in.weight.ndim, "-D), got shape ",
          detail::shape_of(w2_in.weight));
  const ExpertWeights w13 = as_single_expert(w13_in), w2 = as_single_expert(w2_in);
  ExpertDims d;
  d.M = hidden.shape[0];
  derive_and_check_weights(d, hidden, w13, w2, options, device);
  if (fused_experts_out.defined()) {
    check_tensor_on(fused_experts_out, "fused_experts_out", device);
    check_same_dtype(fused_experts_out, "fused_experts_out", hidden, "hidden");
    check_shape(fused_experts_out, "fused_experts_out", {d.M, d.H});
  }
  check_tensor_on(output, "output", device);
  check_same_dtype(output, "output", hidden, "hidden");
  check_shape(output, "output", {d.M, d.H});
  return d;
}

}  // namespace detail
}  // namespace moekit
