// CUDA moe_sum_reduce and apply_shuffle_mul_sum vs the oracle; graph capture per op.
#include <algorithm>
#include <cstring>

#include "common/cuda_test_util.h"
#include "moekit/combine.h"

namespace moekit::test {
namespace {

double tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return 1e-12;
    case DType::kFloat32: return 1e-5;
    case DType::kFloat16: return 1e-3;
    default: return 8e-3;
  }
}

class MoeSumReduceCuda
    : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(MoeSumReduceCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M, k, H});
  in.fill_normal(rng);
  const double rsf = (M + k + H) % 2 ? 2.5 : 0.125;
  HostTensor expected(dtype, {M, H}), poisoned(dtype, {M, H});
  reference::moe_sum_reduce(in.view(), expected.view(), rsf);
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned);
  moe_sum_reduce(d_in.view(), d_out.view(), rsf);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, tolerance(dtype), tolerance(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Grid, MoeSumReduceCuda,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                         DType::kFloat64),
                       ::testing::Values<int64_t>(0, 1, 7, 61, 1021), ::testing::Values<int64_t>(1, 2, 5, 9, 16),
                       ::testing::Values<int64_t>(1, 7, 8, 24, 1032, 7168)));

// The moe_sum kernel is shared: check it on the same awkward widths.
class MoeSumWidthsCuda : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t>> {};

TEST_P(MoeSumWidthsCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {61, k, H});
  in.fill_normal(rng);
  HostTensor expected(dtype, {61, H}), poisoned(dtype, {61, H});
  reference::moe_sum(in.view(), expected.view());
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned);
  moe_sum(d_in.view(), d_out.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, tolerance(dtype), tolerance(dtype));
}

INSTANTIATE_TEST_SUITE_P(Grid, MoeSumWidthsCuda,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16,
                                                              DType::kBFloat16),
                                            ::testing::Values<int64_t>(1, 5, 16),
                                            ::testing::Values<int64_t>(1, 2, 6, 24, 7168)));

TEST(MoeSumReduceCuda, ScaleOneWithOneSlotIsExactIdentity) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64}) {
    HostTensor in(dtype, {33, 1, 7168});
    in.fill_normal(rng, 0, 100);
    HostTensor out(dtype, {33, 7168});
    out.poison();
    DeviceTensor d_in(in), d_out(out);
    moe_sum_reduce(d_in.view(), d_out.view(), 1.0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const HostTensor got = d_out.to_host();
    EXPECT_EQ(std::memcmp(got.data(), in.data(), got.nbytes()), 0) << dtype_name(dtype);
  }
}

// More rows than a 65535-block grid covers in one pass: the grid-stride loop must reach them.
TEST(MoeSumReduceCuda, ManyRows) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const int64_t M = 600000, k = 2, H = 8;
  HostTensor in(DType::kBFloat16, {M, k, H});
  in.fill_normal(rng);
  HostTensor expected(DType::kBFloat16, {M, H}), poisoned(DType::kBFloat16, {M, H});
  reference::moe_sum_reduce(in.view(), expected.view(), 2.0);
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned);
  moe_sum_reduce(d_in.view(), d_out.view(), 2.0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, 8e-3, 8e-3);
}

TEST(ApplyShuffleMulSumCuda, ManyRows) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const int64_t M = 600000, H = 8;
  HostTensor in(DType::kBFloat16, {M, H});
  in.fill_normal(rng);
  HostTensor perm(DType::kInt32, {M}), f(DType::kFloat32, {M});
  for (int64_t i = 0; i < M; ++i) perm.set(i, static_cast<double>((i * 7919) % M));
  f.fill_uniform(rng, 0, 1);
  HostTensor expected(DType::kBFloat16, {M, H}), poisoned(DType::kBFloat16, {M, H});
  reference::apply_shuffle_mul_sum(in.view(), expected.view(), perm.view(), f.view());
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned), d_perm(perm), d_f(f);
  apply_shuffle_mul_sum(d_in.view(), d_out.view(), d_perm.view(), d_f.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, 8e-3, 8e-3);
}

HostTensor random_permutation(std::mt19937_64& rng, int64_t M, int64_t k, bool mark_invalid) {
  std::vector<int32_t> p(M * k);
  for (int64_t i = 0; i < M * k; ++i) p[i] = static_cast<int32_t>(i);
  std::shuffle(p.begin(), p.end(), rng);
  HostTensor t(DType::kInt32, {M * k});
  for (int64_t i = 0; i < M * k; ++i) t.set(i, (mark_invalid && i % 5 == 2) ? -1 : p[i]);
  return t;
}

class ApplyShuffleMulSumCuda
    : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(ApplyShuffleMulSumCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M * k, H});
  in.fill_normal(rng);
  HostTensor perm = random_permutation(rng, M, k, (M + H) % 2 == 1);
  const int variant = static_cast<int>((M + k + H) % 3);  // 0: none, 1: output dtype, 2: fp32
  HostTensor factors(variant == 2 ? DType::kFloat32 : dtype, {M, k});
  factors.fill_uniform(rng, 0, 1);
  HostTensor expected(dtype, {M, H}), poisoned(dtype, {M, H});
  reference::apply_shuffle_mul_sum(in.view(), expected.view(), perm.view(),
                                   variant == 0 ? TensorView{} : factors.view());
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned), d_perm(perm), d_f(factors);
  apply_shuffle_mul_sum(d_in.view(), d_out.view(), d_perm.view(),
                        variant == 0 ? TensorView{} : d_f.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, tolerance(dtype), tolerance(dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Grid, ApplyShuffleMulSumCuda,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values<int64_t>(0, 1, 7, 61, 1021), ::testing::Values<int64_t>(1, 2, 5, 9, 16),
                       ::testing::Values<int64_t>(1, 7, 8, 24, 1032, 7168)));

template <typename Op>
void expect_graph_replay_identical(const HostTensor& out_init, const Op& op) {
  DeviceTensor d_eager(out_init), d_graph(out_init);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  op(d_eager, Stream{stream});
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  op(d_graph, Stream{stream});
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(d_graph.to_host().bytes_equal(d_eager.to_host()));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(MoeSumReduceCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor in(DType::kBFloat16, {64, 8, 2048});
  in.fill_normal(rng);
  HostTensor out(DType::kBFloat16, {64, 2048});
  out.poison();
  DeviceTensor d_in(in);
  expect_graph_replay_identical(out, [&](DeviceTensor& o, Stream s) {
    moe_sum_reduce(d_in.view(), o.view(), 2.5, s);
  });
}

TEST(ApplyShuffleMulSumCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor in(DType::kBFloat16, {64 * 8, 2048});
  in.fill_normal(rng);
  HostTensor perm = random_permutation(rng, 64, 8, true);
  HostTensor f(DType::kFloat32, {64, 8});
  f.fill_uniform(rng, 0, 1);
  HostTensor out(DType::kBFloat16, {64, 2048});
  out.poison();
  DeviceTensor d_in(in), d_perm(perm), d_f(f);
  expect_graph_replay_identical(out, [&](DeviceTensor& o, Stream s) {
    apply_shuffle_mul_sum(d_in.view(), o.view(), d_perm.view(), d_f.view(), s);
  });
}

}  // namespace
}  // namespace moekit::test
