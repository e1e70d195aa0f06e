#include "common/test_util.h"
#include "moekit/combine.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

TEST(MoeSumReference, HandComputed) {
  HostTensor in(DType::kFloat32, {2, 3, 2});
  const double v[] = {1, 2, 3, 4, 5, 6, -1, 0.5, 0.25, 0.125, 8, -8};
  for (int i = 0; i < 12; ++i) in.set(i, v[i]);
  HostTensor out(DType::kFloat32, {2, 2});
  out.poison();
  reference::moe_sum(in.view(), out.view());
  EXPECT_EQ(out.get(0), 9);
  EXPECT_EQ(out.get(1), 12);
  EXPECT_EQ(out.get(2), 7.25);
  EXPECT_EQ(out.get(3), -7.375);
}

class MoeSumCpu : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(MoeSumCpu, MatchesOracleOnEveryIsa) {
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M, k, H});
  in.fill_normal(rng);
  HostTensor expected(dtype, {M, H}), got(dtype, {M, H});
  expected.poison();
  reference::moe_sum(in.view(), expected.view());
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    got.poison();
    moe_sum(in.view(), got.view());
    // fp32 accumulation vs fp64: for 16-bit outputs identical up to one rounding step.
    double tol = dtype == DType::kFloat32 ? 1e-5 : (dtype == DType::kFloat16 ? 1e-3 : 8e-3);
    EXPECT_ALLCLOSE(got, expected, tol, tol) << cpu_isa_name(isa);
  }
  set_cpu_isa(best_cpu_isa());
}

INSTANTIATE_TEST_SUITE_P(
    Grid, MoeSumCpu,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values<int64_t>(0, 1, 33, 61), ::testing::Values<int64_t>(1, 2, 6, 9),
                       ::testing::Values<int64_t>(1, 7, 128, 511)));

// Inputs past 32 MiB take the streamed AVX2 path (next token prefetched, output around the cache):
// aligned rows, and fp32 rows (H not a multiple of 32) that alternate between 32-byte aligned and not.
INSTANTIATE_TEST_SUITE_P(Streamed, MoeSumCpu,
                         ::testing::Values(std::make_tuple(DType::kBFloat16, int64_t{1030}, int64_t{8}, int64_t{2048}),
                                           std::make_tuple(DType::kFloat32, int64_t{257}, int64_t{8}, int64_t{4099})));

TEST(MoeSumErrors, NameTheArgument) {
  HostTensor in(DType::kFloat32, {2, 3, 4});
  HostTensor bad_shape(DType::kFloat32, {2, 5});
  HostTensor bad_dtype(DType::kBFloat16, {2, 4});
  HostTensor bad_rank(DType::kFloat32, {2, 3});
  EXPECT_MOEKIT_ERROR(moe_sum(in.view(), bad_shape.view()), "output: expected shape [2, 4], got [2, 5]");
  EXPECT_MOEKIT_ERROR(moe_sum(in.view(), bad_dtype.view()), "output: expected the dtype of input");
  EXPECT_MOEKIT_ERROR(moe_sum(bad_rank.view(), bad_rank.view()), "input: expected 3-D tensor");
  TensorView strided = in.view();
  strided.strides[0] = 100;
  HostTensor good(DType::kFloat32, {2, 4});
  EXPECT_MOEKIT_ERROR(moe_sum(strided, good.view()), "input: expected a contiguous tensor");
}

}  // namespace
}  // namespace moekit::test
