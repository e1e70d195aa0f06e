// Helpers of the expert-layer tests: owning weight sets per scheme (made from fp32 master weights
// with the quant.h producers), random routing, and an fp64 "ideal" MoE on the dequantised weights
// with no intermediate rounding and no activation quantisation (cpu-moe.md 9.2 metrics).
#pragma once

#include <algorithm>
#include <ostream>
#include <cmath>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "moekit/experts.h"
#include "moekit/quant.h"

namespace moekit::test {

inline bool scheme_is_4bit(WeightScheme s) {
  return s == WeightScheme::kInt4W4A8 || s == WeightScheme::kNVFP4 || s == WeightScheme::kMXFP4;
}

inline bool present(const HostTensor& t) { return !t.shape().empty(); }

// One projection's tensors, owned.
struct ProjectionTensors {
  HostTensor weight, scale, zero, global_scale, input_global_scale, bias;
  HostTensor dequantized;  // fp32 [E, R, C]: the exact values the scheme's weights stand for

  ExpertWeights view() const {
    ExpertWeights w;
    auto v = [](const HostTensor& t) { return present(t) ? t.view() : TensorView{}; };
    w.weight = v(weight);
    w.scale = v(scale);
    w.zero = v(zero);
    w.global_scale = v(global_scale);
    w.input_global_scale = v(input_global_scale);
    w.bias = v(bias);
    return w;
  }
};

// Quantises master fp32 [E, R, C] into `scheme`'s tensors. input_gs: NVFP4 activation global
// scale for every expert.
inline ProjectionTensors make_projection(WeightScheme scheme, DType act, const HostTensor& master,
                                         const FusedExpertsOptions& o, float input_gs = 1.f) {
  const int64_t E = master.shape()[0], R = master.shape()[1], C = master.shape()[2];
  auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  ProjectionTensors p;
  p.dequantized = HostTensor(DType::kFloat32, {E, R, C});
  switch (scheme) {
    case WeightScheme::kBF16:
      p.weight = HostTensor(act, {E, R, C});
      for (int64_t i = 0; i < master.numel(); ++i) p.weight.set(i, master.get(i));
      for (int64_t i = 0; i < master.numel(); ++i) p.dequantized.set(i, p.weight.get(i));
      break;
    case WeightScheme::kFP8BlockW8A8:
    case WeightScheme::kFP8BlockW8A16:
      p.weight = HostTensor(DType::kFloat8E4M3, {E, R, C});
      p.scale = HostTensor(DType::kFloat32, {E, cdiv(R, o.block_n), cdiv(C, o.block_k)});
      quantize_fp8_block(master.view(), p.weight.view(), p.scale.view(), o.block_n, o.block_k);
      dequantize_fp8_block(p.weight.view(), p.scale.view(), p.dequantized.view(), o.block_n, o.block_k);
      break;
    case WeightScheme::kInt8W8A8:
      p.weight = HostTensor(DType::kInt8, {E, R, C});
      p.scale = HostTensor(DType::kFloat32, {E, R});
      quantize_int8_per_row(master.view(), p.weight.view(), p.scale.view());
      dequantize_int8_per_row(p.weight.view(), p.scale.view(), p.dequantized.view());
      break;
    case WeightScheme::kInt4W4A8:
      p.weight = HostTensor(DType::kUInt8, {E, R, cdiv(C, 2)});
      p.scale = HostTensor(DType::kFloat32, {E, R, C / o.group_size});
      p.zero = HostTensor(DType::kUInt8, {E, R, C / o.group_size});
      quantize_int4_group(master.view(), p.weight.view(), p.scale.view(), p.zero.view(), o.group_size);
      dequantize_int4_group(p.weight.view(), p.scale.view(), p.zero.view(), p.dequantized.view(),
                            o.group_size);
      break;
    case WeightScheme::kNVFP4:
      p.weight = HostTensor(DType::kUInt8, {E, R, cdiv(C, 2)});
      p.scale = HostTensor(DType::kFloat8E4M3, {E, R, cdiv(C, 16)});
      p.global_scale = HostTensor(DType::kFloat32, {E});
      p.input_global_scale = HostTensor(DType::kFloat32, {E});
      p.input_global_scale.fill(input_gs);
      nvfp4_global_scale(master.view(), p.global_scale.view());
      quantize_nvfp4(master.view(), p.global_scale.view(), p.weight.view(), p.scale.view());
      dequantize_nvfp4(p.weight.view(), p.scale.view(), p.global_scale.view(), p.dequantized.view());
      break;
    case WeightScheme::kMXFP8:
      p.weight = HostTensor(DType::kFloat8E4M3, {E, R, C});
      p.scale = HostTensor(DType::kFloat8E8M0, {E, R, cdiv(C, 32)});
      quantize_mxfp8(master.view(), p.weight.view(), p.scale.view());
      dequantize_mxfp8(p.weight.view(), p.scale.view(), p.dequantized.view());
      break;
    case WeightScheme::kMXFP4:
      p.weight = HostTensor(DType::kUInt8, {E, R, cdiv(C, 2)});
      p.scale = HostTensor(DType::kFloat8E8M0, {E, R, cdiv(C, 32)});
      quantize_mxfp4(master.view(), p.weight.view(), p.scale.view());
      dequantize_mxfp4(p.weight.view(), p.scale.view(), p.dequantized.view());
      break;
  }
  return p;
}

// A complete random problem.
struct MoeProblem {
  int64_t M, H, I, E, topk;
  HostTensor hidden, topk_weights, topk_ids;
  ProjectionTensors w13, w2;
  FusedExpertsOptions options;
};

inline bool gated(Activation a) { return a != Activation::kSilu && a != Activation::kGelu; }

// Random weights ~ N(0, 1/sqrt(C)), hidden ~ N(0, 1), ids distinct per row, weights U(0.1, 1).
inline MoeProblem make_problem(std::mt19937_64& rng, const FusedExpertsOptions& o, DType act,
                               int64_t M, int64_t H, int64_t I, int64_t E, int64_t topk,
                               bool with_bias = false) {
  MoeProblem p{M, H, I, E, topk, HostTensor(act, {M, H}), HostTensor(DType::kFloat32, {M, topk}),
               HostTensor(DType::kInt32, {M, topk}), {}, {}, o};
  p.hidden.fill_normal(rng);
  p.topk_weights.fill_uniform(rng, 0.1, 1.0);
  std::vector<int> ids(E);
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t e = 0; e < E; ++e) ids[e] = static_cast<int>(e);
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int64_t t = 0; t < topk; ++t) p.topk_ids.set(m * topk + t, ids[t % E]);
  }
  const int64_t R13 = gated(o.activation) ? 2 * I : I;
  HostTensor m13(DType::kFloat32, {E, R13, H}), m2(DType::kFloat32, {E, H, I});
  m13.fill_normal(rng, 0.0, 1.0 / std::sqrt(static_cast<double>(H)));
  m2.fill_normal(rng, 0.0, 1.0 / std::sqrt(static_cast<double>(I)));
  // NVFP4 activation global scales: 448 * 6 / (a generous amax of the GEMM input).
  p.w13 = make_projection(o.scheme, act, m13, o, 448.f * 6.f / 5.f);
  p.w2 = make_projection(o.scheme, act, m2, o, 448.f * 6.f / 16.f);
  if (with_bias) {
    p.w13.bias = HostTensor(DType::kFloat32, {E, R13});
    p.w13.bias.fill_normal(rng, 0.0, 0.1);
    p.w2.bias = HostTensor(DType::kFloat32, {E, H});
    p.w2.bias.fill_normal(rng, 0.0, 0.1);
  }
  return p;
}

inline double ideal_act(const FusedExpertsOptions& o, double g, double u) {
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  switch (o.activation) {
    case Activation::kSiluAndMul: return g * sig(g) * u;
    case Activation::kGeluAndMul: return 0.5 * g * (1 + std::erf(g / std::sqrt(2.0))) * u;
    case Activation::kGeluTanhAndMul:
      return 0.5 * g * (1 + std::tanh(std::sqrt(2 / M_PI) * (g + 0.044715 * g * g * g))) * u;
    case Activation::kSwigluOai: {
      const double L = o.swiglu_limit;
      const double gc = std::min(g, L), uc = std::min(std::max(u, -L), L);
      return gc * sig(o.swiglu_alpha * gc) * (uc + 1);
    }
    case Activation::kSilu: return g * sig(g);
    case Activation::kGelu: return 0.5 * g * (1 + std::erf(g / std::sqrt(2.0)));
  }
  return 0;
}

// fp64 MoE on the dequantised weights: no rounding anywhere, result stored in fp64 [M, H].
inline HostTensor ideal_fused_experts(const MoeProblem& p) {
  const int64_t R13 = gated(p.options.activation) ? 2 * p.I : p.I;
  HostTensor out(DType::kFloat64, {p.M, p.H});
  std::vector<double> h(R13), a(p.I);
  for (int64_t m = 0; m < p.M; ++m) {
    std::vector<double> acc(p.H, 0.0);
    for (int64_t t = 0; t < p.topk; ++t) {
      const int64_t e = static_cast<int64_t>(p.topk_ids.get(m * p.topk + t));
      if (e < 0) continue;
      const double w = p.topk_weights.get(m * p.topk + t);
      for (int64_t r = 0; r < R13; ++r) {
        double s = present(p.w13.bias) ? p.w13.bias.get(e * R13 + r) : 0.0;
        for (int64_t k = 0; k < p.H; ++k)
          s += p.w13.dequantized.get((e * R13 + r) * p.H + k) * p.hidden.get(m * p.H + k);
        h[r] = s;
      }
      for (int64_t j = 0; j < p.I; ++j)
        a[j] = ideal_act(p.options, h[j], gated(p.options.activation) ? h[p.I + j] : 1.0);
      for (int64_t n = 0; n < p.H; ++n) {
        double s = present(p.w2.bias) ? p.w2.bias.get(e * p.H + n) : 0.0;
        for (int64_t j = 0; j < p.I; ++j) s += p.w2.dequantized.get((e * p.H + n) * p.I + j) * a[j];
        acc[n] += w * s;
      }
    }
    for (int64_t n = 0; n < p.H; ++n) out.set(m * p.H + n, p.options.routed_scaling_factor * acc[n]);
  }
  return out;
}

inline void run_oracle(const MoeProblem& p, HostTensor& out, TensorView rows = {}) {
  reference::fused_experts(p.hidden.view(), p.w13.view(), p.w2.view(), p.topk_weights.view(),
                           p.topk_ids.view(), out.view(), p.options, rows);
}

// Per-row cpu-moe.md 9.2 ideal metric: worst calc_diff over rows and worst |y - r| / rms(r_row).
// The per-element error first loses the unavoidable half ulp of the output dtype at r
// (|r| * 2^-8 for bf16, 2^-11 for fp16): a row whose largest entries are 3 rms would otherwise
// exceed 1e-2 * rms from the final rounding alone.
struct RowMetrics {
  double worst_calc_diff = 0, worst_abs_over_rms = 0;
};

inline RowMetrics row_metrics(const HostTensor& y, const HostTensor& r, int64_t M, int64_t H) {
  const double half_ulp = y.dtype() == DType::kFloat16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
  RowMetrics m;
  for (int64_t i = 0; i < M; ++i) {
    double sxy = 0, sxx = 0, syy = 0, worst = 0;
    for (int64_t n = 0; n < H; ++n) {
      const double a = y.get(i * H + n), b = r.get(i * H + n);
      sxy += a * b;
      sxx += a * a;
      syy += b * b;
      worst = std::max(worst, std::max(0.0, std::fabs(a - b) - half_ulp * std::fabs(b)));
    }
    if (syy == 0) continue;
    m.worst_calc_diff = std::max(m.worst_calc_diff, 1 - 2 * sxy / (sxx + syy));
    m.worst_abs_over_rms = std::max(m.worst_abs_over_rms, worst / std::sqrt(syy / H));
  }
  return m;
}

}  // namespace moekit::test
