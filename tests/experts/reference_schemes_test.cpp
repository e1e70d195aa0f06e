// The oracle on every quantised scheme: an exact hand case per scheme (weights encoded exactly with
// power-of-two scales, activations that every quantiser represents exactly, gates where SiLU is
// exact), the fp64 ideal metrics on random data, shared_expert, FP8 mode (B), and scheme errors.
#include <cmath>
#include <functional>

#include "common/numeric.h"
#include "experts/expert_test_util.h"

namespace moekit::test {
namespace {

const WeightScheme kAllSchemes[] = {WeightScheme::kBF16,          WeightScheme::kFP8BlockW8A8,
                                    WeightScheme::kFP8BlockW8A16, WeightScheme::kInt8W8A8,
                                    WeightScheme::kInt4W4A8,      WeightScheme::kNVFP4,
                                    WeightScheme::kMXFP8,         WeightScheme::kMXFP4};

// Smallest power of two 2^j (j in [-12, 12]) for which ok(2^j) holds; fails the test otherwise.
double find_pow2(const std::function<bool(double)>& ok) {
  for (int j = -12; j <= 12; ++j)
    if (ok(std::ldexp(1.0, j))) return std::ldexp(1.0, j);
  ADD_FAILURE() << "no exact power-of-two scale";
  return 1.0;
}

bool exact_e4m3(double v) { return numeric::e4m3_to_float(numeric::float_to_e4m3(static_cast<float>(v))) == v; }
bool exact_e2m1(double v) { return numeric::e2m1_to_float(numeric::float_to_e2m1(static_cast<float>(v))) == v; }

// Encodes master fp32 [E, R, C] exactly in `scheme` (every dequantised value equals the master).
ProjectionTensors encode_exact(WeightScheme scheme, DType act, const HostTensor& m,
                               const FusedExpertsOptions& o, float input_gs) {
  const int64_t E = m.shape()[0], R = m.shape()[1], C = m.shape()[2];
  auto cdiv = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  auto at = [&](int64_t e, int64_t r, int64_t k) { return m.get((e * R + r) * C + k); };
  // Every value of row (e, r), columns [k0, k1), divided by s passes `pred`.
  auto group_ok = [&](int64_t e, int64_t r, int64_t k0, int64_t k1, double s,
                      const std::function<bool(double)>& pred) {
    for (int64_t k = k0; k < std::min(k1, C); ++k)
      if (!pred(at(e, r, k) / s)) return false;
    return true;
  };
  ProjectionTensors p;
  p.dequantized = HostTensor(DType::kFloat32, {E, R, C});
  for (int64_t i = 0; i < m.numel(); ++i) p.dequantized.set(i, m.get(i));
  switch (scheme) {
    case WeightScheme::kBF16:
      p.weight = HostTensor(act, {E, R, C});
      for (int64_t i = 0; i < m.numel(); ++i) p.weight.set(i, m.get(i));
      break;
    case WeightScheme::kFP8BlockW8A8:
    case WeightScheme::kFP8BlockW8A16: {
      const int64_t nb = cdiv(R, o.block_n), kb = cdiv(C, o.block_k);
      p.weight = HostTensor(DType::kFloat8E4M3, {E, R, C});
      p.scale = HostTensor(DType::kFloat32, {E, nb, kb});
      for (int64_t e = 0; e < E; ++e)
        for (int64_t bi = 0; bi < nb; ++bi)
          for (int64_t bj = 0; bj < kb; ++bj) {
            const int64_t r0 = bi * o.block_n, k0 = bj * o.block_k;
            const double s = find_pow2([&](double s) {
              for (int64_t r = r0; r < std::min<int64_t>(R, r0 + o.block_n); ++r)
                if (!group_ok(e, r, k0, k0 + o.block_k, s, exact_e4m3)) return false;
              return true;
            });
            p.scale.set((e * nb + bi) * kb + bj, s);
            for (int64_t r = r0; r < std::min<int64_t>(R, r0 + o.block_n); ++r)
              for (int64_t k = k0; k < std::min<int64_t>(C, k0 + o.block_k); ++k)
                p.weight.set((e * R + r) * C + k, at(e, r, k) / s);
          }
      break;
    }
    case WeightScheme::kInt8W8A8:
      p.weight = HostTensor(DType::kInt8, {E, R, C});
      p.scale = HostTensor(DType::kFloat32, {E, R});
      for (int64_t e = 0; e < E; ++e)
        for (int64_t r = 0; r < R; ++r) {
          const double s = find_pow2([&](double s) {
            return group_ok(e, r, 0, C, s, [](double v) { return v == std::round(v) && std::fabs(v) <= 127; });
          });
          p.scale.set(e * R + r, s);
          for (int64_t k = 0; k < C; ++k) p.weight.set((e * R + r) * C + k, at(e, r, k) / s);
        }
      break;
    case WeightScheme::kInt4W4A8: {
      const int64_t g = o.group_size, G = C / g;
      std::vector<uint8_t> codes(C);
      p.weight = HostTensor(DType::kUInt8, {E, R, cdiv(C, 2)});
      p.scale = HostTensor(DType::kFloat32, {E, R, G});
      p.zero = HostTensor(DType::kUInt8, {E, R, G});
      for (int64_t e = 0; e < E; ++e)
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t gi = 0; gi < G; ++gi) {
            double lo = 0;
            for (int64_t k = gi * g; k < (gi + 1) * g; ++k) lo = std::min(lo, at(e, r, k));
            double z = 0;
            const double s = find_pow2([&](double s) {
              z = -lo / s;
              return z == std::round(z) && z <= 15 && group_ok(e, r, gi * g, (gi + 1) * g, s, [&](double v) {
                       return v == std::round(v) && v + z >= 0 && v + z <= 15;
                     });
            });
            p.scale.set((e * R + r) * G + gi, s);
            p.zero.set((e * R + r) * G + gi, z);
            for (int64_t k = gi * g; k < (gi + 1) * g; ++k)
              codes[k] = static_cast<uint8_t>(at(e, r, k) / s + z);
          }
          for (int64_t j = 0; j < cdiv(C, 2); ++j)
            p.weight.set((e * R + r) * cdiv(C, 2) + j,
                         codes[2 * j] | (2 * j + 1 < C ? codes[2 * j + 1] << 4 : 0));
        }
      break;
    }
    case WeightScheme::kNVFP4:
    case WeightScheme::kMXFP8:
    case WeightScheme::kMXFP4: {
      const bool nv = scheme == WeightScheme::kNVFP4, fp4 = scheme != WeightScheme::kMXFP8;
      const int64_t group = nv ? 16 : 32, G = cdiv(C, group), width = fp4 ? cdiv(C, 2) : C;
      p.weight = HostTensor(fp4 ? DType::kUInt8 : DType::kFloat8E4M3, {E, R, width});
      p.scale = HostTensor(nv ? DType::kFloat8E4M3 : DType::kFloat8E8M0, {E, R, G});
      std::vector<uint8_t> codes(C);
      for (int64_t e = 0; e < E; ++e)
        for (int64_t r = 0; r < R; ++r) {
          for (int64_t gi = 0; gi < G; ++gi) {
            const double s = find_pow2([&](double s) {
              return group_ok(e, r, gi * group, (gi + 1) * group, s, fp4 ? exact_e2m1 : exact_e4m3);
            });
            p.scale.set((e * R + r) * G + gi, s);
            for (int64_t k = gi * group; k < std::min(C, (gi + 1) * group); ++k)
              codes[k] = fp4 ? numeric::float_to_e2m1(static_cast<float>(at(e, r, k) / s))
                             : numeric::float_to_e4m3(static_cast<float>(at(e, r, k) / s));
          }
          for (int64_t j = 0; j < width; ++j)  // raw bytes (set() would encode a value)
            p.weight.ptr<uint8_t>()[(e * R + r) * width + j] = static_cast<uint8_t>(
                fp4 ? (codes[2 * j] | (2 * j + 1 < C ? codes[2 * j + 1] << 4 : 0)) : codes[j]);
        }
      if (nv) {
        p.global_scale = HostTensor(DType::kFloat32, {E});
        p.global_scale.fill(1.0);
        p.input_global_scale = HostTensor(DType::kFloat32, {E});
        p.input_global_scale.fill(input_gs);
      }
      break;
    }
  }
  return p;
}

HostTensor make(DType dtype, std::vector<int64_t> shape, std::initializer_list<double> v) {
  HostTensor t(dtype, std::move(shape));
  int64_t i = 0;
  for (double x : v) t.set(i++, x);
  return t;
}

// E = 2, H = 4, I = 2. x rows hold only {0, +-c}, so int8 (amax/127), FP8 (amax/448), MX and
// NVFP4 (input global scale 3 for GEMM-1, 1 for GEMM-2) quantise them exactly; every gate is 0,
// >= 40 or <= -128 (SiLU exact), and each intermediate a = [A, 0] has A in 6 * e4m3 values.
//   row 0: x = [2, 0, -2, 2]  expert 0: a = [120, -0] d = [120, 0, 240, -120]  * 0.5
//                             expert 1: a = [-192, 0] d = [-96, -192, 0, -576] * 0.25
//   row 1: x = [4, 4, 0, -4]  expert 1: a = [-0, -768] d = [-192, 0, 1536, -2304] * 1; slot -1
//   row 2: x as row 1         expert 0: a = [288, -0] d = [288, 0, 576, -288] * 0.125
//                             expert 1: * 0.25
const double kExpected[3][4] = {{36, -48, 120, -204}, {-192, 0, 1536, -2304}, {-12, 0, 456, -612}};

MoeProblem exact_problem(WeightScheme scheme, DType dtype) {
  FusedExpertsOptions o;
  o.scheme = scheme;
  o.block_n = 2;
  o.block_k = 2;
  o.group_size = 2;
  HostTensor m13 = make(DType::kFloat32, {2, 4, 4},
                        {8, 8, -8, 4, -64, 0, 0, 0, 1.5, 0, 0, 0, 0, 1, 0, 0,  // expert 0
                         0, 0, 0, 32, 0, 32, 0, 0, 0, 0, 1.5, 0, 0, 0, 0, 1.5});
  HostTensor m2 = make(DType::kFloat32, {2, 4, 2}, {1, 0, 0, 2, 2, 0, -1, 3, /**/ 0.5, 0.25, 1, 0, 0, -2, 3, 3});
  MoeProblem p{3, 4, 2, 2, 2,
               make(dtype, {3, 4}, {2, 0, -2, 2, 4, 4, 0, -4, 4, 4, 0, -4}),
               make(DType::kFloat32, {3, 2}, {0.5, 0.25, 1.0, 5.0, 0.125, 0.25}),
               make(DType::kInt32, {3, 2}, {0, 1, 1, -1, 0, 1}),
               encode_exact(scheme, dtype, m13, o, 3.f),
               encode_exact(scheme, dtype, m2, o, 1.f),
               o};
  return p;
}

class ReferenceSchemeExact : public ::testing::TestWithParam<std::tuple<WeightScheme, DType>> {};

TEST_P(ReferenceSchemeExact, HandCase) {
  auto [scheme, dtype] = GetParam();
  MoeProblem p = exact_problem(scheme, dtype);
  HostTensor out(dtype, {3, 4});
  out.poison();
  run_oracle(p, out);
  const HostTensor ideal = ideal_fused_experts(p);
  for (int m = 0; m < 3; ++m)
    for (int n = 0; n < 4; ++n) {
      EXPECT_NEAR(ideal.get(m * 4 + n), kExpected[m][n], 1e-9) << "ideal " << m << "," << n;
      EXPECT_EQ(out.get(m * 4 + n), kExpected[m][n]) << m << "," << n;
    }
  // In place: identical.
  run_oracle(p, p.hidden);
  EXPECT_TRUE(p.hidden.bytes_equal(out));
}

INSTANTIATE_TEST_SUITE_P(Schemes, ReferenceSchemeExact,
                         ::testing::Combine(::testing::ValuesIn(kAllSchemes),
                                            ::testing::Values(DType::kBFloat16, DType::kFloat16)));

TEST(ReferenceSchemeExact, Fp8ModeBAndBiases) {
  MoeProblem p = exact_problem(WeightScheme::kFP8BlockW8A16, DType::kBFloat16);
  p.options.fp8_round_dequantized_weights = true;  // exact weights: mode (B) == mode (A)
  HostTensor out(DType::kBFloat16, {3, 4});
  run_oracle(p, out);
  for (int n = 0; n < 4; ++n) EXPECT_EQ(out.get(n), kExpected[0][n]);
  // A w2 bias of +1 on output 1 of expert 0 adds weight * 1 = 0.5 to row 0 (d before R2).
  p.options.fp8_round_dequantized_weights = false;
  p.w2.bias = HostTensor(DType::kFloat32, {2, 4});
  p.w2.bias.set(1, 1.0);
  run_oracle(p, out);
  EXPECT_EQ(out.get(1), kExpected[0][1] + 0.5);
  EXPECT_EQ(ideal_fused_experts(p).get(1), kExpected[0][1] + 0.5);
}

// Random data vs the fp64 ideal (dequantised weights, no rounding, no activation quantisation).
struct IdealBound {
  WeightScheme scheme;
  double calc_diff;   // per row
  double abs_over_rms;  // per element, beyond the output's half ulp
};

void PrintTo(const IdealBound& b, std::ostream* os) { *os << weight_scheme_name(b.scheme); }

class ReferenceSchemeIdeal : public ::testing::TestWithParam<std::tuple<IdealBound, DType>> {};

TEST_P(ReferenceSchemeIdeal, WithinBounds) {
  auto [b, dtype] = GetParam();
  auto rng = fresh_rng();
  FusedExpertsOptions o;
  o.scheme = b.scheme;
  o.block_n = 32;
  o.block_k = 64;
  o.group_size = 32;
  const int64_t M = 5, H = 128, I = 64, E = 5, k = 3;
  MoeProblem p = make_problem(rng, o, dtype, M, H, I, E, k, /*with_bias=*/true);
  HostTensor out(dtype, {M, H});
  out.poison();
  run_oracle(p, out);
  const RowMetrics r = row_metrics(out, ideal_fused_experts(p), M, H);
  EXPECT_LT(r.worst_calc_diff, b.calc_diff) << weight_scheme_name(b.scheme);
  EXPECT_LE(r.worst_abs_over_rms, b.abs_over_rms) << weight_scheme_name(b.scheme);
}

// Bounds are about twice the worst seen over 150 seeds per case (H = 128, bf16 / fp16 outputs):
// BF16 / FP8 W8A16 / MXFP4 keep activations: calc_diff < 1e-4 as cpu-moe.md 9.2 (seen <= 2.9e-5);
// the per-element 1e-2 rms of 9.2 is not reachable with bf16 rounding at R0/R1/R1b/R2 (seen up to
// 2.6e-2 beyond the output half ulp), so 4e-2. Activation-quantising schemes carry their format's
// noise: INT8 / INT4 (seen 3.1e-4, 0.075), FP8 W8A8 / MXFP8 (e4m3 steps of 2^-4: 4.3e-3, 0.32),
// NVFP4 (e2m1 activations: 4.6e-2, 0.89). These catch gross errors; the exact hand cases above pin
// the semantics.
INSTANTIATE_TEST_SUITE_P(
    Schemes, ReferenceSchemeIdeal,
    ::testing::Combine(::testing::Values(IdealBound{WeightScheme::kBF16, 1e-4, 4e-2},
                                         IdealBound{WeightScheme::kFP8BlockW8A16, 1e-4, 4e-2},
                                         IdealBound{WeightScheme::kMXFP4, 1e-4, 4e-2},
                                         IdealBound{WeightScheme::kInt8W8A8, 2e-3, 0.15},
                                         IdealBound{WeightScheme::kInt4W4A8, 2e-3, 0.15},
                                         IdealBound{WeightScheme::kFP8BlockW8A8, 1e-2, 0.6},
                                         IdealBound{WeightScheme::kMXFP8, 1e-2, 0.6},
                                         IdealBound{WeightScheme::kNVFP4, 0.1, 1.8}),
                       ::testing::Values(DType::kBFloat16, DType::kFloat16)));

// Odd sizes everywhere: partial FP8 blocks (5 x 7), odd packed 4-bit rows, partial MX / NVFP4
// groups, INT4 groups of 3; E = 7 (not a power of two), topk = 1 and topk = E. Short rows (33)
// make the activation-quantisation noise of a row more variable: bounds about 3x the table above.
TEST(ReferenceSchemeIdeal, OddShapes) {
  const IdealBound bounds[] = {{WeightScheme::kFP8BlockW8A16, 1e-4, 4e-2}, {WeightScheme::kMXFP4, 1e-4, 4e-2},
                               {WeightScheme::kInt4W4A8, 4e-3, 0.2},       {WeightScheme::kFP8BlockW8A8, 3e-2, 0.8},
                               {WeightScheme::kMXFP8, 3e-2, 0.8},          {WeightScheme::kNVFP4, 0.3, 2.5}};
  for (const IdealBound& b : bounds)
    for (int64_t k : {1, 7}) {
      auto rng = fresh_rng();
      FusedExpertsOptions o;
      o.scheme = b.scheme;
      o.block_n = 5;
      o.block_k = 7;
      o.group_size = 3;
      const int64_t M = 3, H = 33, I = 21, E = 7;
      MoeProblem p = make_problem(rng, o, DType::kBFloat16, M, H, I, E, k);
      HostTensor out(DType::kBFloat16, {M, H});
      out.poison();
      run_oracle(p, out);
      const RowMetrics r = row_metrics(out, ideal_fused_experts(p), M, H);
      EXPECT_LT(r.worst_calc_diff, b.calc_diff) << weight_scheme_name(b.scheme) << " k " << k;
      EXPECT_LE(r.worst_abs_over_rms, b.abs_over_rms) << weight_scheme_name(b.scheme) << " k " << k;
    }
}

TEST(ReferenceSchemeIdeal, Fp8ModeBStaysClose) {
  auto rng = fresh_rng();
  FusedExpertsOptions o;
  o.scheme = WeightScheme::kFP8BlockW8A16;
  o.block_n = 64;
  o.block_k = 32;
  MoeProblem p = make_problem(rng, o, DType::kBFloat16, 4, 96, 64, 3, 2);
  HostTensor a(DType::kBFloat16, {4, 96}), b(DType::kBFloat16, {4, 96});
  run_oracle(p, a);
  p.options.fp8_round_dequantized_weights = true;
  run_oracle(p, b);
  const RowMetrics r = row_metrics(b, ideal_fused_experts(p), 4, 96);
  EXPECT_LT(r.worst_calc_diff, 1e-4);
  EXPECT_LT(calc_diff(a, b), 1e-4);
}

// shared_expert == the fused oracle with every token on expert 0 at weight 1 (no fused_out);
// with fused_out: round(D + rsf * f) in fp32.
class ReferenceShared : public ::testing::TestWithParam<WeightScheme> {};

TEST_P(ReferenceShared, MatchesSingleExpertAndAddsScaledRouted) {
  MoeProblem p = exact_problem(GetParam(), DType::kBFloat16);
  HostTensor single_ids(DType::kInt32, {3, 1}), ones(DType::kFloat32, {3, 1});
  ones.fill(1.0);
  HostTensor fused(DType::kBFloat16, {3, 4}), shared(DType::kBFloat16, {3, 4});
  reference::fused_experts(p.hidden.view(), p.w13.view(), p.w2.view(), ones.view(), single_ids.view(),
                           fused.view(), p.options);
  // Expert 0 of the hand case as a 3-D [1, R, C] shared expert: slice every tensor.
  auto first = [](const TensorView& t) {
    if (!t.defined()) return t;
    TensorView v = t;
    v.shape[0] = 1;
    return v;
  };
  auto expert0 = [&](const ExpertWeights& w) {
    ExpertWeights s{first(w.weight), first(w.scale), first(w.zero), first(w.global_scale),
                    first(w.input_global_scale), first(w.bias)};
    return s;
  };
  shared.poison();
  reference::shared_expert(p.hidden.view(), expert0(p.w13.view()), expert0(p.w2.view()), {},
                           shared.view(), p.options);
  EXPECT_TRUE(shared.bytes_equal(fused));
  // Row 0 of expert 0 alone: d = [120, 0, 240, -120]; + 16 * f with f = [1, -1, 0.5, 0].
  HostTensor f = make(DType::kBFloat16, {3, 4}, {1, -1, 0.5, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  FusedExpertsOptions o = p.options;
  o.routed_scaling_factor = 16;
  reference::shared_expert(p.hidden.view(), expert0(p.w13.view()), expert0(p.w2.view()), f.view(),
                           f.view(), o);  // output aliases fused_experts_out
  const double want[4] = {136, -16, 248, -120};
  for (int n = 0; n < 4; ++n) EXPECT_EQ(f.get(n), want[n]);
}

INSTANTIATE_TEST_SUITE_P(Schemes, ReferenceShared, ::testing::ValuesIn(kAllSchemes));

TEST(ReferenceShared, TwoDimensionalWeightsAndZeroTokens) {
  HostTensor x = make(DType::kBFloat16, {1, 4}, {2, 0, -2, 2});
  HostTensor w13 = make(DType::kBFloat16, {4, 4}, {8, 8, -8, 4, -64, 0, 0, 0, 1.5, 0, 0, 0, 0, 1, 0, 0});
  HostTensor w2 = make(DType::kBFloat16, {4, 2}, {1, 0, 0, 2, 2, 0, -1, 3});
  HostTensor out(DType::kBFloat16, {1, 4});
  reference::shared_expert(x.view(), {w13.view(), {}, {}, {}, {}, {}}, {w2.view(), {}, {}, {}, {}, {}}, {},
                           out.view(), FusedExpertsOptions{});
  const double want[4] = {120, 0, 240, -120};
  for (int n = 0; n < 4; ++n) EXPECT_EQ(out.get(n), want[n]);
  HostTensor none(DType::kBFloat16, {0, 4});
  reference::shared_expert(none.view(), {w13.view(), {}, {}, {}, {}, {}}, {w2.view(), {}, {}, {}, {}, {}},
                           {}, none.view(), FusedExpertsOptions{});
  HostTensor two(DType::kBFloat16, {2, 4, 4});
  EXPECT_MOEKIT_ERROR(reference::shared_expert(x.view(), {two.view(), {}, {}, {}, {}, {}},
                                               {w2.view(), {}, {}, {}, {}, {}}, {}, out.view(),
                                               FusedExpertsOptions{}),
                      "w13.weight: expected a 2-D [2I, H] or 3-D [1, 2I, H] tensor");
}

TEST(ReferenceSchemeErrors, NameTheTensor) {
  MoeProblem p = exact_problem(WeightScheme::kInt4W4A8, DType::kBFloat16);
  HostTensor out(DType::kBFloat16, {3, 4});
  p.w2.zero.set(3, 16);
  EXPECT_MOEKIT_ERROR(run_oracle(p, out), "w2.zero: expected zero points in 0..15, got 16 at flat index 3");
  p.w2.zero.set(3, 0);
  p.options.group_size = 3;
  EXPECT_MOEKIT_ERROR(run_oracle(p, out), "group_size: expected a divisor of the w13 input size 4, got 3");

  MoeProblem f = exact_problem(WeightScheme::kFP8BlockW8A8, DType::kBFloat16);
  f.options.block_k = 1;
  EXPECT_MOEKIT_ERROR(run_oracle(f, out), "w13.scale: expected shape [2, 2, 4], got [2, 2, 2]");
}

TEST(ReferenceSchemeErrors, MissingAndStrayTensors) {
  MoeProblem n = exact_problem(WeightScheme::kNVFP4, DType::kBFloat16);
  HostTensor out(DType::kBFloat16, {3, 4});
  n.w13.input_global_scale = HostTensor();
  EXPECT_MOEKIT_ERROR(run_oracle(n, out), "w13.input_global_scale: expected a tensor, got none");
  MoeProblem m = exact_problem(WeightScheme::kMXFP4, DType::kBFloat16);
  m.w2.zero = HostTensor(DType::kUInt8, {2, 4, 1});
  EXPECT_MOEKIT_ERROR(run_oracle(m, out), "w2.zero: expected no tensor (scheme mxfp4 does not use it)");
  MoeProblem i = exact_problem(WeightScheme::kInt8W8A8, DType::kBFloat16);
  i.w13.scale = HostTensor(DType::kFloat32, {2, 3});
  EXPECT_MOEKIT_ERROR(run_oracle(i, out), "w13.scale: expected shape [2, 4] or [2, 4, 1], got [2, 3]");
  MoeProblem b = exact_problem(WeightScheme::kBF16, DType::kBFloat16);
  b.options.fp8_round_dequantized_weights = true;
  EXPECT_MOEKIT_ERROR(run_oracle(b, out), "fp8_round_dequantized_weights: expected false");
}

}  // namespace
}  // namespace moekit::test

namespace moekit::test {
namespace {

// A NaN in a token row: schemes that quantise the row (one scale per row or group) turn the whole
// output row to NaN; the other rows stay finite in every scheme.
TEST(ReferenceSchemeEdges, NonFiniteRowStaysInItsRow) {
  for (WeightScheme s : kAllSchemes) {
    MoeProblem p = exact_problem(s, DType::kBFloat16);
    p.hidden.set(4 + 1, std::nan(""));
    HostTensor out(DType::kBFloat16, {3, 4});
    run_oracle(p, out);
    bool any = false;
    for (int n = 0; n < 4; ++n) {
      EXPECT_EQ(out.get(n), kExpected[0][n]) << weight_scheme_name(s);
      EXPECT_EQ(out.get(8 + n), kExpected[2][n]) << weight_scheme_name(s);
      any |= std::isnan(out.get(4 + n));
    }
    EXPECT_TRUE(any) << weight_scheme_name(s);
  }
}

// int64 ids and bf16 / fp16 routing weights are read as their int32 / fp32 equivalents.
TEST(ReferenceSchemeEdges, Int64IdsAndHalfWeights) {
  MoeProblem p = exact_problem(WeightScheme::kInt8W8A8, DType::kFloat16);
  HostTensor ids64(DType::kInt64, {3, 2}), w16(DType::kBFloat16, {3, 2}), out(DType::kFloat16, {3, 4});
  for (int i = 0; i < 6; ++i) {
    ids64.set(i, p.topk_ids.get(i));
    w16.set(i, p.topk_weights.get(i));
  }
  reference::fused_experts(p.hidden.view(), p.w13.view(), p.w2.view(), w16.view(), ids64.view(), out.view(),
                           p.options);
  for (int m = 0; m < 3; ++m)
    for (int n = 0; n < 4; ++n) EXPECT_EQ(out.get(m * 4 + n), kExpected[m][n]);
}

// gpt-oss clamped SwiGLU by hand: g = 10 > limit 7 -> 7; u = -9 -> -7;
// a = round(float(7 * sigmoid(1.702 * 7)) * (-7 + 1)).
TEST(ReferenceSchemeEdges, SwigluOaiClamps) {
  HostTensor x = make(DType::kBFloat16, {1, 2}, {1, 1});
  HostTensor w13 = make(DType::kBFloat16, {1, 2, 2}, {10, 0, 0, -9});
  HostTensor w2 = make(DType::kBFloat16, {1, 2, 1}, {1, 0.5});
  HostTensor ids = make(DType::kInt32, {1, 1}, {0}), w = make(DType::kFloat32, {1, 1}, {1});
  HostTensor out(DType::kBFloat16, {1, 2});
  FusedExpertsOptions o;
  o.activation = Activation::kSwigluOai;
  o.swiglu_alpha = 1.702f;
  o.swiglu_limit = 7.f;
  reference::fused_experts(x.view(), {w13.view(), {}, {}, {}, {}, {}}, {w2.view(), {}, {}, {}, {}, {}}, w.view(),
                           ids.view(), out.view(), o);
  const double sig = 1.0 / (1.0 + std::exp(-double{1.702f} * 7.0));
  const float a = numeric::round_bf16(static_cast<float>(7.0 * sig) * -6.f);
  EXPECT_EQ(out.get(0), a);
  EXPECT_EQ(out.get(1), numeric::round_bf16(a * 0.5f));
}

}  // namespace
}  // namespace moekit::test
