#include <cmath>

#include "common/numeric.h"
#include "moekit/cpu.h"
#include "rope/qk_norm_rope_cases.h"

namespace moekit::test {
namespace {

void call_fast(const RopeCase& c, RopeInputs& in) {
  fused_qk_norm_rope(in.qkv.view(), c.hq, c.hk, c.hv, c.head_dim, c.eps, in.q_weight.view(),
                     in.k_weight.view(), c.base, c.neox, in.positions.view(), c.factor, c.low,
                     c.high, c.attention_factor, c.rotary_dim);
}

// The CPU path on every ISA this machine has.
void check_cpu(const RopeCase& c) {
  uint64_t seed = 0;
  auto rng = fresh_rng(&seed);
  SCOPED_TRACE(c.name() + " seed " + std::to_string(seed));
  const PreparedCase p = prepare_case(c, rng);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    RopeInputs in = p.inputs;
    call_fast(c, in);
    EXPECT_TRUE(WithinOneRounding(c, in.qkv, p.expected, p.original)) << cpu_isa_name(isa);
  }
  set_cpu_isa(best_cpu_isa());
}

// ---- the oracle on hand-computed cases ----

// One Q head of ones with unit weights and eps 0: RMSNorm gives exactly 1, so every rotated pair is
// (cos t - sin t, cos t + sin t) * A for its angle t.
TEST(QkNormRopeReference, HandComputedInterleavedPair) {
  HostTensor qkv(DType::kFloat16, {1, 64}), w(DType::kFloat16, {64}), pos(DType::kInt32, {1});
  qkv.fill(1.0);
  w.fill(1.0);
  pos.set(0, 3);
  reference::fused_qk_norm_rope(qkv.view(), 1, 0, 0, 64, 0.0, w.view(), TensorView(), 10000.0,
                                /*is_neox=*/false, pos.view(), 1.0, 0.0, 0.0, 1.0, /*rotary_dim=*/2);
  EXPECT_EQ(qkv.get(0), numeric::round_half(static_cast<float>(std::cos(3.0) - std::sin(3.0))));
  EXPECT_EQ(qkv.get(1), numeric::round_half(static_cast<float>(std::cos(3.0) + std::sin(3.0))));
  for (int d = 2; d < 64; ++d) EXPECT_EQ(qkv.get(d), 1.0) << d;
}

// NeoX with R = 4 and base 100: pairs (0, 2) at angle p and (1, 3) at angle p / 10. YaRN with
// factor 2, low = high = 0 (so hi = 0.001): pair 0 keeps its frequency, pair 1 gets f / 2.
// The attention factor scales rotated dims only.
TEST(QkNormRopeReference, HandComputedNeoxYarn) {
  HostTensor qkv(DType::kFloat16, {1, 64}), w(DType::kFloat16, {64}), pos(DType::kInt64, {1});
  qkv.fill(1.0);
  w.fill(1.0);
  pos.set(0, 7);
  reference::fused_qk_norm_rope(qkv.view(), 0, 1, 0, 64, 0.0, TensorView(), w.view(), 100.0,
                                /*is_neox=*/true, pos.view(), 2.0, 0.0, 0.0, 1.5, /*rotary_dim=*/4);
  const double a0 = 7.0, a1 = 7.0 * 0.1 / 2;
  auto h = [](double v) { return numeric::round_half(static_cast<float>(v)); };
  EXPECT_EQ(qkv.get(0), h((std::cos(a0) - std::sin(a0)) * 1.5));
  EXPECT_EQ(qkv.get(2), h((std::cos(a0) + std::sin(a0)) * 1.5));
  EXPECT_EQ(qkv.get(1), h((std::cos(a1) - std::sin(a1)) * 1.5));
  EXPECT_EQ(qkv.get(3), h((std::cos(a1) + std::sin(a1)) * 1.5));
  for (int d = 4; d < 64; ++d) EXPECT_EQ(qkv.get(d), 1.0) << d;
}

// RMSNorm alone (position 0): y = x * w / sqrt(mean(x^2) + eps); Q uses q_weight, K k_weight, V
// is untouched.
TEST(QkNormRopeReference, HandComputedNorm) {
  HostTensor qkv(DType::kBFloat16, {1, 3 * 64}), qw(DType::kBFloat16, {64}),
      kw(DType::kBFloat16, {64}), pos(DType::kInt32, {1});
  for (int d = 0; d < 3 * 64; ++d) qkv.set(d, d % 2 ? 3.0 : -1.0);  // mean(x^2) = 5
  qw.fill(2.0);
  kw.fill(0.5);
  pos.set(0, 0);
  reference::fused_qk_norm_rope(qkv.view(), 1, 1, 1, 64, 4.0, qw.view(), kw.view(), 10000.0, true,
                                pos.view(), 1.0, 0.0, 0.0, 1.0);
  // sqrt(5 + 4) = 3.
  EXPECT_EQ(qkv.get(0), numeric::round_bf16(-2.0f / 3));
  EXPECT_EQ(qkv.get(1), 2.0);
  EXPECT_EQ(qkv.get(64), numeric::round_bf16(-0.5f / 3));
  EXPECT_EQ(qkv.get(65), 0.5);
  EXPECT_EQ(qkv.get(128), -1.0);
  EXPECT_EQ(qkv.get(129), 3.0);
}

// ---- the spec grid: D x heads x T x neox x R ----

using GridParam = std::tuple<int64_t, int, int64_t, bool, int>;
const int64_t kHeads[][3] = {{16, 8, 8}, {32, 8, 8}, {40, 8, 8}, {64, 8, 8}, {12, 1, 1}};

class QkNormRopeCpuGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(QkNormRopeCpuGrid, MatchesOracle) {
  auto [D, heads, T, neox, r_div] = GetParam();
  RopeCase c;
  c.head_dim = D;
  c.hq = kHeads[heads][0];
  c.hk = kHeads[heads][1];
  c.hv = kHeads[heads][2];
  c.tokens = T;
  c.neox = neox;
  c.rotary_dim = D / r_div;
  check_cpu(c);
}

INSTANTIATE_TEST_SUITE_P(Spec, QkNormRopeCpuGrid,
                         ::testing::Combine(::testing::Values<int64_t>(64, 128, 256),
                                            ::testing::Range(0, 5),
                                            ::testing::Values<int64_t>(1, 3, 8, 32, 256),
                                            ::testing::Bool(), ::testing::Values(1, 2, 4)));

// ---- moekit additions ----

TEST(QkNormRopeCpu, Fp16AndInt64Positions) {
  for (int64_t D : {64, 128, 256})
    for (bool neox : {false, true})
      for (int64_t r_div : {1, 2, 4}) {
        RopeCase c;
        c.dtype = DType::kFloat16;
        c.pos_dtype = DType::kInt64;
        c.head_dim = D;
        c.hq = 5;
        c.hk = 2;
        c.hv = 3;
        c.tokens = 13;
        c.neox = neox;
        c.rotary_dim = D / r_div;
        c.weight_scale = 1;
        check_cpu(c);
      }
}

// Every rotary_dim the rules allow, both styles.
TEST(QkNormRopeCpu, EveryAllowedRotaryDim) {
  for (int64_t D : {64, 128, 256})
    for (bool neox : {false, true})
      for (int64_t R = D / 32; R <= D; R += D / 32) {
        const int64_t q = R / (D / 32) / 2;
        if (neox && (R % (D / 16) || q < 1 || (q & (q - 1)))) continue;
        RopeCase c;
        c.head_dim = D;
        c.hq = 3;
        c.hk = 1;
        c.hv = 1;
        c.tokens = 5;
        c.neox = neox;
        c.rotary_dim = R;
        c.dtype = R % 2 ? DType::kBFloat16 : DType::kFloat16;
        check_cpu(c);
      }
}

// Positions stay integers: near 2^24 (where fp32 positions lose units), near INT32_MAX, and int64
// positions far past 2^32. High-frequency pairs turn many times, so any angle error shows.
TEST(QkNormRopeCpu, LargePositions) {
  struct Range {
    DType dtype;
    int64_t lo, hi;
  };
  const Range ranges[] = {{DType::kInt32, (1 << 24) - 64, (1 << 24) + 64},
                          {DType::kInt64, (1 << 24) - 64, (1 << 24) + 64},
                          {DType::kInt32, 2147483647 - 1000, 2147483647},
                          {DType::kInt64, (int64_t{1} << 40) - 1000, (int64_t{1} << 40)},
                          {DType::kInt32, -1000, 1000}};
  for (const Range& r : ranges)
    for (bool neox : {false, true}) {
      RopeCase c;
      c.head_dim = 128;
      c.hq = 4;
      c.hk = 2;
      c.hv = 1;
      c.tokens = 33;
      c.neox = neox;
      c.pos_dtype = r.dtype;
      c.random_positions = true;
      c.pos_lo = r.lo;
      c.pos_hi = r.hi;
      c.dtype = DType::kFloat16;
      check_cpu(c);
    }
}

// YaRN as SGLang sets it up: Qwen3 style (factor 4, base 1e6, 32k original) and DeepSeek style
// (factor 40, base 1e4, 4k original), full and partial rotary.
TEST(QkNormRopeCpu, Yarn) {
  struct Setup {
    double factor, base, original;
  };
  for (Setup s : {Setup{4, 1e6, 32768}, Setup{40, 1e4, 4096}})
    for (int64_t D : {64, 128, 256})
      for (int64_t r_div : {1, 2})
        for (bool neox : {false, true}) {
          RopeCase c;
          c.head_dim = D;
          c.hq = 4;
          c.hk = 2;
          c.hv = 2;
          c.tokens = 17;
          c.neox = neox;
          c.rotary_dim = D / r_div;
          YarnParams y = sglang_yarn(s.factor, c.rotary_dim, s.base, s.original);
          c.factor = s.factor;
          c.base = s.base;
          c.low = y.low;
          c.high = y.high;
          c.attention_factor = y.attention_factor;
          c.random_positions = true;
          c.pos_lo = 0;
          c.pos_hi = static_cast<int64_t>(s.factor * s.original);
          check_cpu(c);
        }
}

TEST(QkNormRopeCpu, YarnLowEqualsHigh) {
  RopeCase c;
  c.hq = 2;
  c.hk = 1;
  c.hv = 0;
  c.factor = 8;
  c.low = c.high = 10;
  check_cpu(c);
}

TEST(QkNormRopeCpu, TinyEpsAndTinyInputs) {
  for (double eps : {1e-30, 1e-12, 0.0}) {
    RopeCase c;
    c.eps = eps;
    c.hq = 3;
    c.hk = 2;
    c.hv = 1;
    c.dtype = DType::kFloat16;
    check_cpu(c);
  }
  // A head of tiny values: with eps 1e-30 RMSNorm still scales it to unit RMS.
  HostTensor qkv(DType::kBFloat16, {2, 2 * 64}), w(DType::kBFloat16, {64}), pos(DType::kInt32, {2});
  auto rng = fresh_rng();
  qkv.fill_normal(rng, 0.0, 1e-20);
  w.fill(1.0);
  pos.set(0, 5);
  pos.set(1, 6);
  HostTensor expected = qkv;
  reference::fused_qk_norm_rope(expected.view(), 1, 1, 0, 64, 1e-30, w.view(), w.view(), 1e4, true,
                                pos.view(), 1, 0, 0, 1);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    HostTensor got = qkv;
    fused_qk_norm_rope(got.view(), 1, 1, 0, 64, 1e-30, w.view(), w.view(), 1e4, true, pos.view(), 1,
                       0, 0, 1);
    RopeCase c;
    c.head_dim = 64;
    c.hq = 1;
    c.hk = 1;
    c.hv = 0;
    c.tokens = 2;
    EXPECT_TRUE(WithinOneRounding(c, got, expected, qkv)) << cpu_isa_name(isa);
  }
  set_cpu_isa(best_cpu_isa());
}

TEST(QkNormRopeCpu, OnlyQOrOnlyKHeads) {
  for (auto [hq, hk, hv] : {std::tuple<int64_t, int64_t, int64_t>{0, 4, 2}, {4, 0, 2}, {3, 0, 0},
                            {0, 1, 0}}) {
    RopeCase c;
    c.hq = hq;
    c.hk = hk;
    c.hv = hv;
    check_cpu(c);
  }
}

TEST(QkNormRopeCpu, AbsentWeightForZeroHeads) {
  HostTensor qkv(DType::kBFloat16, {3, 2 * 128}), w(DType::kBFloat16, {128}), pos(DType::kInt32, {3});
  auto rng = fresh_rng();
  qkv.fill_normal(rng);
  w.fill_normal(rng);
  HostTensor expected = qkv, got = qkv;
  reference::fused_qk_norm_rope(expected.view(), 0, 1, 1, 128, 1e-6, TensorView(), w.view(), 1e4,
                                true, pos.view(), 1, 0, 0, 1);
  fused_qk_norm_rope(got.view(), 0, 1, 1, 128, 1e-6, TensorView(), w.view(), 1e4, true, pos.view(),
                     1, 0, 0, 1);
  RopeCase c;
  c.hq = 0;
  c.hk = 1;
  c.hv = 1;
  c.tokens = 3;
  EXPECT_TRUE(WithinOneRounding(c, got, expected, qkv));
}

TEST(QkNormRopeCpu, ZeroTokensAndNoRotatedHeadsAreNoOps) {
  HostTensor empty(DType::kBFloat16, {0, 3 * 64}), w(DType::kBFloat16, {64}), pos(DType::kInt32, {0});
  fused_qk_norm_rope(empty.view(), 1, 1, 1, 64, 1e-6, w.view(), w.view(), 1e4, true, pos.view(), 1,
                     0, 0, 1);
  HostTensor v_only(DType::kBFloat16, {4, 2 * 64}), pos4(DType::kInt32, {4});
  v_only.poison();
  const HostTensor before = v_only;
  fused_qk_norm_rope(v_only.view(), 0, 0, 2, 64, 1e-6, TensorView(), TensorView(), 1e4, true,
                     pos4.view(), 1, 0, 0, 1);
  EXPECT_TRUE(v_only.bytes_equal(before));
}

// NaN in one head stays in that head (and only there).
TEST(QkNormRopeCpu, NanStaysInItsHead) {
  HostTensor qkv(DType::kBFloat16, {2, 3 * 64}), w(DType::kBFloat16, {64}), pos(DType::kInt32, {2});
  auto rng = fresh_rng();
  qkv.fill_normal(rng);
  w.fill(1.0);
  qkv.set(64 + 5, std::nan(""));  // token 0, K head
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    HostTensor got = qkv;
    fused_qk_norm_rope(got.view(), 1, 1, 1, 64, 1e-6, w.view(), w.view(), 1e4, true, pos.view(), 1,
                       0, 0, 1);
    for (int d = 0; d < 64; ++d) {
      EXPECT_FALSE(std::isnan(got.get(d))) << d;
      EXPECT_TRUE(std::isnan(got.get(64 + d))) << d;
      EXPECT_FALSE(std::isnan(got.get(3 * 64 + 64 + d))) << d;
    }
  }
  set_cpu_isa(best_cpu_isa());
}

TEST(QkNormRopeCpu, SameResultForEveryThreadCount) {
  auto rng = fresh_rng();
  RopeCase c;
  c.tokens = 61;
  RopeInputs in = make_rope_inputs(c, rng);
  const int threads = cpu_threads();
  HostTensor first;
  for (int n : {1, 2, 3, 7}) {
    set_cpu_threads(n);
    RopeInputs run = in;
    call_fast(c, run);
    if (n == 1)
      first = run.qkv;
    else
      EXPECT_TRUE(run.qkv.bytes_equal(first)) << n << " threads";
  }
  set_cpu_threads(threads);
}

// ---- errors ----

TEST(QkNormRopeErrors, NameTheArgument) {
  HostTensor qkv(DType::kBFloat16, {2, 3 * 128}), w(DType::kBFloat16, {128}), pos(DType::kInt32, {2});
  auto call = [&](TensorView q, int64_t hq, int64_t hk, int64_t hv, int64_t D, TensorView qw,
                  TensorView kw, TensorView p, int64_t R = -1, bool neox = true, double eps = 1e-6,
                  double base = 1e4, double factor = 1, double attention = 1) {
    fused_qk_norm_rope(q, hq, hk, hv, D, eps, qw, kw, base, neox, p, factor, 0, 0, attention, R);
  };
  HostTensor f32(DType::kFloat32, {2, 3 * 128});
  EXPECT_MOEKIT_ERROR(call(f32.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view()),
                      "qkv: expected bfloat16 or float16, got float32");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 96, w.view(), w.view(), pos.view()),
                      "head_dim: expected 64, 128 or 256, got 96");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 2, 1, 1, 128, w.view(), w.view(), pos.view()),
                      "qkv: expected shape [*, 512]");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), -1, 3, 1, 128, w.view(), w.view(), pos.view()),
                      "num_heads_q: expected a value >= 0, got -1");
  HostTensor qkv_3d(DType::kBFloat16, {2, 3, 128});
  EXPECT_MOEKIT_ERROR(call(qkv_3d.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view()),
                      "qkv: expected 2-D tensor");
  TensorView strided = qkv.view();
  strided.strides[0] = 1000;
  EXPECT_MOEKIT_ERROR(call(strided, 1, 1, 1, 128, w.view(), w.view(), pos.view()),
                      "qkv: expected a contiguous tensor");
  HostTensor w_fp16(DType::kFloat16, {128}), w_short(DType::kBFloat16, {64});
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w_fp16.view(), w.view(), pos.view()),
                      "q_weight: expected the dtype of qkv (bfloat16), got float16");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w_short.view(), pos.view()),
                      "k_weight: expected shape [128], got [64]");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, TensorView(), w.view(), pos.view()),
                      "q_weight: expected a tensor (num_heads_q = 1), got none");
  HostTensor pos_f(DType::kFloat32, {2}), pos_3(DType::kInt32, {3});
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos_f.view()),
                      "position_ids: expected int32 or int64, got float32");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos_3.view()),
                      "position_ids: expected shape [2], got [3]");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), TensorView()),
                      "position_ids: expected a tensor, got none");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), 0),
                      "rotary_dim: expected a value in [1, head_dim = 128]");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), 256),
                      "rotary_dim: expected a value in [1, head_dim = 128]");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), 66),
                      "rotary_dim: expected a multiple of head_dim / 32 = 4, got 66");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), 96),
                      "rotary_dim: expected rotary_dim / (head_dim / 32) / 2 to be a power of two");
  call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), 96, /*neox=*/false);  // fine
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), -1, true, -1.0),
                      "eps: expected a value >= 0, got -1");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), -1, true, 1e-6,
                           0.0),
                      "base: expected a value > 0, got 0");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), -1, true, 1e-6,
                           1e4, 0.0),
                      "factor: expected a value > 0, got 0");
  EXPECT_MOEKIT_ERROR(call(qkv.view(), 1, 1, 1, 128, w.view(), w.view(), pos.view(), -1, true, 1e-6,
                           1e4, 1, std::nan("")),
                      "attention_factor: expected a finite value");
  TensorView on_gpu = qkv.view();
  on_gpu.device = Device{DeviceKind::kCUDA, 0};
  EXPECT_MOEKIT_ERROR(call(on_gpu, 1, 1, 1, 128, w.view(), w.view(), pos.view()),
                      "q_weight: expected a tensor on cuda:0, got cpu");
  EXPECT_MOEKIT_ERROR(reference::fused_qk_norm_rope(on_gpu, 1, 1, 1, 128, 1e-6, w.view(), w.view(),
                                                    1e4, true, pos.view(), 1, 0, 0, 1),
                      "qkv: expected a tensor on cpu, got cuda:0");
}

}  // namespace
}  // namespace moekit::test
