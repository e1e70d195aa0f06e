// The expert-layer oracle (include/moekit/experts.h): plain loops over the selected token rows and
// their experts, fp64 (int64) dot products, and exactly the rounding points of cpu-moe.md 4.11:
//
//   x --Q1--> GEMM-1 (+b1) --fp32--R0--> act, * up --R1--> a --Q2--> GEMM-2 (+b2) --fp32--R1b-->
//   d --R2: round(w * d)--> y_t --R3: round(rsf * sum_t y_t)--> out
//
// Q1/Q2 (activation quantisation) and R0/R1b depend on the scheme (see Scheme below); R1, R2 and
// R3 apply to every scheme. Parallelism is over the output rows of each GEMM only: every value is
// one fixed-order sum, so the result does not depend on the thread count.
#include <cmath>
#include <vector>

#include "common/checks.h"
#include "common/host_values.h"
#include "common/numeric.h"
#include "common/parallel.h"
#include "experts/quant_math.h"
#include "experts/validate.h"
#include "moekit/experts.h"

namespace moekit::reference {
namespace {

using detail::ceil_div;

// How a scheme feeds its GEMMs and where it rounds.
enum class Operand { kFloat, kInt8 };  // GEMM input: decoded floats, or int8 codes + row scale

struct SchemeTraits {
  Operand operand;
  bool round_gemm1;  // R0
  bool round_gemm2;  // R1b
};

SchemeTraits traits_of(WeightScheme s) {
  switch (s) {
    case WeightScheme::kBF16: return {Operand::kFloat, false, false};
    case WeightScheme::kInt8W8A8: return {Operand::kInt8, false, false};
    case WeightScheme::kInt4W4A8: return {Operand::kInt8, true, false};
    case WeightScheme::kFP8BlockW8A8:
    case WeightScheme::kFP8BlockW8A16:
    case WeightScheme::kNVFP4:
    case WeightScheme::kMXFP8:
    case WeightScheme::kMXFP4: return {Operand::kFloat, true, true};
  }
  return {Operand::kFloat, false, false};
}

// RNE to the activation dtype (bf16 or fp16).
float round_to(DType dtype, float v) {
  return dtype == DType::kFloat16 ? numeric::round_half(v) : numeric::round_bf16(v);
}

// Exact decode tables.
struct Tables {
  double e4m3[256];
  double e2m1[16];
  Tables() {
    for (int i = 0; i < 256; ++i) e4m3[i] = numeric::e4m3_to_float(static_cast<uint8_t>(i));
    for (int i = 0; i < 16; ++i) e2m1[i] = numeric::e2m1_to_float(static_cast<uint8_t>(i));
  }
};
const Tables& tables() {
  static const Tables t;
  return t;
}

// One GEMM input row after Q1/Q2: kFloat -> `value` (dequantised, exact in fp64; NVFP4 without the
// 1/global_scale, which goes into `nvfp4_global_scale`); kInt8 -> `q` and `scale`.
struct ActivationRow {
  std::vector<double> value;
  std::vector<int8_t> q;
  float scale = 1.f;
  float nvfp4_global_scale = 1.f;
};

// One projection (w13 or w2) of every expert: R rows of C inputs.
struct Projection {
  const ExpertWeights& w;
  const FusedExpertsOptions& options;
  DType act_dtype;
  int64_t R, C;

  // Q1 / Q2: quantise the fp32 row x[C] as the scheme's GEMM input for expert e.
  void prepare(const float* x, int64_t e, ActivationRow& a) const {
    const Tables& t = tables();
    switch (options.scheme) {
      case WeightScheme::kInt8W8A8:
      case WeightScheme::kInt4W4A8:
        a.q.resize(C);
        a.scale = detail::quantize_int8_row(x, C, a.q.data());
        return;
      default: break;
    }
    a.value.resize(C);
    std::vector<uint8_t> q(C);
    switch (options.scheme) {
      case WeightScheme::kFP8BlockW8A8:
        for (int64_t k0 = 0; k0 < C; k0 += options.block_k) {
          const int64_t n = std::min<int64_t>(options.block_k, C - k0);
          const double s = detail::quantize_fp8_group(x + k0, n, detail::kFp8ActivationEps, &q[k0]);
          for (int64_t k = k0; k < k0 + n; ++k) a.value[k] = t.e4m3[q[k]] * s;
        }
        return;
      case WeightScheme::kMXFP8:
        for (int64_t k0 = 0; k0 < C; k0 += detail::kMxGroup) {
          const int64_t n = std::min<int64_t>(detail::kMxGroup, C - k0);
          const double s = numeric::e8m0_to_float(detail::quantize_mxfp8_group(x + k0, n, &q[k0]));
          for (int64_t k = k0; k < k0 + n; ++k) a.value[k] = t.e4m3[q[k]] * s;
        }
        return;
      case WeightScheme::kNVFP4: {
        a.nvfp4_global_scale = w.input_global_scale.ptr<float>()[e];
        for (int64_t k0 = 0; k0 < C; k0 += detail::kNvfp4Group) {
          const int64_t n = std::min<int64_t>(detail::kNvfp4Group, C - k0);
          const double sf =
              t.e4m3[detail::quantize_nvfp4_group(x + k0, n, a.nvfp4_global_scale, &q[k0])];
          for (int64_t k = k0; k < k0 + n; ++k) a.value[k] = t.e2m1[q[k]] * sf;
        }
        return;
      }
      default:  // kBF16, kFP8BlockW8A16, kMXFP4: activations as they are
        for (int64_t k = 0; k < C; ++k) a.value[k] = x[k];
        return;
    }
  }

  // Weight row (e, r) decoded to fp64 (float-operand schemes). NVFP4 leaves out 1/global_scale.
  void decode_row(int64_t e, int64_t r, double* out) const {
    const Tables& t = tables();
    const int64_t row = e * R + r;
    const int64_t width = detail::packed_cols(options.scheme, C);
    const uint8_t* wb = static_cast<const uint8_t*>(w.weight.data) + row * width * dtype_size(w.weight.dtype);
    switch (options.scheme) {
      case WeightScheme::kBF16: {
        const uint16_t* h = w.weight.ptr<uint16_t>() + row * C;
        if (act_dtype == DType::kFloat16)
          for (int64_t k = 0; k < C; ++k) out[k] = numeric::half_to_float(h[k]);
        else
          for (int64_t k = 0; k < C; ++k) out[k] = numeric::bf16_to_float(h[k]);
        return;
      }
      case WeightScheme::kFP8BlockW8A8:
      case WeightScheme::kFP8BlockW8A16: {
        const int64_t bk = options.block_k;
        const float* s = w.scale.ptr<float>() + (e * ceil_div(R, options.block_n) + r / options.block_n) * ceil_div(C, bk);
        for (int64_t k0 = 0, b = 0; k0 < C; k0 += bk, ++b) {
          const int64_t k1 = std::min(C, k0 + bk);
          if (options.fp8_round_dequantized_weights) {  // mode (B): round(dec(W) * S), product in fp32
            for (int64_t k = k0; k < k1; ++k) out[k] = round_to(act_dtype, static_cast<float>(t.e4m3[wb[k]]) * s[b]);
          } else {
            const double sb = s[b];
            for (int64_t k = k0; k < k1; ++k) out[k] = t.e4m3[wb[k]] * sb;
          }
        }
        return;
      }
      case WeightScheme::kNVFP4:
      case WeightScheme::kMXFP8:
      case WeightScheme::kMXFP4: {
        const bool nv = options.scheme == WeightScheme::kNVFP4, fp4 = options.scheme != WeightScheme::kMXFP8;
        const int64_t group = nv ? detail::kNvfp4Group : detail::kMxGroup;
        const uint8_t* sc = static_cast<const uint8_t*>(w.scale.data) + row * ceil_div(C, group);
        for (int64_t k0 = 0, b = 0; k0 < C; k0 += group, ++b) {
          const int64_t k1 = std::min(C, k0 + group);
          const double sb = nv ? t.e4m3[sc[b]] : static_cast<double>(numeric::e8m0_to_float(sc[b]));
          if (fp4) {  // groups start at even k: two codes per byte
            int64_t k = k0;
            for (; k + 1 < k1; k += 2) {
              const uint8_t byte = wb[k >> 1];
              out[k] = t.e2m1[byte & 0xf] * sb;
              out[k + 1] = t.e2m1[byte >> 4] * sb;
            }
            if (k < k1) out[k] = t.e2m1[wb[k >> 1] & 0xf] * sb;
          } else
            for (int64_t k = k0; k < k1; ++k) out[k] = t.e4m3[wb[k]] * sb;
        }
        return;
      }
      default: return;
    }
  }

  // out[r] = fp32(W[e] . a (+ bias)) for r < R: one fp64 / int64 sum per output, scales in fp64.
  void gemm(int64_t e, const ActivationRow& a, float* out) const {
    const double* bias = nullptr;
    std::vector<double> bias64;
    if (w.bias.defined()) {
      bias64.assign(w.bias.ptr<float>() + e * R, w.bias.ptr<float>() + (e + 1) * R);
      bias = bias64.data();
    }
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(C, 1));
    switch (options.scheme) {
      case WeightScheme::kInt8W8A8:
        detail::parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
          const float* s = w.scale.ptr<float>() + e * R;
          for (int64_t r = r0; r < r1; ++r) {
            const int8_t* wq = w.weight.ptr<int8_t>() + (e * R + r) * C;
            int64_t acc = 0;
            for (int64_t k = 0; k < C; ++k) acc += int64_t{a.q[k]} * wq[k];
            double v = static_cast<double>(acc) * a.scale * s[r];
            out[r] = static_cast<float>(bias ? v + bias[r] : v);
          }
        });
        return;
      case WeightScheme::kInt4W4A8:
        detail::parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
          const int64_t g = options.group_size, groups = C / g, width = ceil_div(C, 2);
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t row = e * R + r;
            const uint8_t* wq = w.weight.ptr<uint8_t>() + row * width;
            const float* s = w.scale.ptr<float>() + row * groups;
            const uint8_t* z = w.zero.ptr<uint8_t>() + row * groups;
            double v = 0;
            for (int64_t gi = 0; gi < groups; ++gi) {
              int64_t p = 0;  // sum qx * (q - z) over the group, exact
              const int32_t zp = z[gi];
              int64_t k = gi * g;
              if ((k & 1) == 0)
                for (; k + 1 < (gi + 1) * g; k += 2) {
                  const uint8_t byte = wq[k >> 1];
                  p += int32_t{a.q[k]} * ((byte & 0xf) - zp) + int32_t{a.q[k + 1]} * ((byte >> 4) - zp);
                }
              for (; k < (gi + 1) * g; ++k) p += int32_t{a.q[k]} * (detail::nibble(wq, k) - zp);
              v += static_cast<double>(p) * s[gi];
            }
            v *= a.scale;
            out[r] = static_cast<float>(bias ? v + bias[r] : v);
          }
        });
        return;
      default: break;
    }
    // NVFP4: alpha = 1 / (gs_a * gs_w) in fp32, as the GPU grouped GEMM's `alphas`.
    const double alpha = options.scheme == WeightScheme::kNVFP4
                             ? static_cast<double>(1.f / (a.nvfp4_global_scale * w.global_scale.ptr<float>()[e]))
                             : 1.0;
    detail::parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
      std::vector<double> wrow(C);
      for (int64_t r = r0; r < r1; ++r) {
        decode_row(e, r, wrow.data());
        double acc[4] = {0, 0, 0, 0};
        int64_t k = 0;
        for (; k + 4 <= C; k += 4)
          for (int j = 0; j < 4; ++j) acc[j] += a.value[k + j] * wrow[k + j];
        for (; k < C; ++k) acc[0] += a.value[k] * wrow[k];
        double v = ((acc[0] + acc[1]) + (acc[2] + acc[3])) * alpha;
        out[r] = static_cast<float>(bias ? v + bias[r] : v);
      }
    });
  }
};

// x * sigmoid(alpha * x) in fp64, -> -0/+0 where the sigmoid underflows to 0 (x = -inf).
double x_sigmoid(double x, double alpha) {
  const double s = 1.0 / (1.0 + std::exp(-alpha * x));
  return s == 0.0 ? std::copysign(0.0, x) : x * s;
}

double gelu_erf(double v) {
  const double cdf = 0.5 * (1.0 + std::erf(v * 0.70710678118654752440));
  return cdf == 0.0 ? std::copysign(0.0, v) : v * cdf;
}

double gelu_tanh(double v) {
  const double c = 0.79788456080286535588;  // sqrt(2 / pi)
  const double cdf = 0.5 * (1.0 + std::tanh(c * (v + 0.044715 * v * v * v)));
  return cdf == 0.0 ? std::copysign(0.0, v) : v * cdf;
}

// R1: a[j] = round(float(act(gate_j)) * up_j), h = GEMM-1 output (after R0 where it applies).
void activate(const FusedExpertsOptions& o, DType dtype, const float* h, int64_t I, float* a) {
  for (int64_t j = 0; j < I; ++j) {
    const float g = h[j];
    float v;
    switch (o.activation) {
      case Activation::kSiluAndMul: v = static_cast<float>(x_sigmoid(g, 1.0)) * h[I + j]; break;
      case Activation::kGeluAndMul: v = static_cast<float>(gelu_erf(g)) * h[I + j]; break;
      case Activation::kGeluTanhAndMul: v = static_cast<float>(gelu_tanh(g)) * h[I + j]; break;
      case Activation::kSwigluOai: {
        const float limit = o.swiglu_limit;
        const float gc = g > limit ? limit : g;  // NaN stays NaN
        float uc = h[I + j];
        uc = uc > limit ? limit : (uc < -limit ? -limit : uc);
        v = static_cast<float>(x_sigmoid(gc, o.swiglu_alpha)) * (uc + 1.f);
        break;
      }
      case Activation::kSilu: v = static_cast<float>(x_sigmoid(g, 1.0)); break;
      case Activation::kGelu: v = static_cast<float>(gelu_erf(g)); break;
      default: v = 0.f; break;
    }
    a[j] = round_to(dtype, v);
  }
}

// One token row through one expert: x[H] -> d[H] (GEMM-2 output after R1b; no routing weight).
struct ExpertMlp {
  Projection w13, w2;
  SchemeTraits traits;
  const FusedExpertsOptions& options;
  DType dtype;
  int64_t H, I;

  void run(const float* x, int64_t e, float* d) const {
    ActivationRow in;
    std::vector<float> h(w13.R), a(I);
    w13.prepare(x, e, in);  // Q1
    w13.gemm(e, in, h.data());
    if (traits.round_gemm1)  // R0
      for (float& v : h) v = round_to(dtype, v);
    if (options.gate_up_interleaved) {  // rows 2j, 2j+1 -> gate_j = h[j], up_j = h[I + j]
      const std::vector<float> rows = h;
      for (int64_t j = 0; j < I; ++j) {
        h[j] = rows[2 * j];
        h[I + j] = rows[2 * j + 1];
      }
    }
    activate(options, dtype, h.data(), I, a.data());  // R1
    w2.prepare(a.data(), e, in);                      // Q2
    w2.gemm(e, in, d);
    if (traits.round_gemm2)  // R1b
      for (int64_t n = 0; n < H; ++n) d[n] = round_to(dtype, d[n]);
  }
};

ExpertMlp make_mlp(const ExpertWeights& w13, const ExpertWeights& w2, const FusedExpertsOptions& o,
                   DType dtype, const detail::ExpertDims& d) {
  return ExpertMlp{Projection{w13, o, dtype, d.w13_rows, d.H}, Projection{w2, o, dtype, d.H, d.I},
                   traits_of(o.scheme), o, dtype, d.H, d.I};
}

void load_row(const TensorView& t, int64_t row, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(detail::load_value(t, row * n + i));
}

void store_row(const TensorView& t, int64_t row, int64_t n, const float* v) {
  for (int64_t i = 0; i < n; ++i) detail::store_value(t, row * n + i, v[i]);
}

// Host values that the shape checks cannot see.
void check_weight_values(const ExpertWeights& w, const char* name, WeightScheme scheme) {
  if (scheme == WeightScheme::kInt4W4A8) detail::check_int4_zero_values(w.zero, name);
}

}  // namespace

void fused_experts(TensorView hidden, const ExpertWeights& w13, const ExpertWeights& w2,
                   TensorView topk_weights, TensorView topk_ids, TensorView output,
                   const FusedExpertsOptions& options, TensorView rows) {
  const Device cpu{};
  const detail::ExpertDims d =
      detail::validate_fused_experts(hidden, w13, w2, topk_weights, topk_ids, output, options, cpu);
  detail::check_topk_id_values(topk_ids, d.E);
  if (rows.defined()) detail::validate_rows(rows, d.M, cpu);
  check_weight_values(w13, "w13.zero", options.scheme);
  check_weight_values(w2, "w2.zero", options.scheme);
  if (d.M == 0) return;

  const ExpertMlp mlp = make_mlp(w13, w2, options, hidden.dtype, d);
  const float rsf = static_cast<float>(options.routed_scaling_factor);
  const int64_t count = rows.defined() ? rows.shape[0] : d.M;
  std::vector<float> x(d.H), y(d.H), sum(d.H);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t m = rows.defined() ? rows.ptr<int32_t>()[i] : i;
    load_row(hidden, m, d.H, x.data());
    std::fill(sum.begin(), sum.end(), 0.f);
    for (int64_t t = 0; t < d.topk; ++t) {
      const int64_t flat = m * d.topk + t;
      const int64_t e = topk_ids.dtype == DType::kInt32 ? topk_ids.ptr<int32_t>()[flat]
                                                        : topk_ids.ptr<int64_t>()[flat];
      if (e < 0) continue;  // dropped slot
      const float weight = static_cast<float>(detail::load_value(topk_weights, flat));
      mlp.run(x.data(), e, y.data());
      for (int64_t n = 0; n < d.H; ++n) sum[n] += round_to(hidden.dtype, weight * y[n]);  // R2
    }
    for (int64_t n = 0; n < d.H; ++n) sum[n] = rsf * sum[n];  // R3 (rounded by the store)
    store_row(output, m, d.H, sum.data());
  }
}

void shared_expert(TensorView hidden, const ExpertWeights& w13_in, const ExpertWeights& w2_in,
                   TensorView fused_experts_out, TensorView output,
                   const FusedExpertsOptions& options) {
  const Device cpu{};
  const detail::ExpertDims d = detail::validate_shared_expert(hidden, w13_in, w2_in, fused_experts_out,
                                                              output, options, cpu);
  const ExpertWeights w13 = detail::as_single_expert(w13_in), w2 = detail::as_single_expert(w2_in);
  check_weight_values(w13, "w13.zero", options.scheme);
  check_weight_values(w2, "w2.zero", options.scheme);
  if (d.M == 0) return;

  const ExpertMlp mlp = make_mlp(w13, w2, options, hidden.dtype, d);
  const float rsf = static_cast<float>(options.routed_scaling_factor);
  std::vector<float> x(d.H), dense(d.H), routed(d.H);
  for (int64_t m = 0; m < d.M; ++m) {
    load_row(hidden, m, d.H, x.data());
    if (fused_experts_out.defined()) load_row(fused_experts_out, m, d.H, routed.data());
    mlp.run(x.data(), 0, dense.data());
    if (fused_experts_out.defined())
      for (int64_t n = 0; n < d.H; ++n) dense[n] += routed[n] * rsf;  // fp32, one rounding at the store
    store_row(output, m, d.H, dense.data());
  }
}

}  // namespace moekit::reference
