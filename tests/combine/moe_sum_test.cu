#include "common/cuda_test_util.h"
#include "moekit/combine.h"

namespace moekit::test {
namespace {

class MoeSumCuda : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(MoeSumCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M, k, H});
  in.fill_normal(rng);
  HostTensor expected(dtype, {M, H}), poisoned(dtype, {M, H});
  reference::moe_sum(in.view(), expected.view());
  poisoned.poison();
  DeviceTensor d_in(in), d_out(poisoned);
  moe_sum(d_in.view(), d_out.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  double tol = dtype == DType::kFloat32 ? 1e-5 : (dtype == DType::kFloat16 ? 1e-3 : 8e-3);
  EXPECT_ALLCLOSE(d_out.to_host(), expected, tol, tol);
}

INSTANTIATE_TEST_SUITE_P(
    Grid, MoeSumCuda,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values<int64_t>(0, 1, 61, 1021), ::testing::Values<int64_t>(1, 2, 9),
                       ::testing::Values<int64_t>(1, 7, 8, 1032)));

TEST(MoeSumCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor in(DType::kBFloat16, {64, 8, 2048});
  in.fill_normal(rng);
  HostTensor out(DType::kBFloat16, {64, 2048});
  out.poison();
  DeviceTensor d_in(in), d_eager(out), d_graph(out);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  moe_sum(d_in.view(), d_eager.view(), Stream{stream});
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  moe_sum(d_in.view(), d_graph.view(), Stream{stream});
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(d_graph.to_host().bytes_equal(d_eager.to_host()));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace moekit::test
