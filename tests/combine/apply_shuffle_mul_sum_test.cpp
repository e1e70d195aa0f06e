#include "common/test_util.h"
#include "moekit/combine.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

// A random permutation of [0, M * k) with every 5th entry (when mark_invalid) replaced by -1.
HostTensor random_permutation(std::mt19937_64& rng, int64_t M, int64_t k, bool mark_invalid) {
  std::vector<int32_t> p(M * k);
  for (int64_t i = 0; i < M * k; ++i) p[i] = static_cast<int32_t>(i);
  std::shuffle(p.begin(), p.end(), rng);
  HostTensor t(DType::kInt32, {M * k});
  for (int64_t i = 0; i < M * k; ++i) t.set(i, (mark_invalid && i % 5 == 2) ? -1 : p[i]);
  return t;
}

TEST(ApplyShuffleMulSumReference, HandComputed) {
  HostTensor in(DType::kFloat32, {4, 2});
  const double v[] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 8; ++i) in.set(i, v[i]);
  HostTensor perm(DType::kInt32, {4}), f(DType::kFloat32, {2, 2});
  const int p[] = {3, 0, -1, 1};
  const double fv[] = {0.5, 2, 100, -1};
  for (int i = 0; i < 4; ++i) {
    perm.set(i, p[i]);
    f.set(i, fv[i]);
  }
  HostTensor out(DType::kFloat32, {2, 2});
  out.poison();
  reference::apply_shuffle_mul_sum(in.view(), out.view(), perm.view(), f.view());
  EXPECT_EQ(out.get(0), 0.5 * 7 + 2 * 1);
  EXPECT_EQ(out.get(1), 0.5 * 8 + 2 * 2);
  EXPECT_EQ(out.get(2), -3);
  EXPECT_EQ(out.get(3), -4);
}

class ApplyShuffleMulSumCpu
    : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t>> {};

TEST_P(ApplyShuffleMulSumCpu, MatchesOracleOnEveryIsa) {
  auto [dtype, M, k, H] = GetParam();
  auto rng = fresh_rng();
  HostTensor in(dtype, {M * k, H});
  in.fill_normal(rng);
  HostTensor perm = random_permutation(rng, M, k, (M + H) % 2 == 1);
  const int variant = static_cast<int>((M + k + H) % 3);  // 0: none, 1: output dtype, 2: fp32
  HostTensor factors(variant == 2 ? DType::kFloat32 : dtype, {M, k});
  factors.fill_uniform(rng, 0, 1);
  const TensorView f = variant == 0 ? TensorView{} : factors.view();
  HostTensor expected(dtype, {M, H}), got(dtype, {M, H});
  expected.poison();
  reference::apply_shuffle_mul_sum(in.view(), expected.view(), perm.view(), f);
  for (CpuIsa isa : supported_cpu_isas()) {
    set_cpu_isa(isa);
    got.poison();
    apply_shuffle_mul_sum(in.view(), got.view(), perm.view(), f);
    double tol = dtype == DType::kFloat32 ? 1e-5 : (dtype == DType::kFloat16 ? 1e-3 : 8e-3);
    EXPECT_ALLCLOSE(got, expected, tol, tol) << cpu_isa_name(isa);
  }
  set_cpu_isa(best_cpu_isa());
}

INSTANTIATE_TEST_SUITE_P(
    Grid, ApplyShuffleMulSumCpu,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16),
                       ::testing::Values<int64_t>(0, 1, 7, 33), ::testing::Values<int64_t>(1, 5, 9, 16),
                       ::testing::Values<int64_t>(1, 7, 8, 24, 1032)));

// Gathers past 32 MiB take the streamed AVX2 path (the next token's rows prefetched, output around
// the cache): -1 entries and no factors; fp32 factors with fp32 rows of odd alignment.
INSTANTIATE_TEST_SUITE_P(Streamed, ApplyShuffleMulSumCpu,
                         ::testing::Values(std::make_tuple(DType::kBFloat16, int64_t{1031}, int64_t{8}, int64_t{2048}),
                                           std::make_tuple(DType::kFloat32, int64_t{129}, int64_t{16}, int64_t{4099})));

TEST(ApplyShuffleMulSumErrors, NameTheArgument) {
  HostTensor in(DType::kBFloat16, {8, 16}), out(DType::kBFloat16, {4, 16}),
      perm(DType::kInt32, {8});
  HostTensor in16(DType::kFloat16, {8, 16}), perm7(DType::kInt32, {7}),
      f_fp16(DType::kFloat16, {8}), f_short(DType::kFloat32, {7}), in_wide(DType::kBFloat16, {8, 17});
  EXPECT_MOEKIT_ERROR(apply_shuffle_mul_sum(in16.view(), out.view(), perm.view()),
                      "input: expected the dtype of output");
  EXPECT_MOEKIT_ERROR(apply_shuffle_mul_sum(in.view(), out.view(), perm7.view()),
                      "permutation: expected M * k elements for M = 4");
  EXPECT_MOEKIT_ERROR(apply_shuffle_mul_sum(in.view(), out.view(), perm.view(), f_fp16.view()),
                      "factors (fp32 or the output dtype): expected the dtype of output");
  EXPECT_MOEKIT_ERROR(apply_shuffle_mul_sum(in.view(), out.view(), perm.view(), f_short.view()),
                      "factors: expected 8 elements");
  EXPECT_MOEKIT_ERROR(apply_shuffle_mul_sum(in_wide.view(), out.view(), perm.view()),
                      "input: expected 16 columns");
}

}  // namespace
}  // namespace moekit::test
