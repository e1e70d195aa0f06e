// FusedExpertsOptions::gate_up_interleaved on the CPU: the oracle (routed and shared expert) on an
// interleaved w13 equals the oracle on the same logical weights as halves, bit for bit; the CPU
// fast path's packed-source check; the option's errors; the interleave_gate_up op (CPU tensors).
#include <algorithm>
#include <cstring>
#include <tuple>

#include "common/test_util.h"
#include "experts/expert_test_util.h"
#include "moekit/cpu_experts.h"
#include "moekit/experts.h"
#include "moekit/gpu_experts.h"

namespace moekit::test {
namespace {

// Hand-built interleave of the rows of [E, 2I, C] (weight) or [E, 2I] (bias): row 2j = gate row j,
// row 2j + 1 = up row I + j.
HostTensor interleave_by_hand(const HostTensor& halves) {
  const std::vector<int64_t>& s = halves.shape();
  const int64_t E = s[0], R = s[1], C = s.size() == 3 ? s[2] : 1, I = R / 2;
  HostTensor out(halves.dtype(), s);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t j = 0; j < I; ++j)
      for (int64_t c = 0; c < C; ++c) {
        out.set((e * R + 2 * j) * C + c, halves.get((e * R + j) * C + c));
        out.set((e * R + 2 * j + 1) * C + c, halves.get((e * R + I + j) * C + c));
      }
  return out;
}

FusedExpertsOptions options_for(Activation a) {
  FusedExpertsOptions o;
  o.activation = a;
  if (a == Activation::kSwigluOai) {
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.0f;
  }
  return o;
}

HostTensor run_oracle(const MoeProblem& p, const ExpertWeights& w13, const FusedExpertsOptions& o) {
  HostTensor out(p.hidden.dtype(), {p.M, p.H});
  out.poison();
  reference::fused_experts(p.hidden.view(), w13, p.w2.view(), p.topk_weights.view(), p.topk_ids.view(),
                           out.view(), o);
  return out;
}

using OracleCase = std::tuple<Activation, DType, bool>;  // activation, dtype, bias

class InterleavedOracle : public ::testing::TestWithParam<OracleCase> {};

TEST_P(InterleavedOracle, EqualsHalvesBitForBit) {
  const auto [act, dtype, bias] = GetParam();
  auto rng = fresh_rng();
  const FusedExpertsOptions halves_opt = options_for(act);
  // I = 13: odd, so no interleaved row lands on its halves index by accident past row 0.
  const MoeProblem p = make_problem(rng, halves_opt, dtype, 7, 24, 13, 5, 2, bias);
  FusedExpertsOptions inter_opt = halves_opt;
  inter_opt.gate_up_interleaved = true;
  const HostTensor w13i = interleave_by_hand(p.w13.weight);
  const HostTensor b13i = bias ? interleave_by_hand(p.w13.bias) : HostTensor();
  ExpertWeights w13 = p.w13.view();
  w13.weight = w13i.view();
  if (bias) w13.bias = b13i.view();

  const HostTensor want = run_oracle(p, p.w13.view(), halves_opt);
  const HostTensor got = run_oracle(p, w13, inter_opt);
  EXPECT_TRUE(got.bytes_equal(want)) << describe_mismatch(got, want, first_mismatch(got, want, 0, 0));
  // The flag matters: the interleaved weights read as halves give another result.
  const HostTensor wrong = run_oracle(p, w13, halves_opt);
  EXPECT_FALSE(wrong.bytes_equal(want));
}

INSTANTIATE_TEST_SUITE_P(
    All, InterleavedOracle,
    ::testing::Combine(::testing::Values(Activation::kSiluAndMul, Activation::kGeluAndMul,
                                         Activation::kGeluTanhAndMul, Activation::kSwigluOai),
                       ::testing::Values(DType::kBFloat16, DType::kFloat16), ::testing::Bool()));

TEST(InterleavedSharedExpert, EqualsHalvesBitForBit) {
  auto rng = fresh_rng();
  for (Activation act : {Activation::kSiluAndMul, Activation::kSwigluOai}) {
    const FusedExpertsOptions halves_opt = options_for(act);
    const MoeProblem p = make_problem(rng, halves_opt, DType::kBFloat16, 6, 16, 24, 1, 1, true);
    FusedExpertsOptions inter_opt = halves_opt;
    inter_opt.gate_up_interleaved = true;
    const HostTensor w13i = interleave_by_hand(p.w13.weight), b13i = interleave_by_hand(p.w13.bias);
    ExpertWeights w13 = p.w13.view();
    w13.weight = w13i.view();
    w13.bias = b13i.view();
    HostTensor routed(DType::kBFloat16, {p.M, p.H}), want(DType::kBFloat16, {p.M, p.H}),
        got(DType::kBFloat16, {p.M, p.H});
    routed.fill_normal(rng);
    want.poison();
    got.poison();
    reference::shared_expert(p.hidden.view(), p.w13.view(), p.w2.view(), routed.view(), want.view(), halves_opt);
    reference::shared_expert(p.hidden.view(), w13, p.w2.view(), routed.view(), got.view(), inter_opt);
    EXPECT_TRUE(got.bytes_equal(want)) << activation_name(act);
  }
}

TEST(InterleavedErrors, NoMulActivationsAndQuantisedSchemesAreRejected) {
  auto rng = fresh_rng();
  for (Activation act : {Activation::kSilu, Activation::kGelu}) {
    FusedExpertsOptions o = options_for(act);
    const MoeProblem p = make_problem(rng, o, DType::kBFloat16, 3, 16, 8, 2, 1);
    o.gate_up_interleaved = true;
    HostTensor out(DType::kBFloat16, {p.M, p.H});
    EXPECT_MOEKIT_ERROR(reference::fused_experts(p.hidden.view(), p.w13.view(), p.w2.view(),
                                                 p.topk_weights.view(), p.topk_ids.view(), out.view(), o),
                        "gate_up_interleaved: expected false for the no-mul activation");
  }
  for (WeightScheme s : {WeightScheme::kFP8BlockW8A16, WeightScheme::kInt8W8A8, WeightScheme::kMXFP4}) {
    FusedExpertsOptions o;
    o.scheme = s;
    o.block_n = o.block_k = 32;
    const MoeProblem p = make_problem(rng, o, DType::kBFloat16, 3, 64, 32, 2, 1);
    o.gate_up_interleaved = true;
    HostTensor out(DType::kBFloat16, {p.M, p.H});
    EXPECT_MOEKIT_ERROR(reference::fused_experts(p.hidden.view(), p.w13.view(), p.w2.view(),
                                                 p.topk_weights.view(), p.topk_ids.view(), out.view(), o),
                        "gate_up_interleaved: expected false for scheme");
    EXPECT_MOEKIT_ERROR(reference::shared_expert(p.hidden.view(), p.w13.view(), p.w2.view(), TensorView{},
                                                 out.view(), o),
                        "gate_up_interleaved: expected false for scheme");
  }
}

// Hand-built interleave along any dim, by element index (independent of the op's row arithmetic).
HostTensor interleave_along(const HostTensor& in, int dim) {
  const std::vector<int64_t>& s = in.shape();
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dim; ++i) outer *= s[i];
  for (size_t i = dim + 1; i < s.size(); ++i) inner *= s[i];
  const int64_t R = s[dim], I = R / 2;
  HostTensor out(in.dtype(), s);
  const size_t esize = in.nbytes() / std::max<int64_t>(1, in.numel());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < inner; ++i) {
        const int64_t from = r < I ? 2 * r : 2 * (r - I) + 1;  // out row of input row r
        std::memcpy(static_cast<unsigned char*>(out.data()) + ((o * R + from) * inner + i) * esize,
                    static_cast<const unsigned char*>(in.data()) + ((o * R + r) * inner + i) * esize, esize);
      }
  return out;
}

struct PackCase {
  DType dtype;
  std::vector<int64_t> shape;
  int dim;
};

TEST(InterleaveGateUp, MatchesHandBuiltInterleave) {
  auto rng = fresh_rng();
  const std::vector<PackCase> cases = {
      {DType::kBFloat16, {3, 26, 40}, 1},  // w13 [E, 2I, H], I = 13
      {DType::kFloat16, {3, 26, 40}, -2},
      {DType::kFloat32, {3, 26}, 1},       // bias [E, 2I]
      {DType::kFloat32, {3, 26}, -1},
      {DType::kBFloat16, {18, 7}, 0},      // shared expert [2I, H], odd row bytes
      {DType::kFloat32, {2}, 0},           // shared bias, I = 1
      {DType::kUInt8, {2, 10, 5}, 1},      // packed 4-bit rows, odd byte count
      {DType::kFloat8E4M3, {1, 256, 64}, 1},
      {DType::kInt32, {2, 3, 4, 6}, 3},    // gate/up along the last dim
      {DType::kBFloat16, {0, 8, 16}, 1},   // no experts
      {DType::kBFloat16, {2, 0, 16}, 1},   // I = 0
  };
  for (const PackCase& c : cases) {
    HostTensor w(c.dtype, c.shape), out(c.dtype, c.shape);
    if (c.dtype == DType::kUInt8 || c.dtype == DType::kInt32) w.fill_int(rng, 0, 255);
    else w.fill_normal(rng);
    out.poison();
    interleave_gate_up(w.view(), out.view(), c.dim);
    const int d = c.dim < 0 ? c.dim + static_cast<int>(c.shape.size()) : c.dim;
    const HostTensor want = interleave_along(w, d);
    EXPECT_TRUE(out.bytes_equal(want)) << dtype_name(c.dtype) << " " << out.view().shape_string() << " dim "
                                       << c.dim;
  }
}

// The op feeds the oracle: interleave_gate_up's weights and bias with the flag == halves.
TEST(InterleaveGateUp, FeedsTheOracle) {
  auto rng = fresh_rng();
  const FusedExpertsOptions halves_opt = options_for(Activation::kSwigluOai);
  const MoeProblem p = make_problem(rng, halves_opt, DType::kBFloat16, 5, 32, 21, 4, 2, true);
  HostTensor w13i(DType::kBFloat16, p.w13.weight.shape()), b13i(DType::kFloat32, p.w13.bias.shape());
  interleave_gate_up(p.w13.weight.view(), w13i.view(), 1);
  interleave_gate_up(p.w13.bias.view(), b13i.view(), 1);
  EXPECT_TRUE(w13i.bytes_equal(interleave_by_hand(p.w13.weight)));
  EXPECT_TRUE(b13i.bytes_equal(interleave_by_hand(p.w13.bias)));
  FusedExpertsOptions inter_opt = halves_opt;
  inter_opt.gate_up_interleaved = true;
  ExpertWeights w13 = p.w13.view();
  w13.weight = w13i.view();
  w13.bias = b13i.view();
  EXPECT_TRUE(run_oracle(p, w13, inter_opt).bytes_equal(run_oracle(p, p.w13.view(), halves_opt)));
}

TEST(InterleaveGateUp, ErrorsNameTheArgument) {
  HostTensor w(DType::kBFloat16, {2, 6, 8}), out(DType::kBFloat16, {2, 6, 8});
  HostTensor odd(DType::kBFloat16, {2, 5, 8}), odd_out(DType::kBFloat16, {2, 5, 8});
  HostTensor other_dtype(DType::kFloat16, {2, 6, 8}), other_shape(DType::kBFloat16, {2, 8, 6});
  EXPECT_MOEKIT_ERROR(interleave_gate_up(odd.view(), odd_out.view(), 1), "w13: expected an even size 2I");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), out.view(), 3), "dim: expected a dimension of w13");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), out.view(), -4), "dim: expected a dimension of w13");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), other_dtype.view(), 1), "out");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), other_shape.view(), 1), "out: expected shape");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), w.view(), 1), "out: expected memory that does not overlap w13");
  // A view that starts inside w13 overlaps too.
  HostTensor big(DType::kBFloat16, {2, 7, 8});
  TensorView part(big.ptr<uint16_t>() + 8, DType::kBFloat16, {2, 6, 8});
  TensorView src(big.ptr<uint16_t>(), DType::kBFloat16, {2, 6, 8});
  EXPECT_MOEKIT_ERROR(interleave_gate_up(src, part, 1), "out: expected memory that does not overlap w13");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(TensorView{}, out.view(), 1), "w13");
  EXPECT_MOEKIT_ERROR(interleave_gate_up(w.view(), TensorView{}, 1), "out");
}

// The GPU entry checks the option on the host before anything else (no device needed here).
TEST(InterleavedErrors, GpuNoMulActivationIsRejected) {
  HostTensor x(DType::kBFloat16, {4, 64}), w13(DType::kBFloat16, {2, 32, 64}), w2(DType::kBFloat16, {2, 64, 32}),
      ids(DType::kInt32, {4, 1});
  ExpertWeights e13, e2;
  e13.weight = w13.view();
  e2.weight = w2.view();
  FusedExpertsOptions o;
  o.activation = Activation::kSilu;
  o.gate_up_interleaved = true;
  EXPECT_MOEKIT_ERROR(fused_experts_workspace_size(x.view(), e13, e2, ids.view(), o),
                      "options.gate_up_interleaved: expected false for the no-mul activation");
}

// The CPU fast path reads packed weights, which are the same for both sources; with the flag set it
// only checks that w13 was packed from interleaved rows.
TEST(InterleavedCpuFastPath, PackedSourceMustBeInterleaved) {
  auto rng = fresh_rng();
  const FusedExpertsOptions halves_opt = options_for(Activation::kSwigluOai);
  const MoeProblem p = make_problem(rng, halves_opt, DType::kBFloat16, 5, 32, 40, 3, 2);
  auto pack = [](const HostTensor& w, PackedRole role, W13Source source) {
    HostTensor packed(DType::kUInt8, {static_cast<int64_t>(packed_weight_bytes(w.view(), role))});
    pack_moe_weights(w.view(), role, packed.view(), source);
    return packed;
  };
  const HostTensor w13i = interleave_by_hand(p.w13.weight);
  const HostTensor p13h = pack(p.w13.weight, PackedRole::kW13, W13Source::kHalves);
  const HostTensor p13i = pack(w13i, PackedRole::kW13, W13Source::kInterleaved);
  const HostTensor p2 = pack(p.w2.weight, PackedRole::kW2, W13Source::kHalves);
  FusedExpertsOptions inter_opt = halves_opt;
  inter_opt.gate_up_interleaved = true;
  HostTensor want(DType::kBFloat16, {p.M, p.H}), got(DType::kBFloat16, {p.M, p.H});
  want.poison();
  got.poison();
  fused_experts_cpu(p.hidden.view(), p13h.view(), p2.view(), p.topk_weights.view(), p.topk_ids.view(),
                    want.view(), halves_opt);
  fused_experts_cpu(p.hidden.view(), p13i.view(), p2.view(), p.topk_weights.view(), p.topk_ids.view(),
                    got.view(), inter_opt);
  EXPECT_TRUE(got.bytes_equal(want));
  EXPECT_MOEKIT_ERROR(fused_experts_cpu(p.hidden.view(), p13h.view(), p2.view(), p.topk_weights.view(),
                                        p.topk_ids.view(), got.view(), inter_opt),
                      "options.gate_up_interleaved: expected w13_packed packed from interleaved rows");
}

}  // namespace
}  // namespace moekit::test
