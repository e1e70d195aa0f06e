// CUDA moe_sum_reduce and apply_shuffle_mul_sum vs the oracle; graph capture per op.

#include <algorithm>
#include <cstring>
#include <vector>

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

// Copies row `row` ([row_bytes]) of a device tensor into row `at` of a host tensor.
void copy_row(const DeviceTensor& d, int64_t row, size_t row_bytes, HostTensor& h, int64_t at) {
  ASSERT_EQ(cudaMemcpy(static_cast<char*>(h.data()) + size_t(at) * row_bytes,
                       static_cast<const char*>(d.data()) + size_t(row) * row_bytes, row_bytes,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
}

bool device_has_free_bytes(size_t bytes) {
  size_t free_bytes = 0, total_bytes = 0;
  return cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess && free_bytes > bytes + (size_t(1) << 30);
}

// More than 2^31 elements in the output and twice that in the input: offsets must be 64-bit. The
// rows where the input and where the output pass element 2^31, and the ends, against the oracle run
// on those rows alone.
TEST(MoeSumReduceCuda, OffsetsPastInt32) {
  MOEKIT_REQUIRE_GPU();
  const int64_t k = 2, H = 4096, out_boundary = (int64_t{1} << 31) / H, M = out_boundary + 65;
  const int64_t in_boundary = (int64_t{1} << 31) / (k * H);
  if (!device_has_free_bytes(size_t(M) * (k + 1) * H * 2)) GTEST_SKIP() << "not enough device memory";
  DeviceTensor d_in(DType::kBFloat16, {M, k, H}, 0), d_out(DType::kBFloat16, {M, H}, 0xFF);
  fill_hashed_bf16(d_in.data(), M * k * H);
  moe_sum_reduce(d_in.view(), d_out.view(), 2.0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int64_t> rows = {0, in_boundary - 1, in_boundary, out_boundary - 1, out_boundary, M - 1};
  const int64_t n = int64_t(rows.size());
  HostTensor in(DType::kBFloat16, {n, k, H}), got(DType::kBFloat16, {n, H}), expected(DType::kBFloat16, {n, H});
  for (int64_t r = 0; r < n; ++r) {
    copy_row(d_in, rows[r], size_t(k * H) * 2, in, r);
    copy_row(d_out, rows[r], size_t(H) * 2, got, r);
  }
  reference::moe_sum_reduce(in.view(), expected.view(), 2.0);
  EXPECT_ALLCLOSE(got, expected, 8e-3, 8e-3);
}

// The same for apply_shuffle_mul_sum: input and output rows past element 2^31, a reversing
// permutation (the last output rows read the first input rows and the other way round).
TEST(ApplyShuffleMulSumCuda, OffsetsPastInt32) {
  MOEKIT_REQUIRE_GPU();
  const int64_t k = 2, H = 4096, out_boundary = (int64_t{1} << 31) / H, M = out_boundary + 65, R = M * k;
  if (!device_has_free_bytes(size_t(M) * (k + 1) * H * 2)) GTEST_SKIP() << "not enough device memory";
  auto rng = fresh_rng();
  HostTensor perm(DType::kInt32, {R}), f(DType::kFloat32, {R});
  for (int64_t i = 0; i < R; ++i) perm.set(i, static_cast<double>(R - 1 - i));
  f.fill_uniform(rng, 0, 1);
  DeviceTensor d_in(DType::kBFloat16, {R, H}, 0), d_out(DType::kBFloat16, {M, H}, 0xFF), d_perm(perm), d_f(f);
  fill_hashed_bf16(d_in.data(), R * H);
  apply_shuffle_mul_sum(d_in.view(), d_out.view(), d_perm.view(), d_f.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const std::vector<int64_t> rows = {0, 1, out_boundary - 1, out_boundary, M - 1};
  const int64_t n = int64_t(rows.size());
  HostTensor in(DType::kBFloat16, {n * k, H}), got(DType::kBFloat16, {n, H}), expected(DType::kBFloat16, {n, H});
  HostTensor sub_perm(DType::kInt32, {n * k}), sub_f(DType::kFloat32, {n * k});
  for (int64_t r = 0; r < n; ++r) {
    copy_row(d_out, rows[r], size_t(H) * 2, got, r);
    for (int64_t t = 0; t < k; ++t) {
      const int64_t pair = rows[r] * k + t;
      copy_row(d_in, int64_t(perm.get(pair)), size_t(H) * 2, in, r * k + t);
      sub_perm.set(r * k + t, static_cast<double>(r * k + t));
      sub_f.set(r * k + t, f.get(pair));
    }
  }
  reference::apply_shuffle_mul_sum(in.view(), expected.view(), sub_perm.view(), sub_f.view());
  EXPECT_ALLCLOSE(got, expected, 8e-3, 8e-3);
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
