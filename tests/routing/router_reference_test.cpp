// The routing oracle on hand-computed cases and the spec's edge cases, and the router's fp32
// functions against libm.
#include <cmath>
#include <limits>
#include <vector>

#include "routing/router_cases.h"

namespace moekit::test {
namespace {

const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

HostTensor row_tensor(DType dtype, const std::vector<std::vector<float>>& rows) {
  HostTensor t(dtype, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
  for (size_t m = 0; m < rows.size(); ++m)
    for (size_t e = 0; e < rows[m].size(); ++e) t.set(m * rows[0].size() + e, rows[m][e]);
  return t;
}

HostTensor vec_tensor(DType dtype, const std::vector<float>& v) {
  HostTensor t(dtype, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.set(i, v[i]);
  return t;
}

struct Out {
  HostTensor w, ids;
  Out(int64_t M, int k) : w(DType::kFloat32, {M, k}), ids(DType::kInt32, {M, k}) {
    w.poison();
    ids.poison();
  }
};

void expect_row(const Out& o, int64_t m, const std::vector<int>& ids, const std::vector<double>& w,
                double rtol = 1e-6) {
  const int k = static_cast<int>(ids.size());
  for (int j = 0; j < k; ++j) {
    EXPECT_EQ(o.ids.get(m * k + j), ids[j]) << "row " << m << " slot " << j;
    EXPECT_NEAR(o.w.get(m * k + j), w[j], rtol * std::fabs(w[j]) + 1e-30) << "row " << m << " slot " << j;
  }
}

std::vector<double> softmax(const std::vector<double>& x) {
  double mx = -1e300, s = 0;
  for (double v : x) mx = std::max(mx, v);
  std::vector<double> p;
  for (double v : x) s += std::exp(v - mx);
  for (double v : x) p.push_back(std::exp(v - mx) / s);
  return p;
}

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

TEST(RouterMath, MatchesLibm) {
  // exp, sigmoid within 2 ulp (relative 2.4e-7); tanh within 4 ulp; results below FLT_MIN are 0.
  for (double x = -87.0; x <= 88.7; x += 0.0137) {
    float f = static_cast<float>(x);
    double want = std::exp(static_cast<double>(f));
    EXPECT_NEAR(reference::router_exp(f), want, 2.4e-7 * want) << f;
  }
  EXPECT_EQ(reference::router_exp(-88.f), 0.f);
  EXPECT_EQ(reference::router_exp(89.f), kInf);
  EXPECT_EQ(reference::router_exp(-kInf), 0.f);
  EXPECT_EQ(reference::router_exp(0.f), 1.f);
  EXPECT_TRUE(std::isnan(reference::router_exp(kNaN)));
  EXPECT_GT(reference::router_exp(88.72f), 3.3e38f);
  for (double x = -80; x <= 80; x += 0.0093) {
    float f = static_cast<float>(x);
    double want = sigmoid(f);
    EXPECT_NEAR(reference::router_sigmoid(f), want, 2.4e-7 * want) << f;
    double t = std::tanh(static_cast<double>(f) / 16);
    float ft = static_cast<float>(static_cast<double>(f) / 16);
    t = std::tanh(static_cast<double>(ft));
    EXPECT_NEAR(reference::router_tanh(ft), t, 4.8e-7 * std::fabs(t) + 1e-45) << ft;
  }
  EXPECT_EQ(reference::router_sigmoid(kInf), 1.f);
  EXPECT_EQ(reference::router_sigmoid(-kInf), 0.f);
  EXPECT_EQ(reference::router_tanh(kInf), 1.f);
  EXPECT_EQ(reference::router_tanh(-kInf), -1.f);
  EXPECT_EQ(reference::router_tanh(0.f), 0.f);
}

TEST(TopkSoftmaxReference, HandComputed) {
  HostTensor x = row_tensor(DType::kFloat32, {{1, 2, 3, 4}, {0.5, 0.5, 0.5, 0.5}});
  auto p = softmax({1, 2, 3, 4});
  Out o(2, 2);
  reference::topk_softmax(o.w.view(), o.ids.view(), x.view());
  expect_row(o, 0, {3, 2}, {p[3], p[2]});
  expect_row(o, 1, {0, 1}, {0.25, 0.25});  // constant row: all ties, lower index first
  Out r(2, 2);
  reference::topk_softmax(r.w.view(), r.ids.view(), x.view(), true);
  expect_row(r, 0, {3, 2}, {p[3] / (p[2] + p[3]), p[2] / (p[2] + p[3])});
  expect_row(r, 1, {0, 1}, {0.5, 0.5});
}

TEST(TopkSoftmaxReference, NonFiniteLogits) {
  HostTensor x = row_tensor(DType::kFloat32, {{0, kInf, 5, kInf},
                                              {-kInf, 1, kNaN, 1},
                                              {kNaN, kNaN, kNaN, kNaN},
                                              {-kInf, -kInf, -kInf, -kInf}});
  Out o(4, 3);
  reference::topk_softmax(o.w.view(), o.ids.view(), x.view(), true);
  expect_row(o, 0, {1, 3, 0}, {0.5, 0.5, 0});  // +inf takes the mass, shared equally
  expect_row(o, 1, {1, 3, 0}, {0.5, 0.5, 0});  // NaN behaves as -inf
  expect_row(o, 2, {0, 1, 2}, {0, 0, 0});      // all NaN: experts 0..k-1, weight 0
  expect_row(o, 3, {0, 1, 2}, {0, 0, 0});
}

TEST(TopkSoftmaxReference, SoftcapAndBias) {
  HostTensor x = row_tensor(DType::kFloat32, {{100, 0, -100}});
  Out o(1, 3);
  reference::topk_softmax(o.w.view(), o.ids.view(), x.view(), false, 30.f);
  double c0 = 30 * std::tanh(100.0 / 30), c2 = -c0;
  auto p = softmax({c0, 0, c2});
  expect_row(o, 0, {0, 1, 2}, {p[0], p[1], p[2]}, 2e-6);

  HostTensor y = row_tensor(DType::kFloat32, {{2, 1, 0}});
  HostTensor b = vec_tensor(DType::kFloat32, {0, 0, 5});
  Out logit(1, 1), sel(1, 1);
  reference::topk_softmax(logit.w.view(), logit.ids.view(), y.view(), false, 0.f, b.view());
  reference::topk_softmax(sel.w.view(), sel.ids.view(), y.view(), false, 0.f, b.view(),
                          RouterBiasMode::kSelectionOnly);
  expect_row(logit, 0, {2}, {softmax({2, 1, 5})[2]});  // bias changes choice and weight
  expect_row(sel, 0, {2}, {softmax({2, 1, 0})[2]});    // bias changes the choice only
}

TEST(TopkSigmoidReference, BiasSelectsWeightStaysUnbiased) {
  HostTensor x = row_tensor(DType::kFloat32, {{0, 0, 0, 0}, {1, 2, 3, 4}, {kNaN, kNaN, kNaN, kNaN}});
  HostTensor b = vec_tensor(DType::kFloat32, {0, 1, -1, 2});
  Out o(3, 2);
  reference::topk_sigmoid(o.w.view(), o.ids.view(), x.view(), false, b.view());
  expect_row(o, 0, {3, 1}, {0.5, 0.5});
  // t = sigmoid + bias: 0.73, 1.88, -0.05, 2.98
  expect_row(o, 1, {3, 1}, {sigmoid(4), sigmoid(2)});
  expect_row(o, 2, {0, 1}, {0, 0});
  Out r(3, 2);
  reference::topk_sigmoid(r.w.view(), r.ids.view(), x.view(), true, b.view());
  expect_row(r, 1, {3, 1}, {sigmoid(4) / (sigmoid(4) + sigmoid(2)), sigmoid(2) / (sigmoid(4) + sigmoid(2))});
  expect_row(r, 2, {0, 1}, {0, 0});  // renormalising zeros keeps zeros
}

TEST(TopkSigmoidReference, HugeNegativeBiasStillSelectsCorrectly) {
  // sgl-kernel's fallback picked expert 0 again when every biased score was below -1.
  HostTensor x = row_tensor(DType::kFloat32, {{0, 0, 0, 0, 0}});
  HostTensor b = vec_tensor(DType::kFloat32, {-3e4, -1e4, -2e4, -1.5e4, -5e4});
  Out o(1, 3);
  reference::topk_sigmoid(o.w.view(), o.ids.view(), x.view(), false, b.view());
  expect_row(o, 0, {1, 3, 2}, {0.5, 0.5, 0.5});
}

TEST(MoeFusedGateReference, HandComputed) {
  // s = 0.5 everywhere; t = 0.5 + bias. Group scores (V = 2): 1.3, 1.9, 1.6, 1.1 -> keep groups
  // 1 and 2; experts by t: 2 (1.4), 4 (0.8), 5 (0.8, tie -> 4 first).
  HostTensor x = row_tensor(DType::kFloat32, {{0, 0, 0, 0, 0, 0, 0, 0}});
  HostTensor b = vec_tensor(DType::kFloat32, {0.1f, 0.2f, 0.9f, 0.0f, 0.3f, 0.3f, 0.05f, 0.05f});
  MoeFusedGateOptions opt;
  opt.num_expert_group = 4;
  opt.topk_group = 2;
  opt.topk = 3;
  opt.num_fused_shared_experts = 1;
  opt.routed_scaling_factor = 2.5;
  Out o(1, 3);
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {2, 4, 8}, {0.5, 0.5, 0.4});
  opt.apply_routed_scaling_factor_on_output = true;
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {2, 4, 8}, {1.25, 1.25, 1.0});
  opt.renormalize = false;  // plain sigmoids, shared = sum / rsf, then * rsf
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {2, 4, 8}, {1.25, 1.25, 1.0});
  opt.apply_routed_scaling_factor_on_output = false;
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {2, 4, 8}, {0.5, 0.5, 0.4});
  // One group kept, S = 2: group 1 wins, its two experts, shared ids 8 and 9.
  opt = MoeFusedGateOptions{};
  opt.num_expert_group = 4;
  opt.topk = 4;
  opt.num_fused_shared_experts = 2;
  opt.routed_scaling_factor = 2.0;
  Out s(1, 4);
  reference::moe_fused_gate(x.view(), b.view(), s.w.view(), s.ids.view(), opt);
  expect_row(s, 0, {2, 3, 8, 9}, {0.5, 0.5, 0.5, 0.5});
}

TEST(MoeFusedGateReference, GroupTiesKeepLowerGroups) {
  HostTensor x = row_tensor(DType::kFloat32, {std::vector<float>(16, 0.f)});
  HostTensor b = vec_tensor(DType::kFloat32, std::vector<float>(16, 0.f));
  MoeFusedGateOptions opt;
  opt.num_expert_group = 8;
  opt.topk_group = 3;
  opt.topk = 5;
  Out o(1, 5);
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {0, 1, 2, 3, 4}, {0.2, 0.2, 0.2, 0.2, 0.2});
}

TEST(MoeFusedGateReference, HalfInputsRoundTheBiasedScore) {
  // t1 = 0.5 + 2^-9 is a bf16 midpoint and rounds to 0.5 (even): tie with expert 0, which wins.
  // In fp32 expert 1 wins.
  MoeFusedGateOptions opt;
  opt.topk = 1;
  for (DType dt : {DType::kBFloat16, DType::kFloat32}) {
    HostTensor x = row_tensor(dt, {{0, 0}});
    HostTensor b = vec_tensor(DType::kFloat32, {0.f, 0.001953125f});
    Out o(1, 1);
    reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
    EXPECT_EQ(o.ids.get(0), dt == DType::kBFloat16 ? 0 : 1) << dtype_name(dt);
  }
}

TEST(MoeFusedGateReference, OneExpertPerGroupAndNaN) {
  HostTensor x = row_tensor(DType::kFloat32, {{0, 1, 2, 3}, {kNaN, kNaN, kNaN, kNaN}});
  HostTensor b = vec_tensor(DType::kFloat32, {0, 0, 0, 0});
  MoeFusedGateOptions opt;
  opt.num_expert_group = 4;
  opt.topk_group = 2;
  opt.topk = 2;
  opt.renormalize = false;
  Out o(2, 2);
  reference::moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), opt);
  expect_row(o, 0, {3, 2}, {sigmoid(3), sigmoid(2)});
  expect_row(o, 1, {0, 1}, {0, 0});
}

TEST(KimiK2GateReference, ApplyFlagIgnoredWithoutRenormalize) {
  HostTensor x = row_tensor(DType::kFloat32, {{0, 1, 2, 3}});
  HostTensor b = vec_tensor(DType::kFloat32, {0, 0, 0, 0});
  Out o(1, 2);
  reference::kimi_k2_moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), 2, false, 2.0, true);
  expect_row(o, 0, {3, 2}, {sigmoid(3), sigmoid(2)});
  reference::kimi_k2_moe_fused_gate(x.view(), b.view(), o.w.view(), o.ids.view(), 2, true, 2.0, true);
  double s = sigmoid(3) + sigmoid(2);
  expect_row(o, 0, {3, 2}, {2 * sigmoid(3) / s, 2 * sigmoid(2) / s});
}

TEST(GroupedTopkReference, SoftmaxGroupsByTheirBestExpert) {
  // Groups of 2: best logits 1, 5, 4, 0 -> keep groups 1 and 2 -> experts 3 (5), 4 (4), 2 (3).
  HostTensor x = row_tensor(DType::kFloat32, {{1, 0, 3, 5, 4, 2, 0, -1}});
  auto p = softmax({1, 0, 3, 5, 4, 2, 0, -1});
  Out o(1, 3);
  reference::grouped_topk(o.w.view(), o.ids.view(), x.view(), 3, false, 4, 2);
  expect_row(o, 0, {3, 4, 2}, {p[3], p[4], p[2]});
  reference::grouped_topk(o.w.view(), o.ids.view(), x.view(), 3, true, 4, 2, 0, 2.0);
  double s = p[3] + p[4] + p[2];
  expect_row(o, 0, {3, 4, 2}, {2 * p[3] / s, 2 * p[4] / s, 2 * p[2] / s});
}

TEST(BiasedGroupedTopkReference, RsfAppliedWhenGiven) {
  HostTensor x = row_tensor(DType::kFloat32, {{0, 1, 2, 3, 4, 5, 6, 7}});
  HostTensor b = vec_tensor(DType::kFloat32, std::vector<float>(8, 0.f));
  Out o(1, 2);
  reference::biased_grouped_topk(o.w.view(), o.ids.view(), x.view(), b.view(), 2, false, 2, 1, 0, 2.5);
  expect_row(o, 0, {7, 6}, {2.5 * sigmoid(7), 2.5 * sigmoid(6)});
  reference::biased_grouped_topk(o.w.view(), o.ids.view(), x.view(), b.view(), 2, true, 2, 1, 0, 2.5);
  double s = sigmoid(7) + sigmoid(6);
  expect_row(o, 0, {7, 6}, {2.5 * sigmoid(7) / s, 2.5 * sigmoid(6) / s});
}

TEST(RouterReference, ZeroRowsLeaveOutputsUntouched) {
  HostTensor x(DType::kFloat32, {0, 8});
  Out o(0, 2);
  reference::topk_softmax(o.w.view(), o.ids.view(), x.view());
  topk_softmax(o.w.view(), o.ids.view(), x.view());
  SUCCEED();
}

}  // namespace
}  // namespace moekit::test
