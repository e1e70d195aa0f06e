#include <cmath>
#include <cstring>
#include <vector>

#include "common/cuda_test_util.h"
#include "rope/cuda/launcher.h"
#include "rope/cuda/qk_norm_rope_kernel.cuh"
#include "rope/qk_norm_rope_cases.h"
#include "rope/rotary_frequencies.h"

namespace moekit::test {
namespace {

__global__ void rotary_cos_sin_kernel(const int64_t* positions, const double* freqs, float2* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    const detail::RotaryCosSin cs = detail::rotary_cos_sin(positions[i], freqs[i]);
    out[i] = make_float2(cs.cos, cs.sin);
  }
}

// The device build of the angle helper (with fp32 FMA contraction) is within 2 fp32 ulps too.
TEST(RotaryCosSinCuda, WithinTwoUlps) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const int n = 1 << 18;
  std::vector<int64_t> p(n);
  std::vector<double> f(n);
  std::uniform_int_distribution<int64_t> pos(-2147483647, 2147483647);
  std::uniform_real_distribution<double> exponent(-12.0, 0.0);
  for (int i = 0; i < n; ++i) {
    p[i] = i % 2 ? pos(rng) : (1 << 24) + i / 2 - n / 4;
    f[i] = i % 5 == 0 ? 1.0 : std::pow(10.0, exponent(rng));
  }
  int64_t* dp = nullptr;
  double* df = nullptr;
  float2* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dp, n * 8), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&df, n * 8), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dout, n * 8), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dp, p.data(), n * 8, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(df, f.data(), n * 8, cudaMemcpyHostToDevice), cudaSuccess);
  rotary_cos_sin_kernel<<<(n + 255) / 256, 256>>>(dp, df, dout, n);
  std::vector<float2> out(n);
  ASSERT_EQ(cudaMemcpy(out.data(), dout, n * 8, cudaMemcpyDeviceToHost), cudaSuccess);
  auto ulps = [](float got, long double exact) {
    int e = 0;
    std::frexp(static_cast<double>(exact), &e);
    const double ulp = std::ldexp(1.0, std::max(e, -125) - 24);
    return std::max(std::fabs(static_cast<double>(got - exact)) - std::ldexp(1.0, -32), 0.0) / ulp;
  };
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const long double theta = static_cast<long double>(p[i]) * static_cast<long double>(f[i]);
    worst = std::max({worst, ulps(out[i].x, std::cos(theta)), ulps(out[i].y, std::sin(theta))});
  }
  EXPECT_LE(worst, 2.0);
  RecordProperty("worst_ulps", std::to_string(worst));
  cudaFree(dp);
  cudaFree(df);
  cudaFree(dout);
}

// Runs the CUDA path on device copies of `in` and brings qkv back into `in`.
void call_cuda(const RopeCase& c, RopeInputs& in, cudaStream_t stream = nullptr) {
  DeviceTensor qkv(in.qkv), qw(in.q_weight), kw(in.k_weight), pos(in.positions);
  fused_qk_norm_rope(qkv.view(), c.hq, c.hk, c.hv, c.head_dim, c.eps, qw.view(), kw.view(), c.base,
                     c.neox, pos.view(), c.factor, c.low, c.high, c.attention_factor, c.rotary_dim,
                     Stream{stream});
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  in.qkv = qkv.to_host();
}

void check_cuda(const RopeCase& c) { check_against_oracle(c, [](const RopeCase& rc, RopeInputs& in) { call_cuda(rc, in); }); }

using GridParam = std::tuple<int64_t, int, int64_t, bool, int>;
const int64_t kHeads[][3] = {{16, 8, 8}, {32, 8, 8}, {40, 8, 8}, {64, 8, 8}, {12, 1, 1}};

class QkNormRopeCudaGrid : public ::testing::TestWithParam<GridParam> {};

TEST_P(QkNormRopeCudaGrid, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [D, heads, T, neox, r_div] = GetParam();
  RopeCase c;
  c.head_dim = D;
  c.hq = kHeads[heads][0];
  c.hk = kHeads[heads][1];
  c.hv = kHeads[heads][2];
  c.tokens = T;
  c.neox = neox;
  c.rotary_dim = D / r_div;
  check_cuda(c);
}

INSTANTIATE_TEST_SUITE_P(Spec, QkNormRopeCudaGrid,
                         ::testing::Combine(::testing::Values<int64_t>(64, 128, 256),
                                            ::testing::Range(0, 5),
                                            ::testing::Values<int64_t>(1, 3, 8, 32, 256),
                                            ::testing::Bool(), ::testing::Values(1, 2, 4)));

TEST(QkNormRopeCuda, Fp16Int64PositionsAndEveryRotaryDim) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t D : {64, 128, 256})
    for (bool neox : {false, true})
      for (int64_t R = D / 32; R <= D; R += D / 32) {
        const int64_t q = R / (D / 32) / 2;
        if (neox && (R % (D / 16) || q < 1 || (q & (q - 1)))) continue;
        RopeCase c;
        c.head_dim = D;
        c.hq = 5;
        c.hk = 2;
        c.hv = 3;
        c.tokens = 7;
        c.neox = neox;
        c.rotary_dim = R;
        c.dtype = (R / (D / 32)) % 2 ? DType::kFloat16 : DType::kBFloat16;
        c.pos_dtype = (R / (D / 32)) % 3 ? DType::kInt64 : DType::kInt32;
        check_cuda(c);
      }
}

TEST(QkNormRopeCuda, LargePositions) {
  MOEKIT_REQUIRE_GPU();
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
    for (bool neox : {false, true})
      for (int64_t D : {64, 128, 256}) {
        RopeCase c;
        c.head_dim = D;
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
        check_cuda(c);
      }
}

TEST(QkNormRopeCuda, Yarn) {
  MOEKIT_REQUIRE_GPU();
  struct Setup {
    double factor, base, original;
  };
  for (Setup s : {Setup{4, 1e6, 32768}, Setup{40, 1e4, 4096}})
    for (int64_t D : {64, 128, 256})
      for (int64_t r_div : {1, 2, 4})
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
          check_cuda(c);
        }
}

// Warp units of every size (launcher.cu, rope_launch_shape): each unit takes 1..kMaxUnitRows warp
// rows of one token, the last unit of a token fewer (ragged), rows past the token's heads masked;
// enough units that warps loop over several (the next unit's loads in flight). The heuristic's own
// choice first, then every override.
TEST(QkNormRopeCuda, WarpUnitsOfEveryRowCount) {
  MOEKIT_REQUIRE_GPU();
  struct Shape {
    int64_t tokens, head_dim, hq, hk, hv, rotary_dim;
    bool neox;
  };
  for (const Shape& s : {Shape{1, 128, 32, 4, 4, 128, true}, Shape{1, 128, 96, 8, 8, 64, true},
                         Shape{2, 128, 64, 4, 4, 128, false}, Shape{3, 64, 61, 3, 1, 64, false},
                         Shape{13, 256, 13, 2, 2, 128, true}, Shape{66, 256, 40, 8, 8, 256, true},
                         Shape{131, 128, 7, 1, 1, 32, false}, Shape{700, 128, 32, 4, 4, 128, true},
                         Shape{997, 64, 13, 3, 2, 16, true}, Shape{600, 256, 5, 0, 1, 256, false}}) {
    RopeCase c;
    c.tokens = s.tokens;
    c.head_dim = s.head_dim;
    c.hq = s.hq;
    c.hk = s.hk;
    c.hv = s.hv;
    c.rotary_dim = s.rotary_dim;
    c.neox = s.neox;
    for (int unit_rows = 0; unit_rows <= cuda::kMaxUnitRows; ++unit_rows) {
      SCOPED_TRACE("unit_rows " + std::to_string(unit_rows));
      check_against_oracle(c, [unit_rows](const RopeCase& rc, RopeInputs& in) {
        DeviceTensor qkv(in.qkv), qw(in.q_weight), kw(in.k_weight), pos(in.positions);
        const detail::QkNormRopeArgs args = detail::validate_fused_qk_norm_rope(
            qkv.view(), rc.hq, rc.hk, rc.hv, rc.head_dim, rc.eps, qw.view(), kw.view(), rc.base, rc.neox,
            pos.view(), rc.factor, rc.low, rc.high, rc.attention_factor, rc.rotary_dim, qkv.view().device);
        const detail::RotaryFrequencies& freqs =
            detail::rotary_frequencies(args.base, args.rotary_dim, args.factor, args.low, args.high);
        cuda::fused_qk_norm_rope(args, freqs, Stream{}, unit_rows);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        in.qkv = qkv.to_host();
      });
    }
  }
}

TEST(QkNormRopeCuda, TinyEpsAndHeadCounts) {
  MOEKIT_REQUIRE_GPU();
  for (double eps : {1e-30, 0.0}) {
    RopeCase c;
    c.eps = eps;
    c.dtype = DType::kFloat16;
    check_cuda(c);
  }
  // Q only, K only, V heads around them; more rotated heads than one pass of threads.
  for (auto [hq, hk, hv] : {std::tuple<int64_t, int64_t, int64_t>{0, 4, 2}, {4, 0, 2}, {3, 0, 0},
                            {0, 1, 0}, {1, 0, 0}, {96, 8, 8}, {128, 0, 0}}) {
    for (int64_t D : {64, 256}) {
      RopeCase c;
      c.head_dim = D;
      c.hq = hq;
      c.hk = hk;
      c.hv = hv;
      c.tokens = 5;
      check_cuda(c);
    }
  }
}

// qkv and weights 2 bytes past a 16-byte boundary take the element-wise load/store path.
TEST(QkNormRopeCuda, UnalignedPointers) {
  MOEKIT_REQUIRE_GPU();
  for (bool neox : {false, true}) {
    RopeCase c;
    c.neox = neox;
    c.hq = 3;
    c.hk = 2;
    c.hv = 1;
    c.tokens = 9;
    c.rotary_dim = 64;
    uint64_t seed = 0;
    auto rng = fresh_rng(&seed);
    SCOPED_TRACE(c.name() + " seed " + std::to_string(seed));
    PreparedCase p = prepare_case(c, rng);
    char *qkv = nullptr, *w = nullptr;
    ASSERT_EQ(cudaMalloc(&qkv, p.inputs.qkv.nbytes() + 16), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&w, 2 * p.inputs.q_weight.nbytes() + 32), cudaSuccess);
    char* qw = w + 2;
    char* kw = w + 16 + p.inputs.q_weight.nbytes() + 2;
    ASSERT_EQ(cudaMemcpy(qkv + 2, p.inputs.qkv.data(), p.inputs.qkv.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(qw, p.inputs.q_weight.data(), p.inputs.q_weight.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(kw, p.inputs.k_weight.data(), p.inputs.k_weight.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
    DeviceTensor pos(p.inputs.positions);
    const Device gpu{DeviceKind::kCUDA, 0};
    const int64_t width = (c.hq + c.hk + c.hv) * c.head_dim;
    fused_qk_norm_rope(TensorView(qkv + 2, c.dtype, {c.tokens, width}, gpu), c.hq, c.hk, c.hv,
                       c.head_dim, c.eps, TensorView(qw, c.dtype, {c.head_dim}, gpu),
                       TensorView(kw, c.dtype, {c.head_dim}, gpu), c.base, c.neox, pos.view(),
                       c.factor, c.low, c.high, c.attention_factor, c.rotary_dim);
    HostTensor got(c.dtype, {c.tokens, width});
    ASSERT_EQ(cudaMemcpy(got.data(), qkv + 2, got.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_TRUE(WithinOneRounding(c, got, p.expected, p.original));
    cudaFree(qkv);
    cudaFree(w);
  }
}

TEST(QkNormRopeCuda, ZeroTokensIsANoOp) {
  MOEKIT_REQUIRE_GPU();
  HostTensor w(DType::kBFloat16, {64});
  DeviceTensor dw(w);
  const Device gpu{DeviceKind::kCUDA, 0};
  int32_t* pos = nullptr;
  fused_qk_norm_rope(TensorView(nullptr, DType::kBFloat16, {0, 3 * 64}, gpu), 1, 1, 1, 64, 1e-6,
                     dw.view(), dw.view(), 1e4, true, TensorView(pos, DType::kInt32, {0}, gpu), 1, 0,
                     0, 1);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

// More than 2^31 elements in qkv: offsets must be 64-bit. The buffer is filled with one constant
// (no host copy of 4 GiB); the first and last tokens are checked against the oracle run on one token
// of the same values.
TEST(QkNormRopeCuda, SixtyFourBitOffsets) {
  MOEKIT_REQUIRE_GPU();
  const int64_t D = 64, heads = 2, T = (int64_t{1} << 24) + 3;  // 2^31 + 384 elements
  const int64_t width = heads * D;
  size_t free_bytes = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  const size_t bytes = static_cast<size_t>(T * width) * 2;
  if (free_bytes < bytes + static_cast<size_t>(T) * 4 + (size_t{1} << 30)) GTEST_SKIP() << "not enough GPU memory";
  void *qkv = nullptr, *pos = nullptr;
  ASSERT_EQ(cudaMalloc(&qkv, bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&pos, T * 4), cudaSuccess);
  ASSERT_EQ(cudaMemset(qkv, 0x3F, bytes), cudaSuccess);  // every bf16 = 0x3F3F
  ASSERT_EQ(cudaMemset(pos, 0, T * 4), cudaSuccess);
  const int32_t last_positions[3] = {12345, 1 << 24, 2147483647};
  ASSERT_EQ(cudaMemcpy(static_cast<int32_t*>(pos) + T - 3, last_positions, 12, cudaMemcpyHostToDevice), cudaSuccess);
  HostTensor w(DType::kBFloat16, {D});
  auto rng = fresh_rng();
  w.fill_normal(rng);
  DeviceTensor dw(w);
  const Device gpu{DeviceKind::kCUDA, 0};
  fused_qk_norm_rope(TensorView(qkv, DType::kBFloat16, {T, width}, gpu), 1, 1, 0, D, 1e-6, dw.view(),
                     dw.view(), 1e4, true, TensorView(pos, DType::kInt32, {T}, gpu), 1, 0, 0, 1);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  RopeCase c;
  c.head_dim = D;
  c.hq = 1;
  c.hk = 1;
  c.hv = 0;
  c.tokens = 1;
  c.eps = 1e-6;
  const int64_t check_tokens[] = {0, T - 3, T - 2, T - 1};
  const int32_t check_positions[] = {0, last_positions[0], last_positions[1], last_positions[2]};
  for (int k = 0; k < 4; ++k) {
    HostTensor one(DType::kBFloat16, {1, width}), p(DType::kInt32, {1});
    for (int64_t i = 0; i < width; ++i) one.ptr<uint16_t>()[i] = 0x3F3F;
    p.set(0, check_positions[k]);
    HostTensor expected = one;
    reference::fused_qk_norm_rope(expected.view(), 1, 1, 0, D, 1e-6, w.view(), w.view(), 1e4, true,
                                  p.view(), 1, 0, 0, 1);
    HostTensor got(DType::kBFloat16, {1, width});
    ASSERT_EQ(cudaMemcpy(got.data(), static_cast<uint16_t*>(qkv) + check_tokens[k] * width,
                         width * 2, cudaMemcpyDeviceToHost),
              cudaSuccess);
    EXPECT_TRUE(WithinOneRounding(c, got, expected, one)) << "token " << check_tokens[k];
  }
  cudaFree(qkv);
  cudaFree(pos);
}

TEST(QkNormRopeCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  RopeCase c;
  c.hq = 32;
  c.hk = 4;
  c.hv = 4;
  c.tokens = 64;
  auto rng = fresh_rng();
  RopeInputs in = make_rope_inputs(c, rng);
  DeviceTensor eager(in.qkv), graphed(in.qkv), qw(in.q_weight), kw(in.k_weight), pos(in.positions);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  auto run = [&](const DeviceTensor& qkv) {
    fused_qk_norm_rope(qkv.view(), c.hq, c.hk, c.hv, c.head_dim, c.eps, qw.view(), kw.view(), c.base,
                       c.neox, pos.view(), c.factor, c.low, c.high, c.attention_factor, c.rotary_dim,
                       Stream{stream});
  };
  run(eager);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  run(graphed);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(graphed.to_host().bytes_equal(eager.to_host()));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(QkNormRopeCudaErrors, MixedDevices) {
  MOEKIT_REQUIRE_GPU();
  HostTensor qkv(DType::kBFloat16, {2, 3 * 64}), w(DType::kBFloat16, {64}), pos(DType::kInt32, {2});
  DeviceTensor dqkv(qkv), dw(w);
  EXPECT_MOEKIT_ERROR(fused_qk_norm_rope(dqkv.view(), 1, 1, 1, 64, 1e-6, dw.view(), dw.view(), 1e4,
                                         true, pos.view(), 1, 0, 0, 1),
                      "position_ids: expected a tensor on cuda:0, got cpu");
}

}  // namespace
}  // namespace moekit::test
