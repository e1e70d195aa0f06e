// CPU fused experts (BF16/FP16): packing, fused_experts_cpu and shared_expert_cpu against the oracle
// on every ISA path this machine supports (forced one at a time), plus determinism and errors.
#include <cmath>
#include <cstring>
#include <tuple>

#include "common/numeric.h"
#include "common/test_util.h"
#include "moekit/cpu.h"
#include "moekit/cpu_experts.h"
#include "moekit/experts.h"

namespace moekit::test {
namespace {

struct IsaScope {  // restores the best path when a test ends (also on failure)
  ~IsaScope() { set_cpu_isa(best_cpu_isa()); }
};

HostTensor pack(const HostTensor& w, PackedRole role, W13Source source = W13Source::kHalves) {
  HostTensor p(DType::kUInt8, {static_cast<int64_t>(packed_weight_bytes(w.view(), role))});
  p.poison();
  pack_moe_weights(w.view(), role, p.view(), source);
  return p;
}

double ulp_of(double r, DType dtype) {
  const int mant = dtype == DType::kBFloat16 ? 7 : 10;
  const int min_exp = dtype == DType::kBFloat16 ? -126 : -14;
  int e = r == 0 ? min_exp : std::max(min_exp, static_cast<int>(std::floor(std::log2(std::fabs(r)))));
  return std::ldexp(1.0, e - mant);
}

// Spec 9.2: |y - r| <= 2 ulp(r) + 1e-3 rms(r_row) per element, calc_diff < 1e-5 per row. The fast
// paths accumulate in fp32 where the oracle uses fp64, so a value that lies near a rounding point
// can round the other way; `allowance` (per element, see rounding_allowance) adds what such
// one-ulp flips can move an output, and the calc_diff test allows its sum of squares too:
// - R2 (k > 1): y_t is rounded before the slot sum, so a flip moves the result by ulp(y_t), which
//   exceeds the spec's bound when the slots cancel;
// - R1: a flip of one activation a_j moves every output of its row by ulp(a_j) * |W2[n, j]|, which
//   passes 1e-3 rms on many elements when I is small (one a_j weighs much in the row).
// Beyond that a few elements (at most 0.1% of them, at least one) may exceed the bound B, none 4 B.
::testing::AssertionResult MatchesOracle(const HostTensor& y, const HostTensor& r, int64_t K,
                                         const std::vector<double>& allowance = {}) {
  const int64_t M = r.numel() / K;
  int64_t over = 0;
  for (int64_t m = 0; m < M; ++m) {
    double ss = 0, sab = 0, saa = 0, sbb = 0, sdd = 0, sallow = 0;
    for (int64_t n = 0; n < K; ++n) ss += r.get(m * K + n) * r.get(m * K + n);
    const double rms = std::sqrt(ss / K);
    for (int64_t n = 0; n < K; ++n) {
      const double a = y.get(m * K + n), b = r.get(m * K + n);
      if (std::isnan(b) || std::isnan(a)) {
        if (std::isnan(a) != std::isnan(b)) return ::testing::AssertionFailure() << describe_mismatch(y, r, m * K + n);
        continue;
      }
      const double slack = allowance.empty() ? 0.0 : allowance[m * K + n];
      const double bound = 2 * ulp_of(b, r.dtype()) + 1e-3 * rms + slack;
      if (!(std::fabs(a - b) <= bound)) ++over;
      if (!(std::fabs(a - b) <= 4 * bound) || over > std::max<int64_t>(1, M * K / 1000))
        return ::testing::AssertionFailure() << "row " << m << " col " << n << ": " << describe_mismatch(y, r, m * K + n)
                                             << " (row rms " << rms << ", slot allowance " << slack << ")";
      sab += a * b;
      saa += a * a;
      sbb += b * b;
      sdd += (a - b) * (a - b);
      sallow += slack * slack;
    }
    // calc_diff * (saa + sbb) is the squared distance sdd.
    if (saa + sbb > 1e-12 * K && sdd >= 1e-5 * (saa + sbb) + sallow)
      return ::testing::AssertionFailure() << "row " << m << ": calc_diff " << 1 - 2 * sab / (saa + sbb);
  }
  return ::testing::AssertionSuccess();
}

// What one flipped R1 activation of token row m through expert e ([E, 2I, H] w13, [E, H, I] w2, or
// one expert's [2I, H] / [H, I] with e = 0) can move each of its outputs: max over j of
// ulp(A_j) * |W2[e, n, j]|, with A_j >= |a_j| bounded from the exact gate g and up u (|act(g)| <=
// max(|g|, 0.3) for every gated activation here; swiglu_oai multiplies by u + 1).
void r1_flip(const HostTensor& x, int64_t m, const HostTensor& w13, const HostTensor& w2, int64_t e, Activation act,
             std::vector<double>& flip) {
  const int64_t K = x.shape().back(), N = w2.shape().back();
  std::vector<double> ulp_a(N);
  for (int64_t j = 0; j < N; ++j) {
    double g = 0, u = 0;
    for (int64_t kk = 0; kk < K; ++kk) {
      g += x.get(m * K + kk) * w13.get((e * 2 * N + j) * K + kk);
      u += x.get(m * K + kk) * w13.get((e * 2 * N + N + j) * K + kk);
    }
    const double up = std::fabs(u) + (act == Activation::kSwigluOai ? 1.0 : 0.0);
    ulp_a[j] = ulp_of(std::max(std::fabs(g), 0.3) * up, x.dtype());
  }
  flip.assign(K, 0.0);
  for (int64_t n = 0; n < K; ++n)
    for (int64_t j = 0; j < N; ++j) flip[n] = std::max(flip[n], ulp_a[j] * std::fabs(w2.get((e * K + n) * N + j)));
}

struct MoeCase {
  int64_t M, K, N, E, k;
  DType dtype;
  HostTensor x, w13, w2, weights, ids;

  MoeCase(std::mt19937_64& rng, int64_t M_, int64_t K_, int64_t N_, int64_t E_, int64_t k_, DType dt)
      : M(M_), K(K_), N(N_), E(E_), k(k_), dtype(dt), x(dt, {M_, K_}), w13(dt, {E_, 2 * N_, K_}), w2(dt, {E_, K_, N_}),
        weights(DType::kFloat32, {M_, k_}), ids(DType::kInt32, {M_, k_}) {
    x.fill_normal(rng);
    w13.fill_normal(rng, 0, 1 / std::sqrt(static_cast<double>(K)));
    w2.fill_normal(rng, 0, 1 / std::sqrt(static_cast<double>(N)));
    weights.fill_uniform(rng, -0.5, 1.5);
    // Distinct experts per row (k <= E), random order.
    for (int64_t m = 0; m < M; ++m) {
      std::vector<int32_t> perm(E);
      for (int64_t e = 0; e < E; ++e) perm[e] = static_cast<int32_t>(e);
      std::shuffle(perm.begin(), perm.end(), rng);
      for (int64_t t = 0; t < k; ++t) ids.ptr<int32_t>()[m * k + t] = perm[t];
    }
  }

  HostTensor oracle(const FusedExpertsOptions& options = {}) const {
    HostTensor r(dtype, {M, K});
    r.poison();
    ExpertWeights a, b;
    a.weight = w13.view();
    b.weight = w2.view();
    reference::fused_experts(x.view(), a, b, weights.view(), ids.view(), r.view(), options);
    return r;
  }

  // Per element (see MatchesOracle), |rsf| * sum over valid slots of: ulp(y_t) when k > 1 (R2), plus
  // |w_t| * r1_flip (one R1 flip per (token, slot) row).
  std::vector<double> rounding_allowance(const FusedExpertsOptions& options = {}) const {
    std::vector<double> out(M * K, 0.0);
    if (M == 0) return out;
    FusedExpertsOptions one = options;
    one.routed_scaling_factor = 1.0;
    ExpertWeights a, b;
    a.weight = w13.view();
    b.weight = w2.view();
    HostTensor ids1(DType::kInt32, {M, 1}), w1(DType::kFloat32, {M, 1}), y(dtype, {M, K});
    std::vector<double> flip(K);
    const double rsf = std::fabs(options.routed_scaling_factor);
    for (int64_t t = 0; t < k; ++t) {
      for (int64_t m = 0; m < M; ++m) {
        ids1.set(m, ids.get(m * k + t));
        w1.set(m, weights.get(m * k + t));
      }
      if (k > 1) {
        reference::fused_experts(x.view(), a, b, w1.view(), ids1.view(), y.view(), one);
        for (int64_t i = 0; i < M * K; ++i) out[i] += rsf * ulp_of(y.get(i), dtype);
      }
      for (int64_t m = 0; m < M; ++m) {
        const int64_t e = static_cast<int64_t>(ids1.get(m));
        if (e < 0) continue;
        r1_flip(x, m, w13, w2, e, options.activation, flip);
        for (int64_t n = 0; n < K; ++n) out[m * K + n] += rsf * std::fabs(w1.get(m)) * flip[n];
      }
    }
    return out;
  }
};

HostTensor run_fused(const MoeCase& c, const HostTensor& p13, const HostTensor& p2, const FusedExpertsOptions& o = {},
                     CpuRunConfig run = {}) {
  HostTensor y(c.dtype, {c.M, c.K});
  y.poison();
  fused_experts_cpu(c.x.view(), p13.view(), p2.view(), c.weights.view(), c.ids.view(), y.view(), o, run);
  return y;
}

// ---- packing ----

TEST(CpuPack, HandLayout) {
  // W13 with I = 2, C = 3: gate rows 0,1 -> block 0 rows 0,1; up rows 2,3 -> block 1 rows 0,1.
  HostTensor w(DType::kBFloat16, {4, 3});
  for (int i = 0; i < 12; ++i) w.set(i, i + 1);
  HostTensor p = pack(w, PackedRole::kW13);
  const PackedWeightInfo info = packed_weight_info(p.view());
  EXPECT_EQ(info.rows_padded, 64);
  EXPECT_EQ(info.cols_padded, 32);
  EXPECT_EQ(info.data_offset % 64, 0);
  const uint16_t* d = reinterpret_cast<const uint16_t*>(p.ptr<unsigned char>() + info.data_offset);
  auto at = [&](int block, int i, int kk) { return numeric::bf16_to_float(d[block * 32 * 32 + (kk / 2) * 64 + 2 * i + kk % 2]); };
  EXPECT_EQ(at(0, 0, 0), 1);   // gate row 0, col 0
  EXPECT_EQ(at(0, 1, 2), 6);   // gate row 1, col 2
  EXPECT_EQ(at(1, 0, 1), 8);   // up row 0 (logical row 2), col 1
  EXPECT_EQ(at(1, 1, 2), 12);  // up row 1, col 2
  EXPECT_EQ(at(0, 2, 0), 0);   // pad row
  EXPECT_EQ(at(1, 0, 3), 0);   // pad column
}

class CpuPackRoundTrip : public ::testing::TestWithParam<std::tuple<DType, PackedRole, int64_t, int64_t, int64_t>> {};

TEST_P(CpuPackRoundTrip, UnpackRestoresEveryByte) {
  auto [dtype, role, E, R, C] = GetParam();
  auto rng = fresh_rng();
  for (W13Source source : {W13Source::kHalves, W13Source::kInterleaved}) {
    if (role != PackedRole::kW13 && source == W13Source::kInterleaved) continue;
    HostTensor w(dtype, {E, R, C});
    w.fill_normal(rng);
    HostTensor p = pack(w, role, source);
    const PackedWeightInfo info = packed_weight_info(p.view());
    EXPECT_EQ(static_cast<int64_t>(p.nbytes()), info.total_bytes);
    EXPECT_EQ(info.experts, E);
    EXPECT_EQ(info.rows, R);
    EXPECT_EQ(info.cols, C);
    EXPECT_EQ(info.dtype, dtype);
    HostTensor back(dtype, {E, R, C});
    back.poison();
    unpack_moe_weights(p.view(), back.view());
    EXPECT_TRUE(back.bytes_equal(w));
    // Pack is deterministic, including every pad byte.
    EXPECT_TRUE(pack(w, role, source).bytes_equal(p));
  }
}

INSTANTIATE_TEST_SUITE_P(Grid, CpuPackRoundTrip,
                         ::testing::Combine(::testing::Values(DType::kBFloat16, DType::kFloat16),
                                            ::testing::Values(PackedRole::kW13, PackedRole::kW2, PackedRole::kDense),
                                            ::testing::Values<int64_t>(1, 3), ::testing::Values<int64_t>(2, 62, 64, 98),
                                            ::testing::Values<int64_t>(1, 31, 33, 64)));

TEST(CpuPack, InterleavedEqualsHalves) {
  auto rng = fresh_rng();
  const int64_t I = 37, C = 20;
  HostTensor halves(DType::kBFloat16, {2, 2 * I, C}), inter(DType::kBFloat16, {2, 2 * I, C});
  halves.fill_normal(rng);
  for (int64_t e = 0; e < 2; ++e)
    for (int64_t j = 0; j < I; ++j)
      for (int64_t c = 0; c < C; ++c) {
        inter.set((e * 2 * I + 2 * j) * C + c, halves.get((e * 2 * I + j) * C + c));
        inter.set((e * 2 * I + 2 * j + 1) * C + c, halves.get((e * 2 * I + I + j) * C + c));
      }
  HostTensor a = pack(halves, PackedRole::kW13), b = pack(inter, PackedRole::kW13, W13Source::kInterleaved);
  const PackedWeightInfo info = packed_weight_info(a.view());
  EXPECT_EQ(std::memcmp(a.ptr<unsigned char>() + info.data_offset, b.ptr<unsigned char>() + info.data_offset,
                        info.data_bytes),
            0);
}

TEST(CpuPack, Errors) {
  HostTensor w(DType::kBFloat16, {2, 3, 8});
  EXPECT_MOEKIT_ERROR(packed_weight_bytes(w.view(), PackedRole::kW13), "expected an even row count 2I");
  HostTensor f32(DType::kFloat32, {4, 8});
  EXPECT_MOEKIT_ERROR(packed_weight_bytes(f32.view(), PackedRole::kW2), "weight: expected bfloat16 or float16, got float32");
  HostTensor p(DType::kUInt8, {static_cast<int64_t>(packed_weight_bytes(w.view(), PackedRole::kW2)) - 1});
  EXPECT_MOEKIT_ERROR(pack_moe_weights(w.view(), PackedRole::kW2, p.view()), "packed: expected");
  HostTensor good = pack(w, PackedRole::kW2);
  HostTensor bad = good;
  bad.ptr<unsigned char>()[0] = 'X';
  EXPECT_MOEKIT_ERROR(packed_weight_info(bad.view()), "format MKCPU");
  bad = good;
  bad.ptr<unsigned char>()[8] = 2;  // version
  EXPECT_MOEKIT_ERROR(packed_weight_info(bad.view()), "expected MKCPU version 1, got version 2");
  HostTensor other(DType::kBFloat16, {2, 4, 8});
  EXPECT_MOEKIT_ERROR(unpack_moe_weights(good.view(), other.view()), "weight: expected [2, 3, 8]");
}

// ---- fused experts ----

using Shape = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>;  // M, K, N, E, k

class CpuFusedExperts : public ::testing::TestWithParam<std::tuple<DType, Shape>> {};

TEST_P(CpuFusedExperts, MatchesOracleOnEveryIsa) {
  auto [dtype, shape] = GetParam();
  auto [M, K, N, E, k] = shape;
  uint64_t seed;
  auto rng = fresh_rng(&seed);
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  IsaScope scope;
  MoeCase c(rng, M, K, N, E, k, dtype);
  if (M > 2) c.ids.ptr<int32_t>()[1 * k] = -1;  // a dropped slot
  const HostTensor r = c.oracle();
  const std::vector<double> slack = c.rounding_allowance();
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  HostTensor scalar_result;
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    const HostTensor y = run_fused(c, p13, p2);
    EXPECT_TRUE(MatchesOracle(y, r, K, slack)) << cpu_isa_name(isa);
    if (isa == CpuIsa::kScalar) scalar_result = y;
    // avx2 (and avx512, which runs the avx2 kernels) repeat the scalar order exactly.
    if (isa == CpuIsa::kAvx2 || isa == CpuIsa::kAvx512) EXPECT_TRUE(y.bytes_equal(scalar_result)) << cpu_isa_name(isa);
    if (isa == CpuIsa::kAvx512Bf16 || isa == CpuIsa::kAmx)
      RecordProperty(std::string("bit_identical_to_scalar_") + cpu_isa_name(isa), y.bytes_equal(scalar_result));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Grid, CpuFusedExperts,
    ::testing::Combine(::testing::Values(DType::kBFloat16, DType::kFloat16),
                       ::testing::Values(Shape{0, 32, 32, 4, 2}, Shape{1, 1, 1, 1, 1}, Shape{1, 2, 1, 3, 1},
                                         Shape{2, 32, 32, 4, 2}, Shape{2, 128, 128, 4, 2}, Shape{3, 33, 31, 7, 2},
                                         Shape{5, 16, 16, 3, 3}, Shape{31, 96, 64, 8, 2}, Shape{33, 31, 33, 5, 5},
                                         Shape{61, 64, 96, 4, 2}, Shape{114, 32, 32, 4, 2}, Shape{127, 40, 48, 60, 8})));

TEST(CpuFusedExpertsCases, RoutingExtremes) {
  auto rng = fresh_rng();
  IsaScope scope;
  const int64_t M = 37, K = 48, N = 40, E = 9, k = 3;
  MoeCase c(rng, M, K, N, E, k, DType::kBFloat16);
  int32_t* ids = c.ids.ptr<int32_t>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t t = 0; t < k; ++t) ids[m * k + t] = 4;  // every token on expert 4, twice and thrice
  for (int64_t t = 0; t < k; ++t) ids[5 * k + t] = -1;   // a whole row dropped -> zeros
  ids[7 * k + 1] = -1;
  c.weights.set(8 * k, 0.0);
  const HostTensor r = c.oracle();
  const std::vector<double> slack = c.rounding_allowance();
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    const HostTensor y = run_fused(c, p13, p2);
    EXPECT_TRUE(MatchesOracle(y, r, K, slack)) << cpu_isa_name(isa);
    for (int64_t n = 0; n < K; ++n) EXPECT_EQ(y.get(5 * K + n), 0.0);
  }
}

TEST(CpuFusedExpertsCases, ThreadCountsAndRepeatsBitIdentical) {
  auto rng = fresh_rng();
  IsaScope scope;
  MoeCase c(rng, 67, 64, 96, 6, 2, DType::kBFloat16);
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    const HostTensor first = run_fused(c, p13, p2, {}, {1, {}});
    for (int threads : {2, 3, 7, 0})
      for (int rep = 0; rep < 2; ++rep) {
        CpuRunConfig run;
        run.threads = threads;
        EXPECT_TRUE(run_fused(c, p13, p2, {}, run).bytes_equal(first)) << cpu_isa_name(isa) << " threads " << threads;
      }
  }
}

// Shapes that split the work the other ways: many stage-1 and stage-2 row blocks per expert (M = 4100,
// E = 3: about 2700 rows each); the last output block partial (K = 1000); more than one stage-1 row
// block per expert where items take 128 rows (E = 2, 150 rows each); the AMX path's K chunks over several
// row groups, the last group of 17-32 rows and the last chunk partial (K = 1100, 60 rows per expert).
TEST(CpuFusedExpertsCases, WorkSplitShapes) {
  auto rng = fresh_rng();
  IsaScope scope;
  for (auto [M, K, N, E, k] : {Shape{4100, 40, 64, 3, 2}, Shape{40, 1000, 64, 2, 2}, Shape{300, 24, 40, 2, 1},
                                 Shape{60, 1100, 40, 2, 2}}) {
    MoeCase c(rng, M, K, N, E, k, DType::kBFloat16);
    const HostTensor r = c.oracle();
    const std::vector<double> slack = c.rounding_allowance();
    const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
    for (CpuIsa isa : supported_cpu_isas()) {
      set_cpu_isa(isa);
      const HostTensor one = run_fused(c, p13, p2, {}, {1, {}});
      EXPECT_TRUE(MatchesOracle(one, r, K, slack)) << cpu_isa_name(isa) << " M " << M << " K " << K;
      EXPECT_TRUE(run_fused(c, p13, p2, {}, {3, {}}).bytes_equal(one)) << cpu_isa_name(isa);
    }
  }
}

TEST(CpuFusedExpertsCases, BatchInvariant) {
  auto rng = fresh_rng();
  IsaScope scope;
  MoeCase big(rng, 57, 40, 36, 5, 2, DType::kBFloat16);
  const HostTensor p13 = pack(big.w13, PackedRole::kW13), p2 = pack(big.w2, PackedRole::kW2);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    const HostTensor all = run_fused(big, p13, p2);
    for (int64_t m : {0, 13, 56}) {
      TensorView x1(static_cast<unsigned char*>(const_cast<void*>(big.x.data())) + m * 40 * 2, DType::kBFloat16, {1, 40});
      TensorView w1(static_cast<unsigned char*>(const_cast<void*>(big.weights.data())) + m * 2 * 4, DType::kFloat32, {1, 2});
      TensorView i1(static_cast<unsigned char*>(const_cast<void*>(big.ids.data())) + m * 2 * 4, DType::kInt32, {1, 2});
      HostTensor y1(DType::kBFloat16, {1, 40});
      fused_experts_cpu(x1, p13.view(), p2.view(), w1, i1, y1.view());
      EXPECT_EQ(std::memcmp(y1.data(), static_cast<const unsigned char*>(all.data()) + m * 40 * 2, 80), 0)
          << cpu_isa_name(isa) << " token " << m;
    }
  }
}

TEST(CpuFusedExpertsCases, InPlaceInt64IdsLowPrecisionWeightsAndScaling) {
  auto rng = fresh_rng();
  IsaScope scope;
  MoeCase c(rng, 19, 72, 40, 6, 2, DType::kFloat16);
  FusedExpertsOptions o;
  o.routed_scaling_factor = 2.5;
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  HostTensor ids64(DType::kInt64, {c.M, c.k}), w16(DType::kFloat16, {c.M, c.k});
  for (int64_t i = 0; i < c.M * c.k; ++i) {
    ids64.set(i, c.ids.get(i));
    w16.set(i, c.weights.get(i));
    c.weights.set(i, w16.get(i));  // the oracle sees the same (fp16-representable) weights
  }
  const HostTensor r16 = c.oracle(o);
  const std::vector<double> slack = c.rounding_allowance(o);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    HostTensor x = c.x;
    fused_experts_cpu(x.view(), p13.view(), p2.view(), w16.view(), ids64.view(), x.view(), o);
    EXPECT_TRUE(MatchesOracle(x, r16, c.K, slack)) << cpu_isa_name(isa);
  }
}

class CpuFusedActivations : public ::testing::TestWithParam<Activation> {};

TEST_P(CpuFusedActivations, MatchOracle) {
  auto rng = fresh_rng();
  IsaScope scope;
  MoeCase c(rng, 23, 64, 45, 4, 2, DType::kBFloat16);
  FusedExpertsOptions o;
  o.activation = GetParam();
  if (o.activation == Activation::kSwigluOai) {
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.0f;
  }
  const HostTensor r = c.oracle(o);
  const std::vector<double> slack = c.rounding_allowance(o);
  HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  if (o.activation == Activation::kSwigluOai) {  // gpt-oss interleaved source
    HostTensor inter(DType::kBFloat16, {c.E, 2 * c.N, c.K});
    for (int64_t e = 0; e < c.E; ++e)
      for (int64_t j = 0; j < 2 * c.N; ++j)
        for (int64_t kk = 0; kk < c.K; ++kk) {
          const int64_t src = j % 2 == 0 ? j / 2 : c.N + j / 2;
          inter.set((e * 2 * c.N + j) * c.K + kk, c.w13.get((e * 2 * c.N + src) * c.K + kk));
        }
    p13 = pack(inter, PackedRole::kW13, W13Source::kInterleaved);
  }
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    EXPECT_TRUE(MatchesOracle(run_fused(c, p13, p2, o), r, c.K, slack)) << cpu_isa_name(isa);
  }
}

INSTANTIATE_TEST_SUITE_P(All, CpuFusedActivations,
                         ::testing::Values(Activation::kSiluAndMul, Activation::kGeluAndMul,
                                           Activation::kGeluTanhAndMul, Activation::kSwigluOai));

TEST(CpuFusedExpertsCases, NonFiniteRowStaysInItsRow) {
  auto rng = fresh_rng();
  IsaScope scope;
  MoeCase c(rng, 9, 32, 32, 4, 2, DType::kBFloat16);
  c.x.set(3 * 32 + 5, std::numeric_limits<double>::quiet_NaN());
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    const HostTensor y = run_fused(c, p13, p2);
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.K; ++n)
        EXPECT_EQ(std::isfinite(y.get(m * c.K + n)), m != 3) << cpu_isa_name(isa) << " " << m << "," << n;
  }
}

TEST(CpuFusedExpertsCases, DensePackedW13Compat) {
  auto rng = fresh_rng();
  MoeCase c(rng, 11, 40, 64, 3, 2, DType::kBFloat16);
  const HostTensor r = c.oracle();
  const std::vector<double> slack = c.rounding_allowance();
  HostTensor p13(DType::kUInt8, {static_cast<int64_t>(convert_weight_packed_bytes(c.w13.view()))});
  HostTensor p2(DType::kUInt8, {static_cast<int64_t>(convert_weight_packed_bytes(c.w2.view()))});
  convert_weight_packed(c.w13.view(), p13.view());
  convert_weight_packed(c.w2.view(), p2.view());
  EXPECT_TRUE(MatchesOracle(run_fused(c, p13, p2), r, c.K, slack));
  MoeCase odd(rng, 2, 40, 48, 3, 2, DType::kBFloat16);
  HostTensor q13(DType::kUInt8, {static_cast<int64_t>(convert_weight_packed_bytes(odd.w13.view()))});
  convert_weight_packed(odd.w13.view(), q13.view());
  EXPECT_MOEKIT_ERROR(run_fused(odd, q13, pack(odd.w2, PackedRole::kW2)), "needs I % 32 == 0, got I = 48");
}

TEST(CpuFusedExpertsCases, Workspace) {
  auto rng = fresh_rng();
  MoeCase c(rng, 21, 40, 36, 5, 2, DType::kBFloat16);
  const HostTensor r = c.oracle();
  const std::vector<double> slack = c.rounding_allowance();
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  const size_t need = fused_experts_cpu_workspace_bytes(c.M, c.k, c.E, c.N, c.K, 3);
  EXPECT_LE(fused_experts_cpu_workspace_bytes(c.M - 1, c.k, c.E, c.N, c.K, 3), need);
  HostTensor buf(DType::kUInt8, {static_cast<int64_t>(need) + 64});
  unsigned char* aligned = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) / 64 * 64);
  CpuRunConfig run;
  run.threads = 3;
  run.workspace = TensorView(aligned, DType::kUInt8, {static_cast<int64_t>(need)});
  EXPECT_TRUE(MatchesOracle(run_fused(c, p13, p2, {}, run), r, c.K, slack));
  run.workspace = TensorView(aligned, DType::kUInt8, {static_cast<int64_t>(need) - 1});
  EXPECT_MOEKIT_ERROR(run_fused(c, p13, p2, {}, run), "workspace: expected at least");
  run.workspace = TensorView(aligned + 1, DType::kUInt8, {static_cast<int64_t>(need)});
  EXPECT_MOEKIT_ERROR(run_fused(c, p13, p2, {}, run), "64-byte aligned");
}

TEST(CpuFusedExpertsCases, Errors) {
  auto rng = fresh_rng();
  MoeCase c(rng, 4, 32, 32, 4, 2, DType::kBFloat16);
  const HostTensor p13 = pack(c.w13, PackedRole::kW13), p2 = pack(c.w2, PackedRole::kW2);
  HostTensor y(DType::kBFloat16, {4, 32});
  auto call = [&](const HostTensor& w13, const HostTensor& w2, const HostTensor& ids, FusedExpertsOptions o = {}) {
    fused_experts_cpu(c.x.view(), w13.view(), w2.view(), c.weights.view(), ids.view(), y.view(), o);
  };
  for (int32_t bad : {4, -2, INT32_MAX}) {
    HostTensor ids = c.ids;
    ids.ptr<int32_t>()[2 * 2 + 1] = bad;
    y.poison();
    EXPECT_MOEKIT_ERROR(call(p13, p2, ids), "topk_ids[2, 1] = " + std::to_string(bad) + ", expected in [0, 4) or -1");
    for (int64_t i = 0; i < y.numel(); ++i) EXPECT_TRUE(std::isnan(y.get(i)));
  }
  EXPECT_MOEKIT_ERROR(call(p2, p2, c.ids), "w13_packed: expected role W13 or Dense, got W2");
  EXPECT_MOEKIT_ERROR(call(p13, p13, c.ids), "w2_packed: expected role W2 or Dense, got W13");
  HostTensor w16(DType::kFloat16, {4, 64, 32});
  EXPECT_MOEKIT_ERROR(call(pack(w16, PackedRole::kW13), p2, c.ids), "w13_packed: expected weights packed from bfloat16");
  HostTensor w3(DType::kBFloat16, {3, 32, 32});
  EXPECT_MOEKIT_ERROR(call(p13, pack(w3, PackedRole::kW2), c.ids), "w2_packed: expected 4 experts");
  FusedExpertsOptions o;
  o.activation = Activation::kSilu;
  EXPECT_MOEKIT_ERROR(call(p13, p2, c.ids, o), "not supported");
  o.activation = Activation::kSiluAndMul;
  o.swiglu_limit = 7;
  EXPECT_MOEKIT_ERROR(call(p13, p2, c.ids, o), "swiglu_alpha / swiglu_limit expected 0");
  o.activation = Activation::kSwigluOai;
  EXPECT_MOEKIT_ERROR(call(p13, p2, c.ids, o), "kSwigluOai expects swiglu_alpha != 0");
  HostTensor raw(DType::kUInt8, {256});
  EXPECT_MOEKIT_ERROR(call(raw, p2, c.ids), "w13_packed: expected a moekit packed weight");
}

// ---- shared expert ----

TEST(CpuSharedExpert, MatchesOracleOnEveryIsa) {
  auto rng = fresh_rng();
  IsaScope scope;
  for (auto [M, K, N] : {std::tuple<int64_t, int64_t, int64_t>{2, 32, 32}, {121, 64, 128}, {13, 33, 47}, {1, 1, 1}}) {
    HostTensor x(DType::kBFloat16, {M, K}), w13(DType::kBFloat16, {2 * N, K}), w2(DType::kBFloat16, {K, N});
    HostTensor routed(DType::kBFloat16, {M, K});
    x.fill_normal(rng);
    w13.fill_normal(rng, 0, 1 / std::sqrt(static_cast<double>(K)));
    w2.fill_normal(rng, 0, 1 / std::sqrt(static_cast<double>(N)));
    routed.fill_normal(rng, 0, 0.1);
    const HostTensor p13 = pack(w13, PackedRole::kW13), p2 = pack(w2, PackedRole::kW2);
    ExpertWeights a, b;
    a.weight = w13.view();
    b.weight = w2.view();
    for (bool with_routed : {true, false}) {
      FusedExpertsOptions o;
      o.routed_scaling_factor = 16;
      HostTensor r(DType::kBFloat16, {M, K});
      reference::shared_expert(x.view(), a, b, with_routed ? routed.view() : TensorView{}, r.view(), o);
      std::vector<double> allowance, flip;  // R1 flips of D's activations (see MatchesOracle)
      for (int64_t m = 0; m < M; ++m) {
        r1_flip(x, m, w13, w2, 0, o.activation, flip);
        allowance.insert(allowance.end(), flip.begin(), flip.end());
      }
      for (CpuIsa isa : supported_cpu_isas()) {
        set_cpu_isa(isa);
        HostTensor y = routed;  // in place into fused_experts_out
        shared_expert_cpu(x.view(), p13.view(), p2.view(), with_routed ? y.view() : TensorView{}, y.view(), o);
        EXPECT_TRUE(MatchesOracle(y, r, K, allowance)) << cpu_isa_name(isa) << " M " << M << " routed " << with_routed;
      }
    }
  }
}

TEST(CpuSharedExpert, Errors) {
  HostTensor x(DType::kBFloat16, {2, 32}), w13(DType::kBFloat16, {2, 64, 32}), w2(DType::kBFloat16, {2, 32, 32});
  HostTensor y(DType::kBFloat16, {2, 32}), routed(DType::kBFloat16, {3, 32});
  const HostTensor p13 = pack(w13, PackedRole::kW13), p2 = pack(w2, PackedRole::kW2);
  EXPECT_MOEKIT_ERROR(shared_expert_cpu(x.view(), p13.view(), p2.view(), {}, y.view()), "expected one expert");
  HostTensor s13(DType::kBFloat16, {64, 32}), s2(DType::kBFloat16, {32, 32});
  EXPECT_MOEKIT_ERROR(shared_expert_cpu(x.view(), pack(s13, PackedRole::kW13).view(), pack(s2, PackedRole::kW2).view(),
                                        routed.view(), y.view()),
                      "fused_experts_out: expected shape [2, 32], got [3, 32]");
}

}  // namespace
}  // namespace moekit::test
