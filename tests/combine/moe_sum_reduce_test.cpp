#include "common/test_util.h"
#include "moekit/combine.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

double sum_tolerance(DType dtype) {
  switch (dtype) {
    case DType::kFloat64: return 1e-12;
    case DType::kFloat32: return 1e-5;
    case DType::kFloat16: return 1e-3;
    default: return 8e-3;
  }
}

TEST(MoeSumReduceReference, HandComputed) {
  HostTensor in(DType::kFloat32, {2, 3, 2});
  const double v[] = {1, 2, 3, 4, 5, 6, -1, 0.5, 0.25, 0.125, 8, -8};
  for (int i = 0; i < 12; ++i) in.set(i, v[i]);
  HostTensor out(DType::kFloat32, {2, 2});
  out.poison();
  reference::moe_sum_reduce(in.view(), out.view(), 0.5);
  EXPECT_EQ(out.get(0), 4.5);
  EXPECT_EQ(out.get(1), 6);
  EXPECT_EQ(out.get(2), 3.625);
  EXPECT_EQ(out.get(3), -3.6875);
}

class MoeSumReduceCpu
    : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(MoeSumReduceCpu, MatchesOracleOnEveryIsa) {
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M, k, H});
  in.fill_normal(rng);
  const double rsf = (M + k + H) % 3 == 0 ? 2.5 : 0.125;
  HostTensor expected(dtype, {M, H}), got(dtype, {M, H});
  expected.poison();
  reference::moe_sum_reduce(in.view(), expected.view(), rsf);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    got.poison();
    moe_sum_reduce(in.view(), got.view(), rsf);
    const double tol = sum_tolerance(dtype);
    EXPECT_ALLCLOSE(got, expected, tol, tol) << cpu_isa_name(isa);
  }
  set_cpu_isa(best_cpu_isa());
}

INSTANTIATE_TEST_SUITE_P(
    Grid, MoeSumReduceCpu,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                         DType::kFloat64),
                       ::testing::Values<int64_t>(0, 1, 7, 33), ::testing::Values<int64_t>(1, 5, 9, 16),
                       ::testing::Values<int64_t>(1, 7, 8, 24, 1032)));

// Inputs past 32 MiB take the streamed AVX2 path (see moe_sum_test.cpp).
INSTANTIATE_TEST_SUITE_P(Streamed, MoeSumReduceCpu,
                         ::testing::Values(std::make_tuple(DType::kBFloat16, int64_t{1031}, int64_t{8}, int64_t{2048})));

TEST(MoeSumReduceCpu, ScaleOneWithOneSlotIsExactIdentity) {
  auto rng = fresh_rng();
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64}) {
    HostTensor in(dtype, {33, 1, 7168});
    in.fill_normal(rng, 0, 100);
    HostTensor out(dtype, {33, 7168});
    out.poison();
    moe_sum_reduce(in.view(), out.view(), 1.0);
    EXPECT_EQ(std::memcmp(in.data(), out.data(), out.nbytes()), 0) << dtype_name(dtype);
  }
}

TEST(MoeSumReduceCpu, NonFiniteValuesPropagate) {
  HostTensor in(DType::kBFloat16, {1, 2, 3});
  const double inf = std::numeric_limits<double>::infinity();
  const double v[] = {inf, 1, std::nan(""), 1, 2, 3};
  for (int i = 0; i < 6; ++i) in.set(i, v[i]);
  HostTensor expected(DType::kBFloat16, {1, 3}), got(DType::kBFloat16, {1, 3});
  reference::moe_sum_reduce(in.view(), expected.view(), 2.0);
  moe_sum_reduce(in.view(), got.view(), 2.0);
  EXPECT_ALLCLOSE(got, expected, 0, 0);
  EXPECT_EQ(got.get(0), inf);
}

TEST(MoeSumReduceErrors, NameTheArgument) {
  HostTensor in(DType::kFloat64, {2, 3, 4}), out(DType::kFloat64, {2, 4});
  HostTensor bad_dtype(DType::kFloat32, {2, 4}), bad_shape(DType::kFloat64, {2, 5}),
      ints(DType::kInt32, {2, 3, 4});
  EXPECT_MOEKIT_ERROR(moe_sum_reduce(in.view(), bad_dtype.view()), "output: expected the dtype of input");
  EXPECT_MOEKIT_ERROR(moe_sum_reduce(in.view(), bad_shape.view()), "output: expected shape [2, 4], got [2, 5]");
  EXPECT_MOEKIT_ERROR(moe_sum_reduce(ints.view(), out.view()), "input: expected float32 or float16 or bfloat16 or float64, got int32");
  EXPECT_MOEKIT_ERROR(moe_sum_reduce(in.view(), out.view(), std::nan("")), "routed_scaling_factor: expected a finite value");
}

}  // namespace
}  // namespace moekit::test
