// GPU fused_experts / fused_moe vs a naive GPU reference (one thread per output value, fp32 sums,
// the same rounding points), itself checked against fp64 CPU loops on a small shape.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/cuda_test_util.h"
#include "experts/configs.h"
#include "experts/cuda/expert_gemm_launch.h"
#include "experts/cuda/launcher.h"
#include "moekit/gpu_experts.h"

namespace moekit::test {
namespace {

template <typename T>
__device__ float to_f(T v) { return static_cast<float>(v); }
template <>
__device__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <>
__device__ float to_f<__half>(__half v) { return __half2float(v); }
template <typename T>
__device__ float round_t(float v);
template <>
__device__ float round_t<__nv_bfloat16>(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
template <>
__device__ float round_t<__half>(float v) { return __half2float(__float2half_rn(v)); }

__device__ float ref_act(int act, float x) {
  if (act == 1) return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
  if (act == 2) return 0.5f * x * (1.f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return x / (1.f + expf(-x));
}

// a[p, f] for pair p = m*k+t (pairs with invalid ids left at 0).
template <typename T>
__global__ void ref_stage1(const T* x, const T* w13, const float* b13, const int* ids, int64_t M,
                           int k, int E, int H, int I, bool gated, int act, float alpha, float limit,
                           float* a) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= M * k * I) return;
  const int64_t p = idx / I;
  const int f = static_cast<int>(idx % I);
  const int e = ids[p];
  if (e < 0 || e >= E) { a[idx] = 0.f; return; }
  const int64_t R = gated ? 2 * I : I;
  const T* xr = x + (p / k) * H;
  const T* g = w13 + (int64_t(e) * R + f) * H;
  float sg = 0.f, su = 0.f;
  for (int h = 0; h < H; ++h) sg += to_f(xr[h]) * to_f(g[h]);
  if (b13) sg += b13[int64_t(e) * R + f];
  float v;
  if (gated) {
    const T* u = g + int64_t(I) * H;
    for (int h = 0; h < H; ++h) su += to_f(xr[h]) * to_f(u[h]);
    if (b13) su += b13[int64_t(e) * R + I + f];
    if (act == 3) {  // kSwigluOai
      const float g = fminf(sg, limit), u = fminf(fmaxf(su, -limit), limit);
      v = g / (1.f + expf(-alpha * g)) * (u + 1.f);
    } else {
      v = ref_act(act, sg) * su;
    }
  } else {
    v = ref_act(act, sg);
  }
  a[idx] = round_t<T>(v);
}

template <typename T>
__global__ void ref_stage2(const float* a, const T* w2, const float* b2, const int* ids,
                           const float* tw, int64_t M, int k, int E, int H, int I, float* y) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= M * k * H) return;
  const int64_t p = idx / H;
  const int n = static_cast<int>(idx % H);
  const int e = ids[p];
  if (e < 0 || e >= E) { y[idx] = 0.f; return; }
  const T* w = w2 + (int64_t(e) * H + n) * I;
  float s = 0.f;
  for (int i = 0; i < I; ++i) s += a[p * I + i] * to_f(w[i]);
  if (b2) s += b2[int64_t(e) * H + n];
  y[idx] = round_t<T>(tw[p] * s);
}

template <typename T>
__global__ void ref_combine(const float* y, int64_t M, int k, int H, float rsf, T* out) {
  const int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (idx >= M * H) return;
  const int64_t m = idx / H;
  const int n = static_cast<int>(idx % H);
  float s = 0.f;
  for (int t = 0; t < k; ++t) s += y[(m * k + t) * H + n];
  out[idx] = static_cast<T>(s * rsf);
}

struct Layer {
  int64_t M, E, k, H, I;
  DType dtype;
  Activation act = Activation::kSiluAndMul;
  double rsf = 1.0;
  bool bias = false;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.f;  // kSwigluOai only
};

bool gated(Activation a) { return a != Activation::kSilu && a != Activation::kGelu; }
int act_code(Activation a) {
  if (a == Activation::kGeluAndMul || a == Activation::kGelu) return 1;
  if (a == Activation::kGeluTanhAndMul) return 2;
  if (a == Activation::kSwigluOai) return 3;
  return 0;
}

enum class Routing { kUniform, kOneExpert, kHalfEmpty, kDropped };

struct Inputs {
  HostTensor x, w13, w2, b13, b2, tw, ids;
};

Inputs make_inputs(const Layer& L, Routing routing, std::mt19937_64& rng) {
  Inputs in;
  const int64_t R = gated(L.act) ? 2 * L.I : L.I;
  in.x = HostTensor(L.dtype, {L.M, L.H});
  in.x.fill_normal(rng);
  in.w13 = HostTensor(L.dtype, {L.E, R, L.H});
  in.w13.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(L.H)));
  in.w2 = HostTensor(L.dtype, {L.E, L.H, L.I});
  in.w2.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(L.I)));
  if (L.bias) {
    in.b13 = HostTensor(DType::kFloat32, {L.E, R});
    in.b13.fill_normal(rng, 0.0, 0.5);
    in.b2 = HostTensor(DType::kFloat32, {L.E, L.H});
    in.b2.fill_normal(rng, 0.0, 0.5);
  }
  in.tw = HostTensor(DType::kFloat32, {L.M, L.k});
  in.tw.fill_uniform(rng, 0.05, 1.0);
  in.ids = HostTensor(DType::kInt32, {L.M, L.k});
  std::vector<int> perm(L.E);
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t m = 0; m < L.M; ++m) {
    // k distinct experts per token (partial shuffle), then shaped by the routing mode.
    for (int64_t t = 0; t < L.k; ++t) {
      std::uniform_int_distribution<int64_t> d(t, L.E - 1);
      std::swap(perm[t], perm[d(rng)]);
    }
    for (int64_t t = 0; t < L.k; ++t) {
      int e = perm[t];
      if (routing == Routing::kHalfEmpty) e = (e / 2) * 2;  // odd experts never chosen
      if (routing == Routing::kOneExpert && t == 0) e = static_cast<int>(L.E - 1);
      if (routing == Routing::kDropped && (m + t) % 3 == 0) e = -1;
      in.ids.set(m * L.k + t, e);
    }
  }
  return in;
}

template <typename T>
HostTensor gpu_reference_t(const Layer& L, const Inputs& in) {
  DeviceTensor x(in.x), w13(in.w13), w2(in.w2), tw(in.tw), ids(in.ids);
  DeviceTensor b13, b2;
  if (L.bias) {
    b13 = DeviceTensor(in.b13);
    b2 = DeviceTensor(in.b2);
  }
  HostTensor a_h(DType::kFloat32, {L.M * L.k, L.I}), y_h(DType::kFloat32, {L.M * L.k, L.H});
  HostTensor out_h(L.dtype, {L.M, L.H});
  out_h.poison();
  DeviceTensor a(a_h), y(y_h), out(out_h);
  const int th = 256;
  auto blocks = [&](int64_t n) { return static_cast<unsigned>((n + th - 1) / th); };
  const int64_t P = L.M * L.k;
  ref_stage1<T><<<blocks(P * L.I), th>>>(static_cast<const T*>(x.data()), static_cast<const T*>(w13.data()),
                                         L.bias ? static_cast<const float*>(b13.data()) : nullptr,
                                         static_cast<const int*>(ids.data()), L.M, int(L.k), int(L.E),
                                         int(L.H), int(L.I), gated(L.act), act_code(L.act),
                                         L.swiglu_alpha, L.swiglu_limit, static_cast<float*>(a.data()));
  ref_stage2<T><<<blocks(P * L.H), th>>>(static_cast<const float*>(a.data()), static_cast<const T*>(w2.data()),
                                         L.bias ? static_cast<const float*>(b2.data()) : nullptr,
                                         static_cast<const int*>(ids.data()), static_cast<const float*>(tw.data()),
                                         L.M, int(L.k), int(L.E), int(L.H), int(L.I),
                                         static_cast<float*>(y.data()));
  ref_combine<T><<<blocks(L.M * L.H), th>>>(static_cast<const float*>(y.data()), L.M, int(L.k), int(L.H),
                                            float(L.rsf), static_cast<T*>(out.data()));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return out.to_host();
}

HostTensor gpu_reference(const Layer& L, const Inputs& in) {
  return L.dtype == DType::kFloat16 ? gpu_reference_t<__half>(L, in)
                                    : gpu_reference_t<__nv_bfloat16>(L, in);
}

FusedExpertsOptions options_of(const Layer& L) {
  FusedExpertsOptions o;
  o.activation = L.act;
  o.routed_scaling_factor = L.rsf;
  if (L.act == Activation::kSwigluOai) {
    o.swiglu_alpha = L.swiglu_alpha;
    o.swiglu_limit = L.swiglu_limit;
  }
  return o;
}

struct DeviceLayer {
  DeviceTensor x, w13, w2, b13, b2, tw, ids, out, ws;
  ExpertWeights ew13, ew2;
  size_t ws_bytes = 0;
  DeviceLayer(const Layer& L, const Inputs& in) : x(in.x), w13(in.w13), w2(in.w2), tw(in.tw), ids(in.ids) {
    ew13.weight = w13.view();
    ew2.weight = w2.view();
    if (L.bias) {
      b13 = DeviceTensor(in.b13);
      b2 = DeviceTensor(in.b2);
      ew13.bias = b13.view();
      ew2.bias = b2.view();
    }
    HostTensor o(L.dtype, {L.M, L.H});
    o.poison();
    out = DeviceTensor(o);
    ws_bytes = fused_experts_workspace_size(x.view(), ew13, ew2, ids.view(), options_of(L));
    HostTensor w(DType::kUInt8, {int64_t(ws_bytes)});
    std::memset(w.data(), 0x7F, w.nbytes());  // poisoned scratch: nothing may rely on zeros
    ws = DeviceTensor(w);
  }
  void run(const Layer& L, cudaStream_t s = nullptr, TensorView output = {}) {
    fused_experts(x.view(), ew13, ew2, tw.view(), ids.view(), output.defined() ? output : out.view(),
                  ws.view(), options_of(L), Stream{s});
  }
};

void expect_close(const HostTensor& got, const HostTensor& want, const char* what) {
  ASSERT_EQ(first_mismatch(got, got, 0, 0), -1) << what << ": output has NaN (unwritten?)";
  const double err = rel_frobenius(got, want);
  EXPECT_LT(err, 1e-2) << what;
}

// The naive GPU reference against fp64 CPU loops (same rounding points) on a small layer.
TEST(FusedExpertsGpuReference, MatchesCpuLoops) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  Layer L{5, 4, 2, 64, 32, DType::kBFloat16};
  L.rsf = 1.5;
  L.bias = true;
  Inputs in = make_inputs(L, Routing::kDropped, rng);
  HostTensor got = gpu_reference(L, in);
  HostTensor want(L.dtype, {L.M, L.H});
  for (int64_t m = 0; m < L.M; ++m) {
    std::vector<double> acc(L.H, 0.0);
    for (int64_t t = 0; t < L.k; ++t) {
      const int e = static_cast<int>(in.ids.get(m * L.k + t));
      if (e < 0) continue;
      std::vector<double> a(L.I);
      for (int64_t f = 0; f < L.I; ++f) {
        double g = in.b13.get(e * 2 * L.I + f), u = in.b13.get(e * 2 * L.I + L.I + f);
        for (int64_t h = 0; h < L.H; ++h) {
          g += in.x.get(m * L.H + h) * in.w13.get((e * 2 * L.I + f) * L.H + h);
          u += in.x.get(m * L.H + h) * in.w13.get((e * 2 * L.I + L.I + f) * L.H + h);
        }
        HostTensor r(L.dtype, {1});
        r.set(0, g / (1.0 + std::exp(-g)) * u);
        a[f] = r.get(0);
      }
      for (int64_t n = 0; n < L.H; ++n) {
        double d = in.b2.get(e * L.H + n);
        for (int64_t f = 0; f < L.I; ++f) d += a[f] * in.w2.get((e * L.H + n) * L.I + f);
        HostTensor r(L.dtype, {1});
        r.set(0, in.tw.get(m * L.k + t) * d);
        acc[n] += r.get(0);
      }
    }
    for (int64_t n = 0; n < L.H; ++n) want.set(m * L.H + n, acc[n] * L.rsf);
  }
  EXPECT_LT(rel_frobenius(got, want), 2e-3);
}

// Fresh inputs for `L` with `routing`, one run on the path the plan picks, output against the
// reference (nothing to compare when M = 0).
void expect_layer_matches_reference(const Layer& L, Routing routing, const char* what) {
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, routing, rng);
  DeviceLayer d(L, in);
  d.run(L);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (L.M > 0) expect_close(d.out.to_host(), gpu_reference(L, in), what);
}

using GridParam = std::tuple<DType, std::tuple<int64_t, int64_t, int64_t, int64_t>, int64_t, Routing>;
class FusedExpertsGpu : public ::testing::TestWithParam<GridParam> {};

TEST_P(FusedExpertsGpu, MatchesReference) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, ekhi, M, routing] = GetParam();
  auto [E, k, H, I] = ekhi;
  expect_layer_matches_reference(Layer{M, E, k, H, I, dtype}, routing, "fused_experts");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedExpertsGpu,
    ::testing::Combine(
        ::testing::Values(DType::kBFloat16, DType::kFloat16),
        ::testing::Values(std::make_tuple<int64_t, int64_t, int64_t, int64_t>(8, 2, 256, 128),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(8, 1, 136, 72),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(60, 4, 264, 200),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(128, 8, 512, 96),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(256, 8, 128, 64),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(384, 8, 64, 136)),
        ::testing::Values<int64_t>(0, 1, 3, 64, 257, 4096),
        ::testing::Values(Routing::kUniform, Routing::kOneExpert, Routing::kHalfEmpty, Routing::kDropped)));

TEST(FusedExpertsGpuLarge, SeventyThousandTokens) {
  MOEKIT_REQUIRE_GPU();
  for (Routing r : {Routing::kUniform, Routing::kOneExpert})
    expect_layer_matches_reference(Layer{70000, 8, 2, 256, 128, DType::kBFloat16}, r, "M=70000");
}

// Each form of the route prep at its bounds: one CTA (4095 pairs), one recounting CTA a chunk
// (4096 and 65536 pairs), the cooperative grid (65537 pairs).
TEST(FusedExpertsGpuLarge, RoutePrepForms) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t M : {4095, 4096, 65536, 65537})
    for (Routing r : {Routing::kUniform, Routing::kOneExpert, Routing::kDropped})
      expect_layer_matches_reference(Layer{M, 60, 1, 64, 64, DType::kBFloat16}, r, "route prep forms");
  // A recounting grid whose last chunk holds one pair: 8193 pairs.
  expect_layer_matches_reference(Layer{8193, 12, 1, 64, 64, DType::kBFloat16}, Routing::kUniform, "one-pair chunk");
}

// The cooperative route prep with fewer CTAs than chunks of pairs (as on a partitioned GPU), each
// CTA counting and scattering several chunks: 4098 and 10000 pairs (5 and 10 chunks) over 3 CTAs.
// Small enough for the sanitizers (scripts/gpu-check sanitize).
TEST(FusedExpertsGpuLarge, RoutePrepSeveralChunksPerCta) {
  MOEKIT_REQUIRE_GPU();
  struct Cap {
    Cap() { cuda::force_route_prep_ctas(3); }
    ~Cap() { cuda::force_route_prep_ctas(0); }
  } cap;
  for (int64_t M : {2049, 5000})
    for (Routing r : {Routing::kUniform, Routing::kDropped})
      expect_layer_matches_reference(Layer{M, 60, 2, 128, 64, DType::kBFloat16}, r, "route prep, 3 CTAs");
}

TEST(FusedExpertsGpuLarge, AllTokensOnOneExpert) {
  MOEKIT_REQUIRE_GPU();
  expect_layer_matches_reference(Layer{5000, 16, 1, 512, 256, DType::kBFloat16}, Routing::kOneExpert,
                                 "one expert");
}

// Which calls run their pairs in slot order (host-side choice: checked without a GPU too): qwen3-30b-a3b
// up to 4 tokens, mixtral-8x7b and deepseek-v3 one token (experts too large to repeat).
TEST(FusedExpertsGpuFewTokens, PairsInOrderChoice) {
  for (int64_t M : {1, 2, 4}) EXPECT_TRUE(cuda::choose_experts_plan(M, 8, 128, 2048, 768, true, true).pairs_in_order);
  EXPECT_FALSE(cuda::choose_experts_plan(8, 8, 128, 2048, 768, true, true).pairs_in_order);
  EXPECT_TRUE(cuda::choose_experts_plan(1, 2, 8, 4096, 14336, true, true).pairs_in_order);
  EXPECT_FALSE(cuda::choose_experts_plan(2, 2, 8, 4096, 14336, true, true).pairs_in_order);
  EXPECT_TRUE(cuda::choose_experts_plan(1, 8, 256, 7168, 2048, true, true).pairs_in_order);
  EXPECT_FALSE(cuda::choose_experts_plan(2, 8, 256, 7168, 2048, true, true).pairs_in_order);
  EXPECT_FALSE(cuda::choose_experts_plan(9, 8, 12, 264, 200, true, false).pairs_in_order);
  // One token streams 256-deep stages: 64-row CTAs, 32-row where those would not cover the SMs.
  EXPECT_EQ(cuda::choose_experts_plan(1, 8, 128, 2048, 768, true, true).tile, cuda::TileId::kDecode8K256);
  EXPECT_EQ(cuda::choose_experts_plan(1, 8, 256, 7168, 2048, true, true).tile, cuda::TileId::kDecode8K256);
  EXPECT_EQ(cuda::choose_experts_plan(1, 2, 8, 4096, 14336, true, true).tile, cuda::TileId::kDecode8NarrowK256);
  EXPECT_EQ(cuda::choose_experts_plan(2, 8, 128, 2048, 768, true, true).tile, cuda::TileId::kDecode8);
}

// One token (and a few tokens of small experts) runs its pairs in slot order, no route prep: the
// GEMMs read the expert ids themselves. The grid above covers M = 1 and 3 with every routing mode;
// here tokens naming one expert in several slots (each slot its own row, weighted and summed in
// slot order; sorted by route prep, two pairs of one token share a tile), ids past E, and whole rows
// dropped (zero output rows), on one token (pairs in order) and on 9 (route prep), out of place
// and in place.
TEST(FusedExpertsGpuFewTokens, RepeatedAndDroppedIds) {
  MOEKIT_REQUIRE_GPU();
  const std::vector<std::vector<int>> rows = {
      {3, 3, 5, 3, 0, 5, 9, 3}, {-1, 12, 12, -1, 7, 40, 11, -1}, {-1, -1, -1, -1, -1, -1, -1, -1}};
  for (int64_t M : {1, 9})
    for (DType dtype : {DType::kBFloat16, DType::kFloat16})
      for (size_t first_row = 0; first_row < rows.size(); ++first_row) {
        Layer L{M, 12, 8, 264, 200, dtype, Activation::kSiluAndMul, 1.5, true};
        auto rng = fresh_rng();
        Inputs in = make_inputs(L, Routing::kUniform, rng);
        for (int64_t m = 0; m < M; ++m)
          for (int t = 0; t < 8; ++t) in.ids.set(m * 8 + t, rows[(first_row + m) % rows.size()][t]);
        const HostTensor want = gpu_reference(L, in);
        DeviceLayer d(L, in);
        d.run(L);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        SCOPED_TRACE(::testing::Message() << "M=" << M << " first row " << first_row);
        expect_close(d.out.to_host(), want, "repeated and dropped ids");
        d.run(L, nullptr, d.x.view());  // in place
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        expect_close(d.x.to_host(), want, "repeated and dropped ids, in place");
      }
}

// Activation `act` with biases and a routed scaling factor, bf16 and fp16, on whichever path the
// caller has the plan pick.
void expect_options_match_reference(Activation act, int64_t M, Routing routing, const char* what) {
  for (DType dtype : {DType::kBFloat16, DType::kFloat16})
    expect_layer_matches_reference(Layer{M, 16, 4, 192, 80, dtype, act, 2.5, true}, routing, what);
}

class FusedExpertsGpuOptions : public ::testing::TestWithParam<std::tuple<Activation, int64_t>> {};

TEST_P(FusedExpertsGpuOptions, ActivationsBiasScaling) {
  MOEKIT_REQUIRE_GPU();
  auto [act, M] = GetParam();
  expect_options_match_reference(act, M, Routing::kUniform, "options");
}

INSTANTIATE_TEST_SUITE_P(Acts, FusedExpertsGpuOptions,
                         ::testing::Combine(::testing::Values(Activation::kSiluAndMul, Activation::kGeluAndMul,
                                                              Activation::kGeluTanhAndMul, Activation::kSilu,
                                                              Activation::kGelu),
                                            ::testing::Values<int64_t>(2, 33, 600)));

// Every tile of the tiled path against the reference: part-filled row tiles (H = 264, I = 200), K
// not a multiple of the stage depth, gated with bias (halves and interleaved w13) and the no-mul
// epilogue, one and several token tiles per expert.
struct ForcedTile {
  explicit ForcedTile(const char* tile) { cuda::force_experts_tile(tile); }
  ~ForcedTile() { cuda::force_experts_tile(nullptr); }
};

// w13 (or its bias, cols = 1) with rows 2j = gate_j, 2j+1 = up_j, from the halves layout.
HostTensor interleave_rows(const HostTensor& t, int64_t E, int64_t I, int64_t cols) {
  HostTensor out(t.dtype(), cols == 1 ? std::vector<int64_t>{E, 2 * I} : std::vector<int64_t>{E, 2 * I, cols});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t j = 0; j < 2 * I; ++j) {
      const int64_t from = e * 2 * I + (j % 2 ? I + j / 2 : j / 2);
      for (int64_t c = 0; c < cols; ++c) out.set((e * 2 * I + j) * cols + c, t.get(from * cols + c));
    }
  return out;
}

// Runs `each` for the layer in both w13 layouts (gated) or the one (no-mul): a device layer and
// the options to call fused_experts with.
template <typename Each>
void for_each_w13_layout(const Layer& L, const Inputs& in, Each each) {
  for (bool interleaved : {false, true}) {
    if (interleaved && !gated(L.act)) continue;
    Inputs run_in = in;
    if (interleaved) {
      run_in.w13 = interleave_rows(in.w13, L.E, L.I, L.H);
      run_in.b13 = interleave_rows(in.b13, L.E, L.I, 1);
    }
    DeviceLayer d(L, run_in);
    FusedExpertsOptions o = options_of(L);
    o.gate_up_interleaved = interleaved;
    each(d, o, interleaved);
  }
}

class FusedExpertsGpuTiles : public ::testing::TestWithParam<int> {};

TEST_P(FusedExpertsGpuTiles, MatchesReference) {
  MOEKIT_REQUIRE_GPU();
  const char* tile = cuda::kGemmTiles[GetParam()].name;
  for (int64_t M : {int64_t(1), int64_t(37), int64_t(300)}) {
    for (Activation act : {Activation::kSiluAndMul, Activation::kGelu}) {
      Layer L{M, 7, 2, 264, 200, M == 37 ? DType::kFloat16 : DType::kBFloat16, act, 1.5, true};
      auto rng = fresh_rng();
      const Inputs in = make_inputs(L, M == 37 ? Routing::kDropped : Routing::kUniform, rng);
      const HostTensor want = gpu_reference(L, in);
      for_each_w13_layout(L, in, [&](DeviceLayer& d, const FusedExpertsOptions& o, bool interleaved) {
        ForcedTile force(tile);
        ASSERT_EQ(cudaMemset(d.out.data(), 0xFF, size_t(L.M * L.H) * 2), cudaSuccess);  // NaN
        fused_experts(d.x.view(), d.ew13, d.ew2, d.tw.view(), d.ids.view(), d.out.view(), d.ws.view(), o);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        SCOPED_TRACE(::testing::Message() << tile << " M=" << M << " act=" << int(act)
                                          << " interleaved=" << interleaved);
        expect_close(d.out.to_host(), want, "forced tile");
      });
    }
  }
}

// min_blocks is the residency a tile's speed was measured with: __launch_bounds__ caps the registers
// for it; this checks that shared memory allows it too (decode8k256 at one CTA an SM ran one
// token's GEMM 1 in two waves, 20% slower).
TEST_P(FusedExpertsGpuTiles, ResidesAtItsMinBlocksPerSm) {
  MOEKIT_REQUIRE_GPU();
  const auto id = cuda::TileId(GetParam());
  EXPECT_GE(cuda::expert_gemm_ctas_per_sm<__nv_bfloat16>(id), cuda::kGemmTiles[GetParam()].min_blocks);
  EXPECT_GE(cuda::expert_gemm_ctas_per_sm<__half>(id), cuda::kGemmTiles[GetParam()].min_blocks);
}

INSTANTIATE_TEST_SUITE_P(Tiled, FusedExpertsGpuTiles, ::testing::Range(0, int(cuda::TileId::kCount)),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(cuda::kGemmTiles[info.param].name);
                         });

// One token of small experts runs token_gemv.cuh's two kernels (plan.one_token; a forced tile keeps
// the tiled path, which FusedExpertsGpuTiles covers at M = 1): every activation with biases and a routed scaling
// factor, both dtypes and w13 layouts, k from 1 to the 16 slots the kernels take (17 runs tiled),
// H and I whose 16-byte chunks end part-way through a warp's sweep, and dropped slots. Then each
// column-group width of the second kernel (I = 200 / 1024 / 2048 / 2056: 8 / 4 / 2 / 1 output
// columns a CTA step) and the output aliasing the hidden row.
TEST(FusedExpertsGpuOneToken, Choice) {
  // qwen3-30b-a3b's 8 x 9.4 MB; 16 slots of 6.3 MB; not 17 slots, two tokens, a forced tile, or the
  // 705 MB of one mixtral-8x7b / deepseek-v3 token.
  EXPECT_TRUE(cuda::choose_experts_plan(1, 8, 128, 2048, 768, true, true).one_token);
  EXPECT_TRUE(cuda::choose_experts_plan(1, 16, 128, 2048, 512, true, false).one_token);
  EXPECT_FALSE(cuda::choose_experts_plan(1, 17, 128, 2048, 512, true, true).one_token);
  EXPECT_FALSE(cuda::choose_experts_plan(2, 8, 128, 2048, 768, true, true).one_token);
  EXPECT_FALSE(cuda::choose_experts_plan(1, 2, 8, 4096, 14336, true, true).one_token);
  EXPECT_FALSE(cuda::choose_experts_plan(1, 8, 256, 7168, 2048, true, true).one_token);
  ForcedTile force("decode8");
  EXPECT_FALSE(cuda::choose_experts_plan(1, 8, 128, 2048, 768, true, true).one_token);
}

TEST(FusedExpertsGpuOneToken, MatchesReference) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t k : {1, 2, 5, 8, 16, 17})
    for (Activation act : {Activation::kSiluAndMul, Activation::kGeluAndMul, Activation::kGeluTanhAndMul,
                           Activation::kSwigluOai, Activation::kSilu, Activation::kGelu}) {
      Layer L{1, 24, k, 264, 200, k % 2 ? DType::kFloat16 : DType::kBFloat16, act, 1.5, true};
      auto rng = fresh_rng();
      const Inputs in = make_inputs(L, k == 5 ? Routing::kDropped : Routing::kUniform, rng);
      const HostTensor want = gpu_reference(L, in);
      for_each_w13_layout(L, in, [&](DeviceLayer& d, const FusedExpertsOptions& o, bool interleaved) {
        ASSERT_EQ(cudaMemset(d.out.data(), 0xFF, size_t(L.H) * 2), cudaSuccess);  // NaN
        fused_experts(d.x.view(), d.ew13, d.ew2, d.tw.view(), d.ids.view(), d.out.view(), d.ws.view(), o);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        SCOPED_TRACE(::testing::Message() << "k=" << k << " act=" << int(act) << " interleaved=" << interleaved);
        expect_close(d.out.to_host(), want, "one token");
      });
    }
  for (int64_t I : {200, 1024, 2048, 2056}) {
    Layer L{1, 12, 4, 136, I, DType::kBFloat16, Activation::kSiluAndMul, 1.0, true};
    SCOPED_TRACE(::testing::Message() << "I=" << I);
    expect_layer_matches_reference(L, Routing::kUniform, "one token, column groups");
    auto rng = fresh_rng();
    const Inputs in = make_inputs(L, Routing::kUniform, rng);
    DeviceLayer d(L, in);
    d.run(L, nullptr, d.x.view());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(d.x.to_host(), gpu_reference(L, in), "one token, in place");
  }
}

TEST(FusedExpertsGpuInPlace, OutputAliasesHidden) {
  MOEKIT_REQUIRE_GPU();
  Layer L{100, 32, 4, 256, 128, DType::kBFloat16};
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, Routing::kUniform, rng);
  HostTensor want = gpu_reference(L, in);
  DeviceLayer d(L, in);
  d.run(L, nullptr, d.x.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(d.x.to_host(), want, "in place");
}

TEST(FusedExpertsGpuGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t M : {int64_t(1), int64_t(4), int64_t(700)}) {
    Layer L{M, 64, 8, 512, 128, DType::kBFloat16};
    auto rng = fresh_rng();
    Inputs in = make_inputs(L, Routing::kUniform, rng);
    DeviceLayer d(L, in);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    d.run(L, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    HostTensor eager = d.out.to_host();
    HostTensor poisoned(L.dtype, {L.M, L.H});
    poisoned.poison();
    DeviceTensor graph_out(poisoned);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    d.run(L, stream, graph_out.view());
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (int rep = 0; rep < 3; ++rep) {
      ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
      ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
      EXPECT_TRUE(graph_out.to_host().bytes_equal(eager)) << "replay " << rep;
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

TEST(FusedMoeGpu, RoutesThenMatchesFusedExperts) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t M : {int64_t(1), int64_t(77), int64_t(2000)}) {
    Layer L{M, 48, 6, 256, 64, DType::kBFloat16};
    auto rng = fresh_rng();
    HostTensor logits(DType::kFloat32, {M, L.E});
    logits.fill_normal(rng);
    Inputs in = make_inputs(L, Routing::kUniform, rng);
    // Host softmax top-k (ties -> lower index), renormalised.
    for (int64_t m = 0; m < M; ++m) {
      std::vector<double> p(L.E);
      double mx = -1e300, s = 0;
      for (int64_t e = 0; e < L.E; ++e) mx = std::max(mx, logits.get(m * L.E + e));
      for (int64_t e = 0; e < L.E; ++e) s += p[e] = std::exp(logits.get(m * L.E + e) - mx);
      std::vector<int> order(L.E);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
      double cs = 0;
      for (int64_t t = 0; t < L.k; ++t) cs += p[order[t]] / s;
      for (int64_t t = 0; t < L.k; ++t) {
        in.ids.set(m * L.k + t, order[t]);
        in.tw.set(m * L.k + t, p[order[t]] / s / cs);
      }
    }
    HostTensor want = gpu_reference(L, in);
    DeviceLayer d(L, in);
    DeviceTensor dl(logits);
    const size_t bytes = fused_moe_workspace_size(d.x.view(), d.ew13, d.ew2, dl.view(), int(L.k));
    HostTensor w(DType::kUInt8, {int64_t(bytes)});
    std::memset(w.data(), 0x7F, w.nbytes());
    DeviceTensor ws(w);
    fused_moe(d.x.view(), d.ew13, d.ew2, dl.view(), int(L.k), true, d.out.view(), ws.view());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(d.out.to_host(), want, "fused_moe");
  }
}

// The grouped prefill path (CUTLASS grouped GEMMs) forced on small and awkward shapes: single
// tokens, experts with no rows, every row on one expert, H and I not multiples of 128.
class ForceGroupedPath {
 public:
  explicit ForceGroupedPath(int tile = 0) { cuda::force_experts_tile(cuda::kGroupedTiles[tile].name); }
  ~ForceGroupedPath() { cuda::force_experts_tile(nullptr); }
};

#define MOEKIT_REQUIRE_GROUPED()                                                     \
  do {                                                                               \
    MOEKIT_REQUIRE_GPU();                                                            \
    if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS"; \
  } while (0)

using GroupedParam = std::tuple<DType, std::tuple<int64_t, int64_t, int64_t, int64_t>, int64_t, Routing>;
class FusedExpertsGpuGrouped : public ::testing::TestWithParam<GroupedParam> {};

TEST_P(FusedExpertsGpuGrouped, MatchesReference) {
  MOEKIT_REQUIRE_GROUPED();
  auto [dtype, ekhi, M, routing] = GetParam();
  auto [E, k, H, I] = ekhi;
  Layer L{M, E, k, H, I, dtype};
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, routing, rng);
  const HostTensor want = gpu_reference(L, in);
  for (int tile = 0; tile < int(cuda::GroupedTileId::kCount); ++tile) {
    ForceGroupedPath force(tile);
    ASSERT_TRUE(cuda::choose_experts_plan(M, int(k), E, H, I, true).grouped);
    DeviceLayer d(L, in);
    d.run(L);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_close(d.out.to_host(), want, cuda::kGroupedTiles[tile].name);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedExpertsGpuGrouped,
    ::testing::Combine(
        ::testing::Values(DType::kBFloat16, DType::kFloat16),
        ::testing::Values(std::make_tuple<int64_t, int64_t, int64_t, int64_t>(8, 2, 256, 128),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(8, 1, 136, 72),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(60, 4, 264, 200),
                          std::make_tuple<int64_t, int64_t, int64_t, int64_t>(384, 8, 64, 136)),
        ::testing::Values<int64_t>(1, 3, 130, 1000),
        ::testing::Values(Routing::kUniform, Routing::kOneExpert, Routing::kHalfEmpty, Routing::kDropped)));

// Part-filled token tiles: one slot a token, each expert a chosen row count on both sides of every
// 64-row MMA block edge (one warp group's rows) and 128-row tile edge, one expert empty. Checked
// per expert, so that one wrong block cannot hide in the layer's norm.
class FusedExpertsGpuGroupedTails : public ::testing::TestWithParam<DType> {};

TEST_P(FusedExpertsGpuGroupedTails, EveryBlockEdge) {
  MOEKIT_REQUIRE_GROUPED();
  const std::vector<int64_t> rows = {1, 63, 64, 65, 127, 128, 129, 191, 0, 192, 193, 255, 256, 257};
  const int64_t M = std::accumulate(rows.begin(), rows.end(), int64_t(0));
  Layer L{M, int64_t(rows.size()), 1, 136, 200, GetParam()};
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, Routing::kUniform, rng);
  const std::vector<int> expert_of = shuffled_expert_of(rows, rng);
  for (int64_t m = 0; m < M; ++m) in.ids.set(m, expert_of[m]);
  const HostTensor want = gpu_reference(L, in);
  for (int tile = 0; tile < int(cuda::GroupedTileId::kCount); ++tile) {
    ForceGroupedPath force(tile);
    DeviceLayer d(L, in);
    d.run(L);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const HostTensor got = d.out.to_host();
    ASSERT_EQ(first_mismatch(got, got, 0, 0), -1) << cuda::kGroupedTiles[tile].name << ": NaN (unwritten?)";
    std::vector<double> num(L.E), den(L.E);  // per expert: squared error, squared reference
    for (int64_t m = 0; m < M; ++m)
      for (int64_t h = 0; h < L.H; ++h) {
        const double g = got.get(m * L.H + h), w = want.get(m * L.H + h);
        num[expert_of[m]] += (g - w) * (g - w);
        den[expert_of[m]] += w * w;
      }
    for (int64_t e = 0; e < L.E; ++e)
      if (rows[e] > 0)
        EXPECT_LT(std::sqrt(num[e] / den[e]), 1e-2)
            << cuda::kGroupedTiles[tile].name << ", expert " << e << " of " << rows[e] << " rows";
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, FusedExpertsGpuGroupedTails,
                         ::testing::Values(DType::kBFloat16, DType::kFloat16));

class FusedExpertsGpuGroupedOptions : public ::testing::TestWithParam<std::tuple<Activation, int64_t>> {};

TEST_P(FusedExpertsGpuGroupedOptions, ActivationsBiasScaling) {
  MOEKIT_REQUIRE_GROUPED();
  ForceGroupedPath force;
  auto [act, M] = GetParam();
  expect_options_match_reference(act, M, Routing::kDropped, "grouped options");
}

INSTANTIATE_TEST_SUITE_P(Acts, FusedExpertsGpuGroupedOptions,
                         ::testing::Combine(::testing::Values(Activation::kSiluAndMul, Activation::kGeluAndMul,
                                                              Activation::kGeluTanhAndMul, Activation::kSwigluOai,
                                                              Activation::kSilu, Activation::kGelu),
                                            ::testing::Values<int64_t>(2, 600)));

// The tiled path with the clamped SwiGLU too (the reference gained it with the grouped path).
TEST(FusedExpertsGpuOptionsSwiglu, TiledPath) {
  MOEKIT_REQUIRE_GPU();
  Layer L{33, 16, 4, 192, 80, DType::kBFloat16, Activation::kSwigluOai, 1.0, true};
  ASSERT_FALSE(cuda::choose_experts_plan(L.M, int(L.k), L.E, L.H, L.I, true).grouped);
  expect_layer_matches_reference(L, Routing::kUniform, "swiglu tiled");
}

TEST(FusedExpertsGpuGroupedPath, InPlaceAndGraphReplay) {
  MOEKIT_REQUIRE_GROUPED();
  ForceGroupedPath force;
  Layer L{100, 32, 4, 256, 128, DType::kBFloat16};
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, Routing::kHalfEmpty, rng);
  HostTensor want = gpu_reference(L, in);
  DeviceLayer d(L, in);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  d.run(L, stream);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  HostTensor eager = d.out.to_host();
  expect_close(eager, want, "grouped eager");
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  d.run(L, stream, d.x.view());  // in place: output aliases hidden
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(d.x.to_host().bytes_equal(eager)) << "graph replay, in place";
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Large batches take the grouped path on their own (when built with it).
TEST(FusedExpertsGpuGroupedPath, ChosenForPrefill) {
  const bool on = cuda::grouped_experts_available();
  EXPECT_EQ(cuda::choose_experts_plan(4096, 8, 128, 2048, 768, true).grouped, on);
  EXPECT_EQ(cuda::choose_experts_plan(70000, 2, 8, 256, 128, true).grouped, on);
  EXPECT_FALSE(cuda::choose_experts_plan(4, 8, 128, 2048, 768, true).grouped);
}

// GEMM 2's last round split along K where its tiles are deep (I >= 4096) and the layer fills a round:
// mixtral-8x7b from 1024 tokens, not at 256 (one part-filled round), not qwen3-30b-a3b or deepseek-v3.
TEST(FusedExpertsGpuGroupedPath, Gemm2TailSplitChoice) {
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  for (int64_t M : {1024, 4096, 8192})
    EXPECT_TRUE(cuda::choose_experts_plan(M, 2, 8, 4096, 14336, true, true).gemm2_tail_split) << M;
  EXPECT_FALSE(cuda::choose_experts_plan(256, 2, 8, 4096, 14336, true, true).gemm2_tail_split);
  EXPECT_FALSE(cuda::choose_experts_plan(8192, 8, 128, 2048, 768, true, true).gemm2_tail_split);
  EXPECT_FALSE(cuda::choose_experts_plan(8192, 8, 256, 7168, 2048, true, true).gemm2_tail_split);
  EXPECT_FALSE(cuda::choose_experts_plan(4, 2, 8, 4096, 14336, true, true).gemm2_tail_split);  // tiled path
  cuda::force_gemm2_tail_split(5);
  EXPECT_TRUE(cuda::choose_experts_plan(1000, 4, 16, 512, 200, true, true).gemm2_tail_split);
  EXPECT_FALSE(cuda::choose_experts_plan(1000, 4, 16, 136, 200, true, true).gemm2_tail_split);  // H % 256
  EXPECT_FALSE(cuda::choose_experts_plan(300, 4, 16, 512, 200, true, true).gemm2_tail_split);  // GEMM 2 pingpong
  cuda::force_gemm2_tail_split(0);
}

// The grouped path runs the activation in GEMM 1's epilogue for interleaved gated layers only, on
// every grouped tile: pingpong below 128 tokens per expert with deep K (144 with shallow K), else
// the cooperative tile, but for GEMM 2 with shallow K from 384 tokens per expert.
TEST(FusedExpertsGpuGroupedPath, FusedActivationChoice) {
  if (!cuda::grouped_experts_available()) GTEST_SKIP() << "built without CUTLASS";
  // qwen3-30b-a3b at 1024 / 2048 / 4096 / 8192 tokens, mixtral-8x7b at 4096 / 8192, deepseek-v3 at 2048.
  EXPECT_TRUE(cuda::choose_experts_plan(1024, 8, 128, 2048, 768, true, true).fused_act);
  EXPECT_FALSE(cuda::choose_experts_plan(1024, 8, 128, 2048, 768, true, false).fused_act);
  EXPECT_FALSE(cuda::choose_experts_plan(1024, 8, 128, 2048, 768, false, true).fused_act);
  EXPECT_EQ(cuda::choose_experts_plan(2048, 8, 128, 2048, 768, true, true).grouped_tile,
            cuda::GroupedTileId::kPingpong128);
  EXPECT_TRUE(cuda::choose_experts_plan(4096, 8, 128, 2048, 768, true, true).fused_act);
  EXPECT_EQ(cuda::choose_experts_plan(2176, 8, 128, 2048, 768, true, true).grouped_tile,
            cuda::GroupedTileId::kPingpong128);  // 136 tokens per expert
  EXPECT_EQ(cuda::choose_experts_plan(2304, 8, 128, 2048, 768, true, true).grouped_tile,
            cuda::GroupedTileId::kCoop128);  // 144
  EXPECT_EQ(cuda::choose_experts_plan(3072, 8, 128, 2048, 768, true, true).grouped_tile,
            cuda::GroupedTileId::kCoop128);
  // qwen3 M = 4096: both cooperative; M = 8192: GEMM 2 on pingpong.
  const cuda::ExpertsPlan q4 = cuda::choose_experts_plan(4096, 8, 128, 2048, 768, true, true);
  EXPECT_EQ(q4.grouped_tile, cuda::GroupedTileId::kCoop128);
  EXPECT_EQ(q4.grouped_tile2, cuda::GroupedTileId::kCoop128);
  const cuda::ExpertsPlan qw = cuda::choose_experts_plan(8192, 8, 128, 2048, 768, true, true);
  EXPECT_TRUE(qw.grouped && qw.fused_act);
  EXPECT_EQ(qw.grouped_tile, cuda::GroupedTileId::kCoop128);
  EXPECT_EQ(qw.grouped_tile2, cuda::GroupedTileId::kPingpong128);
  // Deep K with 128+ tokens per expert: the cooperative tile, the activation still in GEMM 1.
  const cuda::ExpertsPlan mx = cuda::choose_experts_plan(8192, 2, 8, 4096, 14336, true, true);
  EXPECT_TRUE(mx.grouped && mx.fused_act);
  EXPECT_EQ(mx.grouped_tile, cuda::GroupedTileId::kCoop128);
  EXPECT_EQ(mx.grouped_tile2, cuda::GroupedTileId::kCoop128);
  EXPECT_EQ(cuda::choose_experts_plan(4096, 2, 8, 4096, 14336, true, true).grouped_tile,
            cuda::GroupedTileId::kCoop128);
  EXPECT_FALSE(cuda::choose_experts_plan(8192, 2, 8, 4096, 14336, false, true).fused_act);
  const cuda::ExpertsPlan ds = cuda::choose_experts_plan(2048, 8, 256, 7168, 2048, true, true);
  EXPECT_TRUE(ds.grouped && ds.fused_act);
  EXPECT_EQ(ds.grouped_tile, cuda::GroupedTileId::kPingpong128);
  // The layout never changes whether the grouped path (and its workspace) is taken.
  for (int64_t M : {1, 64, 512, 1024, 4096})
    EXPECT_EQ(cuda::choose_experts_plan(M, 8, 256, 7168, 2048, true, true).grouped,
              cuda::choose_experts_plan(M, 8, 256, 7168, 2048, true, false).grouped);
}

// More than 2^31 elements in the hidden states and the output (and twice that in the gathered and
// down rows): every offset where rows meet strides must be 64-bit. Rows on both sides of element
// 2^31 (and the first and last rows) are compared with the reference run on those rows alone: a
// token's output depends only on its own row and routing. `tile`: a forced tile, or null for the
// plan (the grouped path where the build has it).
void expect_rows_past_int32_offsets(const char* tile) {
  const int64_t E = 4, k = 2, H = 4096, I = 64;
  const int64_t boundary_row = (int64_t{1} << 31) / H;  // its first element is element 2^31
  const int64_t M = boundary_row + 129;
  Layer L{M, E, k, H, I, DType::kBFloat16};
  auto rng = fresh_rng();
  HostTensor w13_h(L.dtype, {E, 2 * I, H}), w2_h(L.dtype, {E, H, I});
  w13_h.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(H)));
  w2_h.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(I)));
  HostTensor tw_h(DType::kFloat32, {M, k}), ids_h(DType::kInt32, {M, k});
  tw_h.fill_uniform(rng, 0.05, 1.0);
  for (int64_t m = 0; m < M; ++m) {  // two distinct experts per token, every pairing
    const int64_t e0 = m % E;
    ids_h.set(m * k, double(e0));
    ids_h.set(m * k + 1, double((e0 + 1 + (m / E) % (E - 1)) % E));
  }
  DeviceTensor x(L.dtype, {M, H}, 0), out(L.dtype, {M, H}, 0xFF);  // output poisoned (NaN)
  DeviceTensor w13(w13_h), w2(w2_h), tw(tw_h), ids(ids_h);
  fill_hashed_bf16(x.data(), M * H);
  ExpertWeights ew13, ew2;
  ew13.weight = w13.view();
  ew2.weight = w2.view();
  ForcedTile forced(tile);  // before the size query: the workspace follows the path
  const size_t ws_bytes = fused_experts_workspace_size(x.view(), ew13, ew2, ids.view(), options_of(L));
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  if (free_bytes < ws_bytes + (size_t(1) << 30))
    GTEST_SKIP() << "needs " << (ws_bytes >> 20) << " MiB of workspace, " << (free_bytes >> 20) << " MiB free";
  DeviceTensor ws(DType::kUInt8, {int64_t(ws_bytes)}, 0x7F);
  fused_experts(x.view(), ew13, ew2, tw.view(), ids.view(), out.view(), ws.view(), options_of(L));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  const std::vector<int64_t> rows = {0, 1, boundary_row - 1, boundary_row, boundary_row + 1, M - 2, M - 1};
  const int64_t n = int64_t(rows.size());
  Layer S{n, E, k, H, I, DType::kBFloat16};
  Inputs in;
  in.x = HostTensor(L.dtype, {n, H});
  in.w13 = std::move(w13_h);
  in.w2 = std::move(w2_h);
  in.tw = HostTensor(DType::kFloat32, {n, k});
  in.ids = HostTensor(DType::kInt32, {n, k});
  HostTensor got(L.dtype, {n, H});
  const size_t row_bytes = size_t(H) * dtype_size(L.dtype);
  for (int64_t r = 0; r < n; ++r) {
    const size_t offset = size_t(rows[r]) * row_bytes;
    ASSERT_EQ(cudaMemcpy(static_cast<char*>(in.x.data()) + r * row_bytes, static_cast<char*>(x.data()) + offset,
                         row_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(static_cast<char*>(got.data()) + r * row_bytes, static_cast<char*>(out.data()) + offset,
                         row_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int64_t t = 0; t < k; ++t) {
      in.tw.set(r * k + t, tw_h.get(rows[r] * k + t));
      in.ids.set(r * k + t, ids_h.get(rows[r] * k + t));
    }
  }
  expect_close(got, gpu_reference(S, in), tile ? tile : "plan");
}

TEST(FusedExpertsGpuLarge, OffsetsPastInt32Plan) {
  MOEKIT_REQUIRE_GPU();
  expect_rows_past_int32_offsets(nullptr);
}

TEST(FusedExpertsGpuLarge, OffsetsPastInt32TiledPath) {
  MOEKIT_REQUIRE_GPU();
  expect_rows_past_int32_offsets("large128");
}

TEST(FusedExpertsGpuErrors, WorkspaceTooSmall) {
  MOEKIT_REQUIRE_GPU();
  Layer L{16, 8, 2, 64, 32, DType::kBFloat16};
  auto rng = fresh_rng();
  Inputs in = make_inputs(L, Routing::kUniform, rng);
  DeviceLayer d(L, in);
  TensorView small = d.ws.view();
  small.shape[0] = 64;
  EXPECT_MOEKIT_ERROR(fused_experts(d.x.view(), d.ew13, d.ew2, d.tw.view(), d.ids.view(), d.out.view(),
                                    small, options_of(L)),
                      "workspace: expected at least");
}

}  // namespace
}  // namespace moekit::test
