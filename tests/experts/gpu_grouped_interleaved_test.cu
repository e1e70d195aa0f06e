// The grouped prefill path with interleaved w13 (row 2j = gate_j, row 2j+1 = up_j; GEMM 1's fp32 rows
// then hold gate/up pairs, which the activation kernel reads; or, opt-in, GEMM 1 computes the
// activation in its epilogue): bit-identical to the same path on the halves layout of the same weights
// (same fp32 accumulators, one rounding R1 either way), and close to the oracle.
// Runs the layer through the internal launcher (cuda::fused_experts), the grouped path forced.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "common/cuda_test_util.h"
#include "experts/configs.h"
#include "experts/cuda/launcher.h"
#include "moekit/experts.h"
#include "moekit/gpu_experts.h"

namespace moekit::test {
namespace {

enum class Routing { kUniform, kSkewed, kHalfEmpty, kDropped };

struct Layer {
  DType dtype;
  int64_t M, E, k, H, I;
  Activation act = Activation::kSiluAndMul;
  bool bias = true;
  double rsf = 1.0;
};

struct HostLayer {
  HostTensor x, w13, w13i, b13, b13i, w2, b2, tw, ids;  // w13i / b13i: interleaved rows
};

// Rows [j] and [I + j] of each expert's [2I, cols] block become rows 2j and 2j + 1.
HostTensor interleave_rows(const HostTensor& halves, int64_t E, int64_t I) {
  HostTensor out(halves.dtype(), halves.shape());
  const size_t row_bytes = halves.nbytes() / size_t(E * 2 * I);
  const auto* src = static_cast<const unsigned char*>(halves.data());
  auto* dst = static_cast<unsigned char*>(out.data());
  for (int64_t e = 0; e < E; ++e)
    for (int64_t j = 0; j < I; ++j) {
      const int64_t base = e * 2 * I;
      std::memcpy(dst + (base + 2 * j) * row_bytes, src + (base + j) * row_bytes, row_bytes);
      std::memcpy(dst + (base + 2 * j + 1) * row_bytes, src + (base + I + j) * row_bytes, row_bytes);
    }
  return out;
}

HostLayer make_layer(const Layer& L, Routing routing, std::mt19937_64& rng) {
  HostLayer h;
  h.x = HostTensor(L.dtype, {L.M, L.H});
  h.x.fill_normal(rng);
  h.w13 = HostTensor(L.dtype, {L.E, 2 * L.I, L.H});
  h.w13.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(L.H)));
  h.w13i = interleave_rows(h.w13, L.E, L.I);
  h.w2 = HostTensor(L.dtype, {L.E, L.H, L.I});
  h.w2.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(L.I)));
  h.b13 = HostTensor(DType::kFloat32, {L.E, 2 * L.I});
  h.b13.fill_normal(rng, 0.0, 0.5);
  h.b13i = interleave_rows(h.b13, L.E, L.I);
  h.b2 = HostTensor(DType::kFloat32, {L.E, L.H});
  h.b2.fill_normal(rng, 0.0, 0.5);
  h.tw = HostTensor(DType::kFloat32, {L.M, L.k});
  h.tw.fill_uniform(rng, 0.05, 1.0);
  h.ids = HostTensor(DType::kInt32, {L.M, L.k});
  std::vector<int> perm(L.E);
  std::iota(perm.begin(), perm.end(), 0);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  for (int64_t m = 0; m < L.M; ++m) {
    for (int64_t t = 0; t < L.k; ++t) {  // k distinct experts per token
      std::uniform_int_distribution<int64_t> d(t, L.E - 1);
      std::swap(perm[t], perm[d(rng)]);
    }
    for (int64_t t = 0; t < L.k; ++t) {
      int e = perm[t];
      // Skewed: slot 0 on expert 0 for 3 tokens in 4 (one large group, many small ones).
      if (routing == Routing::kSkewed && t == 0 && u01(rng) < 0.75) e = 0;
      if (routing == Routing::kHalfEmpty) e = (e / 2) * 2;  // odd experts never chosen
      if (routing == Routing::kDropped && (m + t) % 3 == 0) e = -1;
      h.ids.set(m * L.k + t, e);
    }
  }
  return h;
}

struct DeviceLayer {
  DeviceTensor x, w13, w13i, b13, b13i, w2, b2, tw, ids;
  explicit DeviceLayer(const HostLayer& h)
      : x(h.x), w13(h.w13), w13i(h.w13i), b13(h.b13), b13i(h.b13i), w2(h.w2), b2(h.b2), tw(h.tw),
        ids(h.ids) {}
};

// The grouped path, tile `tile`, for the layer's lifetime in the test.
class ForceTile {
 public:
  explicit ForceTile(const char* tile) { cuda::force_experts_tile(tile); }
  ~ForceTile() { cuda::force_experts_tile(nullptr); }
};

// Scratch for the layer (the size the public query reports on the grouped path, with the fp32
// gate/up rows only where GEMM 1 does not apply the activation), poisoned.
DeviceTensor workspace_for(const Layer& L, bool interleaved) {
  const cuda::ExpertsPlan plan = cuda::choose_experts_plan(L.M, static_cast<int>(L.k), L.E, L.H, L.I, true, interleaved);
  const size_t bytes = cuda::experts_workspace_layout(L.M, L.k, L.E, L.H, L.I, dtype_size(L.dtype), cuda::kMinTileTokens,
                                                      true, 2 * L.I, plan.fused_act, plan.gemm2_tail_split)
                           .total;
  HostTensor poisoned(DType::kUInt8, {int64_t(bytes)});
  std::memset(poisoned.data(), 0x7F, poisoned.nbytes());  // nothing may rely on zeros
  return DeviceTensor(poisoned);
}

// One layer through the internal launcher into `out`; interleaved picks w13i / b13i and sets the
// layout flag.
void run_layer(const Layer& L, const DeviceLayer& d, bool interleaved, const DeviceTensor& out,
               const DeviceTensor& ws, cudaStream_t stream = nullptr) {
  ASSERT_TRUE(cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true).grouped);
  cuda::FusedExpertsArgs a{};
  a.hidden = d.x.data();
  a.w13 = interleaved ? d.w13i.data() : d.w13.data();
  a.w2 = d.w2.data();
  a.w13_bias = L.bias ? static_cast<const float*>(interleaved ? d.b13i.data() : d.b13.data()) : nullptr;
  a.w2_bias = L.bias ? static_cast<const float*>(d.b2.data()) : nullptr;
  a.topk_weights = static_cast<const float*>(d.tw.data());
  a.topk_ids = static_cast<const int*>(d.ids.data());
  a.output = out.data();
  a.workspace = ws.data();
  a.M = L.M;
  a.k = L.k;
  a.E = L.E;
  a.H = L.H;
  a.I = L.I;
  a.gated = true;
  a.gate_up_interleaved = interleaved;
  a.activation = L.act;
  if (L.act == Activation::kSwigluOai) {
    a.swiglu_alpha = 1.702f;
    a.swiglu_limit = 7.f;
  }
  a.routed_scaling_factor = float(L.rsf);
  a.dtype = L.dtype;
  cuda::fused_experts(a, Stream{stream});
}

DeviceTensor poisoned_output(const Layer& L) {
  HostTensor o(L.dtype, {L.M, L.H});
  o.poison();
  return DeviceTensor(o);
}

// GEMM 1 with the activation in its epilogue (1) or fp32 gate/up pairs + activation kernel (0) for
// interleaved layers, for the scope.
class ForceFusedAct {
 public:
  explicit ForceFusedAct(int mode) { cuda::force_grouped_fused_act(mode); }
  ~ForceFusedAct() { cuda::force_grouped_fused_act(-1); }
};

// Interleaved, both with the fused activation and with the activation kernel, against halves
// (fp32 rows + activation kernel) on one grouped tile.
void expect_bit_identical(const Layer& L, const DeviceLayer& d, const char* what) {
  DeviceTensor halves = poisoned_output(L);
  const DeviceTensor ws_halves = workspace_for(L, false);
  run_layer(L, d, false, halves, ws_halves);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const HostTensor want = halves.to_host();
  for (int fused_act : {0, 1}) {
    ForceFusedAct mode(fused_act);
    DeviceTensor interleaved = poisoned_output(L);
    const DeviceTensor ws = workspace_for(L, true);
    run_layer(L, d, true, interleaved, ws);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const HostTensor got = interleaved.to_host();
    ASSERT_EQ(first_mismatch(got, got, 0, 0), -1) << what << " fused_act " << fused_act
                                                  << ": output has NaN (unwritten?)";
    const int64_t bad = first_mismatch(got, want, 0, 0);
    EXPECT_TRUE(got.bytes_equal(want)) << what << " fused_act " << fused_act << " " << activation_name(L.act)
                                       << " bias " << L.bias << ": "
                                       << (bad >= 0 ? describe_mismatch(got, want, bad) : "bytes differ");
  }
}

using Shape4 = std::tuple<int64_t, int64_t, int64_t, int64_t>;  // E, k, H, I
using Param = std::tuple<DType, Shape4, int64_t, Routing>;
class GroupedGateUpActGpu : public ::testing::TestWithParam<Param> {};

// Every gated activation with biases, and SiLU without, against the halves layout.
TEST_P(GroupedGateUpActGpu, BitIdenticalToHalves) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  ForceTile force(cuda::kGroupedTiles[int(cuda::GroupedTileId::kCoop128)].name);
  auto [dtype, shape, M, routing] = GetParam();
  auto [E, k, H, I] = shape;
  auto rng = fresh_rng();
  Layer L{dtype, M, E, k, H, I};
  const HostLayer h = make_layer(L, routing, rng);
  const DeviceLayer d(h);
  for (Activation act : {Activation::kSiluAndMul, Activation::kGeluAndMul, Activation::kGeluTanhAndMul,
                         Activation::kSwigluOai}) {
    L.act = act;
    L.bias = true;
    L.rsf = act == Activation::kGeluAndMul ? 2.5 : 1.0;
    expect_bit_identical(L, d, "grouped128coop");
  }
  L.act = Activation::kSiluAndMul;
  L.bias = false;
  expect_bit_identical(L, d, "grouped128coop");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GroupedGateUpActGpu,
    ::testing::Combine(::testing::Values(DType::kBFloat16, DType::kFloat16),
                       ::testing::Values(Shape4(8, 2, 256, 128), Shape4(8, 1, 136, 72), Shape4(60, 4, 264, 200),
                                         Shape4(16, 4, 136, 200)),
                       ::testing::Values<int64_t>(1, 3, 130, 1000),
                       ::testing::Values(Routing::kUniform, Routing::kSkewed, Routing::kHalfEmpty,
                                         Routing::kDropped)));

// The pingpong tile for both GEMMs on the interleaved layout.
TEST(GroupedGateUpActGpuPlans, Pingpong128PlanBitIdentical) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  ForceTile force(cuda::kGroupedTiles[int(cuda::GroupedTileId::kPingpong128)].name);
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    auto rng = fresh_rng();
    Layer L{dtype, 300, 16, 4, 136, 200, Activation::kSwigluOai};
    const DeviceLayer d(make_layer(L, Routing::kSkewed, rng));
    expect_bit_identical(L, d, "grouped128pp");
  }
}

// Experts of row counts on both sides of every 64-row MMA block edge and 128-row tile edge
// (part-filled tiles), on both tiles.
TEST(GroupedGateUpActGpuPlans, BlockEdgeTailsBitIdentical) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  const std::vector<int64_t> rows = {1, 63, 64, 65, 0, 127, 128, 129, 191, 192, 193};
  const int64_t M = std::accumulate(rows.begin(), rows.end(), int64_t(0));
  for (const char* tiles : {"grouped128coop", "grouped128pp"}) {
    ForceTile force(tiles);
    auto rng = fresh_rng();
    Layer L{DType::kBFloat16, M, int64_t(rows.size()), 1, 136, 200, Activation::kSiluAndMul};
    HostLayer h = make_layer(L, Routing::kUniform, rng);
    const std::vector<int> expert_of = shuffled_expert_of(rows, rng);
    for (int64_t m = 0; m < M; ++m) h.ids.set(m, expert_of[m]);
    expect_bit_identical(L, DeviceLayer(h), tiles);
  }
}

// A different tile for each GEMM ("<GEMM 1's>+<GEMM 2's>"), both ways round.
TEST(GroupedGateUpActGpuPlans, MixedTilesBitIdentical) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  for (const char* tiles : {"grouped128pp+grouped128coop", "grouped128coop+grouped128pp"}) {
    ForceTile force(tiles);
    const cuda::ExpertsPlan plan = cuda::choose_experts_plan(300, 4, 16, 136, 200, true, true);
    ASSERT_TRUE(plan.grouped) << tiles;
    ASSERT_NE(plan.grouped_tile, plan.grouped_tile2) << tiles;
    auto rng = fresh_rng();
    Layer L{DType::kBFloat16, 300, 16, 4, 136, 200, Activation::kSiluAndMul};
    L.bias = true;
    const DeviceLayer d(make_layer(L, Routing::kSkewed, rng));
    expect_bit_identical(L, d, tiles);
  }
}

// One run of the layer (interleaved w13) into a poisoned output, read back.
HostTensor run_to_host(const Layer& L, const DeviceLayer& d, const DeviceTensor& ws) {
  DeviceTensor out = poisoned_output(L);
  run_layer(L, d, true, out, ws);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return out.to_host();
}

// The oracle's output for the layer (halves weights, same logical values; biases where L.bias).
HostTensor oracle_output(const Layer& L, const HostLayer& h) {
  HostTensor want(L.dtype, {L.M, L.H});
  ExpertWeights w13, w2;
  w13.weight = h.w13.view();
  w2.weight = h.w2.view();
  if (L.bias) {
    w13.bias = h.b13.view();
    w2.bias = h.b2.view();
  }
  FusedExpertsOptions o;
  o.activation = L.act;
  o.routed_scaling_factor = L.rsf;
  if (L.act == Activation::kSwigluOai) {
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.f;
  }
  reference::fused_experts(h.x.view(), w13, w2, h.tw.view(), h.ids.view(), want.view(), o);
  return want;
}

// Against the fp64 oracle.
TEST(GroupedGateUpActGpuOracle, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  ForceFusedAct fused_act(1);  // the activation kernel path is checked against halves above
  // One tile for both GEMMs, and a different one for each, both ways round.
  for (const char* tiles : {"grouped128coop", "grouped128pp+grouped128coop", "grouped128coop+grouped128pp"})
  for (Activation act : {Activation::kSiluAndMul, Activation::kGeluAndMul, Activation::kGeluTanhAndMul,
                         Activation::kSwigluOai}) {
    ForceTile force(tiles);
    for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
      auto rng = fresh_rng();
      Layer L{dtype, 130, 12, 4, 136, 200, act, true, 1.5};
      const HostLayer h = make_layer(L, Routing::kDropped, rng);
      const HostTensor got = run_to_host(L, DeviceLayer(h), workspace_for(L, true));
      const HostTensor want = oracle_output(L, h);
      ASSERT_EQ(first_mismatch(got, got, 0, 0), -1) << tiles << " " << activation_name(act) << ": NaN in output";
      EXPECT_LT(rel_frobenius(got, want), 1e-2) << tiles << " " << activation_name(act);
    }
  }
}

// The public op on its own plan with the workspace its size query reports, halves (outs[0]) and
// interleaved (outs[1]); sizes[i] the queried bytes.
void run_public_both_layouts(const Layer& L, Routing routing, HostTensor (&outs)[2], size_t (&sizes)[2]) {
  auto rng = fresh_rng();
  const HostLayer h = make_layer(L, routing, rng);
  const DeviceLayer d(h);
  for (int interleaved = 0; interleaved < 2; ++interleaved) {
    ExpertWeights w13, w2;
    w13.weight = interleaved ? d.w13i.view() : d.w13.view();
    w13.bias = interleaved ? d.b13i.view() : d.b13.view();
    w2.weight = d.w2.view();
    w2.bias = d.b2.view();
    FusedExpertsOptions o;
    o.activation = L.act;
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.f;
    o.gate_up_interleaved = interleaved != 0;
    sizes[interleaved] = fused_experts_workspace_size(d.x.view(), w13, w2, d.ids.view(), o);
    HostTensor ws_h(DType::kUInt8, {int64_t(sizes[interleaved])});
    std::memset(ws_h.data(), 0x7F, ws_h.nbytes());
    DeviceTensor ws(ws_h), out = poisoned_output(L);
    fused_experts(d.x.view(), w13, w2, d.tw.view(), d.ids.view(), out.view(), ws.view(), o);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    outs[interleaved] = out.to_host();
  }
}

// A prefill batch (the grouped path, fp32 gate/up rows): interleaved == halves.
TEST(GroupedGateUpActGpuPublic, DefaultPlanBitIdentical) {
  MOEKIT_REQUIRE_GPU();
  Layer L{DType::kBFloat16, 1000, 8, 2, 256, 200, Activation::kSwigluOai};
  ASSERT_EQ(cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true).grouped,
            cuda::grouped_experts_available());
  HostTensor outs[2];
  size_t sizes[2];
  run_public_both_layouts(L, Routing::kSkewed, outs, sizes);
  ASSERT_EQ(first_mismatch(outs[0], outs[0], 0, 0), -1) << "halves output has NaN";
  EXPECT_TRUE(outs[1].bytes_equal(outs[0]));
}

// Under 128 tokens per expert the plan fuses the activation into GEMM 1 for the interleaved layout:
// the size query then leaves out the fp32 gate/up rows, and the smaller workspace suffices.
TEST(GroupedGateUpActGpuPublic, FusedPlanNeedsNoGateUpRows) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  Layer L{DType::kBFloat16, 300, 16, 4, 136, 200, Activation::kSiluAndMul};
  ASSERT_TRUE(cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true, true).fused_act);
  HostTensor outs[2];
  size_t sizes[2];
  run_public_both_layouts(L, Routing::kUniform, outs, sizes);
  EXPECT_GE(sizes[0] - sizes[1], size_t(L.M * L.k * 2 * L.I * 4)) << sizes[0] << " vs " << sizes[1];
  ASSERT_EQ(first_mismatch(outs[0], outs[0], 0, 0), -1) << "halves output has NaN";
  EXPECT_TRUE(outs[1].bytes_equal(outs[0]));
}

// No tokens: nothing launched, no error, on the grouped tile too.
TEST(GroupedGateUpActGpuPublic, ZeroTokens) {
  MOEKIT_REQUIRE_GPU();
  ForceTile force(cuda::kGroupedTiles[int(cuda::GroupedTileId::kCoop128)].name);
  auto rng = fresh_rng();
  Layer L{DType::kBFloat16, 0, 8, 2, 136, 200, Activation::kSiluAndMul};
  const DeviceLayer d(make_layer(L, Routing::kUniform, rng));
  ExpertWeights w13, w2;
  w13.weight = d.w13i.view();
  w2.weight = d.w2.view();
  FusedExpertsOptions o;
  o.gate_up_interleaved = true;
  const size_t bytes = fused_experts_workspace_size(d.x.view(), w13, w2, d.ids.view(), o);
  HostTensor ws_h(DType::kUInt8, {int64_t(bytes > 0 ? bytes : 16)});
  DeviceTensor ws(ws_h), out = poisoned_output(L);
  fused_experts(d.x.view(), w13, w2, d.tw.view(), d.ids.view(), out.view(), ws.view(), o);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// GEMM 2's tail split (plan.gemm2_tail_split) for the scope, rounds planned for `sms` CTAs.
class ForceTailSplit {
 public:
  explicit ForceTailSplit(int sms) { cuda::force_gemm2_tail_split(sms); }
  ~ForceTailSplit() { cuda::force_gemm2_tail_split(0); }
};

// (columns, splits, chunk, partial rows) of GEMM 2's tail in the last run's workspace; columns 0: none.
std::array<int, 4> tail_header(const Layer& L, const DeviceTensor& ws) {
  const cuda::ExpertsPlan plan = cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true, true);
  const size_t offset = cuda::experts_workspace_layout(L.M, L.k, L.E, L.H, L.I, dtype_size(L.dtype),
                                                       cuda::kMinTileTokens, true, 2 * L.I, plan.fused_act,
                                                       plan.gemm2_tail_split)
                            .tail_list;
  std::array<int, 4> h{};
  EXPECT_EQ(cudaMemcpy(h.data(), static_cast<const unsigned char*>(ws.data()) + offset, sizeof h,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  return h;
}

// The tail the split takes for these routed ids on `sms` CTAs, grouped_experts.cuh's rule restated
// from its comment: {columns, splits}, {0, 0} for none. Groups are the non-empty experts in order.
std::array<int, 2> expected_tail(const Layer& L, const HostTensor& ids, int sms) {
  std::vector<int> rows;
  for (int64_t e = 0; e < L.E; ++e) {
    int n = 0;
    for (int64_t i = 0; i < L.M * L.k; ++i) n += int(ids.get(i)) == e;
    if (n > 0) rows.push_back(n);
  }
  const int cols = int(L.H / 256);
  int64_t tiles = 0;
  for (int r : rows) tiles += int64_t((r + 127) / 128) * cols;
  const int last = int(tiles % sms);
  if (last == 0 || 2 * last > sms) return {0, 0};
  int taken = 0, columns = 0;
  for (size_t i = rows.size(); i-- > 0 && taken < last;) {
    const int m = (rows[i] + 127) / 128;
    const int cut = std::min(cols, (last - taken + m - 1) / m);
    taken += cut * m;
    columns += cut;
  }
  if (2 * taken > sms) return {0, 0};
  const int splits = std::min<int64_t>(std::min(sms, cuda::kGemm2TailMaxUnits) / taken, L.I / 64);
  if (splits < 2) return {0, 0};
  const int64_t chunk = ((L.I + splits - 1) / splits + 63) / 64 * 64;
  return {columns, int((L.I + chunk - 1) / chunk)};
}

// The split forced with rounds of a few CTAs, so that these small layers end in a part-filled round:
// every run against the unsplit one (the same values but for the order of the K partial sums: two
// bf16 ulps) and the oracle, the tail taken as the rule says. K = I of 136 (two splits, the second 8
// deep), 200, 328 and 520; 1-3 output column blocks; skewed, dropped and half-empty routing.
TEST(GroupedGemm2TailSplitGpu, MatchesUnsplitAndOracle) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  ForceTile force(cuda::kGroupedTiles[int(cuda::GroupedTileId::kCoop128)].name);
  ForceFusedAct fused_act(1);
  struct Case {
    Layer L;
    Routing routing;
  };
  const Case cases[] = {
      {{DType::kBFloat16, 300, 16, 4, 512, 200, Activation::kSiluAndMul, true, 1.5}, Routing::kSkewed},
      {{DType::kFloat16, 130, 12, 4, 256, 328, Activation::kSiluAndMul, true, 1.0}, Routing::kDropped},
      {{DType::kBFloat16, 600, 8, 2, 768, 520, Activation::kSwigluOai, false, 1.0}, Routing::kHalfEmpty},
      {{DType::kBFloat16, 257, 60, 4, 512, 136, Activation::kSiluAndMul, true, 1.0}, Routing::kUniform},
  };
  for (const Case& c : cases) {
    const Layer& L = c.L;
    auto rng = fresh_rng();
    const HostLayer h = make_layer(L, c.routing, rng);
    const DeviceLayer d(h);
    const HostTensor unsplit = run_to_host(L, d, workspace_for(L, true));
    const HostTensor want = oracle_output(L, h);
    int case_splits = 0;
    for (int sms : {2, 3, 5, 7, 11, 16, 29}) {
      ForceTailSplit split(sms);
      ASSERT_TRUE(cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true, true).gemm2_tail_split);
      const DeviceTensor ws = workspace_for(L, true);
      const HostTensor got = run_to_host(L, d, ws);
      const std::array<int, 4> tail = tail_header(L, ws);
      const std::array<int, 2> expect = expected_tail(L, h.ids, sms);
      EXPECT_EQ(tail[0], expect[0]) << "tail columns, sms " << sms;
      if (expect[0] > 0) EXPECT_EQ(tail[1], expect[1]) << "splits, sms " << sms;
      case_splits += tail[0] > 0;
      const std::string what = "M " + std::to_string(L.M) + " H " + std::to_string(L.H) + " I " +
                               std::to_string(L.I) + " sms " + std::to_string(sms) + " tail columns " +
                               std::to_string(tail[0]) + " splits " + std::to_string(tail[1]);
      ASSERT_EQ(first_mismatch(got, got, 0, 0), -1) << what << ": NaN in output (unwritten?)";
      const int64_t bad = first_mismatch(got, unsplit, 0.02, 0.01);
      EXPECT_EQ(bad, -1) << what << ": " << (bad >= 0 ? describe_mismatch(got, unsplit, bad) : "");
      EXPECT_LT(rel_frobenius(got, want), 1e-2) << what;
    }
    EXPECT_GE(case_splits, 1) << "no run of M " << L.M << " split a tail";
  }
}

TEST(GroupedGateUpActGpuGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  ForceTile force(cuda::kGroupedTiles[int(cuda::GroupedTileId::kCoop128)].name);
  ForceFusedAct fused_act(1);  // the activation kernel path is checked against halves above
  auto rng = fresh_rng();
  Layer L{DType::kBFloat16, 700, 64, 8, 512, 128, Activation::kSiluAndMul};
  const DeviceLayer d(make_layer(L, Routing::kUniform, rng));
  for (int sms : {0, 7}) {  // and with GEMM 2's tail split
    ForceTailSplit split(sms);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    DeviceTensor eager = poisoned_output(L), replayed = poisoned_output(L);
    const DeviceTensor ws = workspace_for(L, true);
    run_layer(L, d, true, eager, ws, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    const HostTensor want = eager.to_host();
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    run_layer(L, d, true, replayed, ws, stream);
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (int rep = 0; rep < 3; ++rep) {
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      EXPECT_TRUE(replayed.to_host().bytes_equal(want)) << "replay " << rep << " tail split sms " << sms;
    }
    if (sms > 0) EXPECT_GT(tail_header(L, ws)[0], 0) << "no tail split";
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

}  // namespace
}  // namespace moekit::test
