// CPU routers against the oracle on every ISA path: the spec's grid of shapes, awkward inputs
// (ties, NaN, +-inf, huge biases, half logits), thread-count determinism, and argument errors.
#include <vector>

#include "moekit/cpu.h"
#include "routing/router_cases.h"

namespace moekit::test {
namespace {

// Runs `call` on the oracle and on the CPU entry for every ISA path and two thread counts: ids
// equal to the oracle's, weights within 1e-6 relative.
void check_against_oracle(const RouterCall& call, DType dtype, int64_t M, int64_t E,
                          bool specials, double bias_scale, std::mt19937_64& rng) {
  SCOPED_TRACE(call.describe() + " dtype=" + dtype_name(dtype) + " M=" + std::to_string(M) +
               " E=" + std::to_string(E));
  HostTensor logits(dtype, {M, E});
  fill_logits(logits, rng, specials);
  bool gate = call.op == RouterOp::kFusedGate || call.op == RouterOp::kKimi ||
              call.op == RouterOp::kBiasedGrouped;
  HostTensor bias(gate ? dtype : DType::kFloat32, {E});
  bias.fill_normal(rng, 0.0, bias_scale);
  HostTensor w_ref(DType::kFloat32, {M, call.topk}), ids_ref(DType::kInt32, {M, call.topk});
  w_ref.poison();
  ids_ref.poison();
  call.run(true, logits.view(), bias.view(), w_ref.view(), ids_ref.view());
  for (CpuIsa isa : supported_cpu_isas()) {
    if (isa > CpuIsa::kAvx2) continue;  // the router has scalar and AVX2 paths
    set_cpu_isa(isa);
    for (int threads : {1, 3}) {
      set_cpu_threads(threads);
      HostTensor w(DType::kFloat32, {M, call.topk}), ids(DType::kInt32, {M, call.topk});
      w.poison();
      ids.poison();
      call.run(false, logits.view(), bias.view(), w.view(), ids.view());
      EXPECT_TRUE(RoutesMatch(w, ids, w_ref, ids_ref)) << cpu_isa_name(isa) << " threads " << threads;
    }
  }
  set_cpu_isa(best_cpu_isa());
  set_cpu_threads(2);
}

const std::vector<int64_t> kExperts = {8, 60, 64, 128, 160, 256, 384, 512};
const std::vector<int> kTopk = {1, 2, 6, 8, 16};

// Token counts: the large one only for fp32 (the oracle is slow), 0 and 1 everywhere.
std::vector<int64_t> tokens_for(DType dtype) {
  if (dtype == DType::kFloat32) return {0, 1, 7, 64, 1000};
  return {0, 1, 7, 64};
}

class RouterCpu : public ::testing::TestWithParam<DType> {};

TEST_P(RouterCpu, TopkSoftmaxMatchesOracle) {
  auto rng = fresh_rng();
  for (int64_t E : kExperts)
    for (int k : kTopk) {
      if (k > E) continue;
      for (int64_t M : tokens_for(GetParam())) {
        RouterCall c;
        c.op = RouterOp::kSoftmax;
        c.topk = k;
        c.renormalize = (M + k) % 2 == 0;
        if (M == 1000) continue;  // covered by the variants below with fewer experts
        check_against_oracle(c, GetParam(), M, E, M >= 7, 1.0, rng);
      }
    }
  // Softcap and bias modes, a large batch.
  for (int64_t E : {60, 256}) {
    RouterCall c;
    c.op = RouterOp::kSoftmax;
    c.topk = 8;
    c.softcap = 30.f;
    c.use_bias = true;
    c.renormalize = true;
    check_against_oracle(c, GetParam(), 1000, E, true, 1.0, rng);
    c.softcap = -0.5f;
    c.bias_mode = RouterBiasMode::kSelectionOnly;
    check_against_oracle(c, GetParam(), 64, E, false, 0.1, rng);
  }
}

TEST_P(RouterCpu, TopkSigmoidMatchesOracle) {
  auto rng = fresh_rng();
  for (int64_t E : kExperts)
    for (int k : kTopk) {
      if (k > E) continue;
      for (int64_t M : {0, 1, 7, 64}) {
        RouterCall c;
        c.op = RouterOp::kSigmoid;
        c.topk = k;
        c.renormalize = k % 2 == 0;
        c.use_bias = M % 2 == 1;
        check_against_oracle(c, GetParam(), M, E, M >= 7, 1.0, rng);
      }
    }
  for (double bias_scale : {1e-3, 1e4}) {
    RouterCall c;
    c.op = RouterOp::kSigmoid;
    c.topk = 8;
    c.use_bias = true;
    c.renormalize = true;
    check_against_oracle(c, GetParam(), 1000, 256, true, bias_scale, rng);
  }
}

TEST_P(RouterCpu, GroupedGatesMatchOracle) {
  auto rng = fresh_rng();
  for (int64_t E : kExperts)
    for (int G : {1, 4, 8})
      for (int k : kTopk) {
        if (E % G) continue;
        const int V = static_cast<int>(E / G);
        const int tg = G == 1 ? 1 : G / 2;
        if (k > tg * V) continue;
        for (RouterOp op : {RouterOp::kFusedGate, RouterOp::kBiasedGrouped, RouterOp::kGrouped}) {
          RouterCall c;
          c.op = op;
          c.topk = k + (k % 3 == 0 ? 2 : 0);
          c.shared = c.topk - k;
          c.groups = G;
          c.topk_group = tg;
          c.rsf = 2.5;
          c.apply = k % 2 == 0;
          c.renormalize = k != 2;
          c.use_bias = true;
          check_against_oracle(c, GetParam(), 7, E, true, 0.5, rng);
        }
      }
  // DeepSeek-V3 shape, a large batch; biases up to 1e4.
  RouterCall c;
  c.op = RouterOp::kFusedGate;
  c.topk = 9;
  c.shared = 1;
  c.groups = 8;
  c.topk_group = 4;
  c.rsf = 2.5;
  c.use_bias = true;
  check_against_oracle(c, GetParam(), GetParam() == DType::kFloat32 ? 1000 : 64, 256, true, 1.0, rng);
  check_against_oracle(c, GetParam(), 64, 256, true, 1e4, rng);
}

TEST_P(RouterCpu, KimiGateMatchesOracle) {
  auto rng = fresh_rng();
  for (int64_t E : {256, 384, 60})
    for (int k : {1, 6, 8, 9, 16})
      for (bool renorm : {false, true}) {
        RouterCall c;
        c.op = RouterOp::kKimi;
        c.topk = k;
        c.renormalize = renorm;
        c.apply = true;
        c.rsf = 2.872;
        c.use_bias = true;
        check_against_oracle(c, GetParam(), 64, E, true, 0.5, rng);
      }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RouterCpu,
                         ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(RouterCpuDeterminism, RepeatedRunsAreBitIdentical) {
  auto rng = fresh_rng();
  HostTensor logits(DType::kFloat32, {300, 256}), bias(DType::kFloat32, {256});
  fill_logits(logits, rng, true);
  bias.fill_normal(rng);
  HostTensor w0(DType::kFloat32, {300, 8}), i0(DType::kInt32, {300, 8});
  topk_softmax(w0.view(), i0.view(), logits.view(), true, 0.f, bias.view());
  for (int threads : {1, 2, 3, 7}) {
    set_cpu_threads(threads);
    HostTensor w(DType::kFloat32, {300, 8}), i(DType::kInt32, {300, 8});
    topk_softmax(w.view(), i.view(), logits.view(), true, 0.f, bias.view());
    EXPECT_TRUE(w.bytes_equal(w0) && i.bytes_equal(i0)) << threads << " threads";
  }
  set_cpu_threads(2);
}

TEST(RouterErrors, NameTheArgument) {
  HostTensor logits(DType::kFloat32, {4, 16}), bias(DType::kFloat32, {16});
  HostTensor w(DType::kFloat32, {4, 2}), ids(DType::kInt32, {4, 2});
  HostTensor w_bad_rows(DType::kFloat32, {3, 2}), ids_i64(DType::kInt64, {4, 2});
  HostTensor logits_i32(DType::kInt32, {4, 16}), big(DType::kFloat32, {1, 513});
  HostTensor w17(DType::kFloat32, {4, 17}), ids17(DType::kInt32, {4, 17});
  HostTensor bias_bad(DType::kFloat32, {15}), bias_bf16(DType::kBFloat16, {16});
  EXPECT_MOEKIT_ERROR(topk_softmax(w_bad_rows.view(), ids.view(), logits.view()),
                      "topk_weights: expected 4 rows");
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids_i64.view(), logits.view()),
                      "topk_indices: expected int32, got int64");
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids.view(), logits_i32.view()), "gating_output: expected");
  HostTensor w1(DType::kFloat32, {1, 2}), i1(DType::kInt32, {1, 2});
  EXPECT_MOEKIT_ERROR(topk_softmax(w1.view(), i1.view(), big.view()), "gating_output: expected 1..512 experts");
  EXPECT_MOEKIT_ERROR(topk_softmax(w17.view(), ids17.view(), logits.view()), "topk_weights.size(1): expected 1..16");
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids.view(), logits.view(), false, 0.f, bias_bad.view()),
                      "correction_bias: expected shape [16]");
  EXPECT_MOEKIT_ERROR(topk_sigmoid(w.view(), ids.view(), logits.view(), false, bias_bf16.view()),
                      "correction_bias: expected float32");
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids.view(), logits.view(), false,
                                   std::numeric_limits<float>::quiet_NaN()),
                      "moe_softcapping: expected a finite value");
  TensorView strided = logits.view();
  strided.strides[0] = 32;
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids.view(), strided), "gating_output: expected a contiguous tensor");

  MoeFusedGateOptions o;
  o.num_expert_group = 3;
  o.topk = 2;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "num_expert_group: expected a divisor of E = 16, got 3");
  o.num_expert_group = 4;
  o.topk_group = 5;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "topk_group: expected 1..num_expert_group = 4, got 5");
  o.topk_group = 1;
  o.num_fused_shared_experts = 1;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "routed_scaling_factor: expected a finite value > 0");
  o.num_fused_shared_experts = 0;
  o.apply_routed_scaling_factor_on_output = true;
  o.routed_scaling_factor = -1;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "routed_scaling_factor: expected a finite value > 0");
  o = MoeFusedGateOptions{};
  o.topk = 3;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "topk_weights: expected 3 columns");
  o.topk = 2;
  o.num_fused_shared_experts = 2;
  o.routed_scaling_factor = 1;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), o),
                      "topk - num_fused_shared_experts: expected 1..16");
  o = MoeFusedGateOptions{};
  o.topk = 2;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), TensorView{}, w.view(), ids.view(), o),
                      "bias: expected a tensor");
  HostTensor w8(DType::kFloat32, {4, 8}), i8(DType::kInt32, {4, 8});
  o.topk = 8;
  o.num_expert_group = 8;
  EXPECT_MOEKIT_ERROR(moe_fused_gate(logits.view(), bias.view(), w8.view(), i8.view(), o),
                      "topk: expected routed experts (8) <= topk_group * experts per group = 1 * 2");
  EXPECT_MOEKIT_ERROR(kimi_k2_moe_fused_gate(logits.view(), bias.view(), w.view(), ids.view(), 2, true, 0.0, true),
                      "routed_scaling_factor");
  EXPECT_MOEKIT_ERROR(biased_grouped_topk(w.view(), ids.view(), logits.view(), bias.view(), 2, true, 4, 2, 0, 0.0),
                      "routed_scaling_factor");
  EXPECT_MOEKIT_ERROR(grouped_topk(w.view(), ids.view(), logits.view(), 2, true, 5, 2), "num_expert_group");
  TensorView on_gpu = logits.view();
  on_gpu.device = Device{DeviceKind::kCUDA, 0};
  EXPECT_MOEKIT_ERROR(topk_softmax(w.view(), ids.view(), on_gpu), "topk_weights: expected a tensor on cuda");
}

}  // namespace
}  // namespace moekit::test
