#include "dispatch/dispatch_test_util.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

std::vector<int32_t> to_vector(const HostTensor& t) {
  return std::vector<int32_t>(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel());
}

struct PrepareBuffers {
  HostTensor offsets, blockscale, sizes1, sizes2, in_perm, out_perm;
  PrepareBuffers(int64_t numel, int64_t E)
      : offsets(DType::kInt32, {E + 1}), blockscale(DType::kInt32, {E + 1}),
        sizes1(DType::kInt32, {E, 3}), sizes2(DType::kInt32, {E, 3}),
        in_perm(DType::kInt32, {numel}), out_perm(DType::kInt32, {numel}) {
    for (HostTensor* t : {&offsets, &blockscale, &sizes1, &sizes2, &in_perm, &out_perm}) t->poison();
  }
  bool equals(const PrepareBuffers& o) const {
    return offsets.bytes_equal(o.offsets) && blockscale.bytes_equal(o.blockscale) &&
           sizes1.bytes_equal(o.sizes1) && sizes2.bytes_equal(o.sizes2) &&
           in_perm.bytes_equal(o.in_perm) && out_perm.bytes_equal(o.out_perm);
  }
};

// ids [[2, 0], [-1, 2], [1, 2]], E = 3: expert 0 {1}, 1 {4}, 2 {0, 3, 5}; pair 2 invalid.
TEST(PrepareMoeInputReference, HandComputed) {
  HostTensor ids(DType::kInt32, {3, 2});
  const int v[] = {2, 0, -1, 2, 1, 2};
  for (int i = 0; i < 6; ++i) ids.set(i, v[i]);
  PrepareBuffers b(6, 3);
  reference::prepare_moe_input(ids.view(), b.offsets.view(), b.blockscale.view(), b.sizes1.view(),
                               b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 3, 4, 8);
  EXPECT_EQ(to_vector(b.offsets), (std::vector<int32_t>{0, 1, 2, 5}));
  EXPECT_EQ(to_vector(b.blockscale), (std::vector<int32_t>{0, 128, 256, 384}));
  EXPECT_EQ(to_vector(b.sizes1), (std::vector<int32_t>{1, 8, 8, 1, 8, 8, 3, 8, 8}));
  EXPECT_EQ(to_vector(b.sizes2), (std::vector<int32_t>{1, 8, 4, 1, 8, 4, 3, 8, 4}));
  EXPECT_EQ(to_vector(b.in_perm), (std::vector<int32_t>{0, 2, 0, 1, 2, -1}));
  EXPECT_EQ(to_vector(b.out_perm), (std::vector<int32_t>{2, 0, -1, 3, 1, 4}));
}

TEST(PrepareMoeInputReference, ZeroTokensGiveZeroSizes) {
  HostTensor ids(DType::kInt32, {0, 8});
  PrepareBuffers b(0, 4);
  reference::prepare_moe_input(ids.view(), b.offsets.view(), TensorView{}, b.sizes1.view(),
                               b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 4, 16, 32);
  EXPECT_EQ(to_vector(b.offsets), (std::vector<int32_t>{0, 0, 0, 0, 0}));
  for (int e = 0; e < 4; ++e) EXPECT_EQ(b.sizes1.ptr<int32_t>()[e * 3], 0);
  for (int32_t v : to_vector(b.blockscale)) EXPECT_EQ(v, 0x7F7F7F7F);  // absent: untouched
}

class PrepareMoeInputCpu
    : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(PrepareMoeInputCpu, MatchesOracleForEveryThreadCount) {
  auto [M, topk, E] = GetParam();
  auto rng = fresh_rng();
  const double invalid = (M + topk) % 2 ? 0.1 : 0.0;
  HostTensor ids = random_topk_ids(rng, M, topk, E, invalid, invalid > 0);
  PrepareBuffers expected(M * topk, E), got(M * topk, E);
  reference::prepare_moe_input(ids.view(), expected.offsets.view(), expected.blockscale.view(),
                               expected.sizes1.view(), expected.sizes2.view(),
                               expected.in_perm.view(), expected.out_perm.view(), E, 128, 256);
  const int saved_threads = cpu_threads();
  for (int threads : {1, 3}) {
    set_cpu_threads(threads);
    for (HostTensor* t : {&got.offsets, &got.blockscale, &got.sizes1, &got.sizes2, &got.in_perm,
                          &got.out_perm})
      t->poison();
    prepare_moe_input(ids.view(), got.offsets.view(), got.blockscale.view(), got.sizes1.view(),
                      got.sizes2.view(), got.in_perm.view(), got.out_perm.view(), E, 128, 256);
    EXPECT_TRUE(got.equals(expected)) << "threads " << threads;
  }
  set_cpu_threads(saved_threads);
}

INSTANTIATE_TEST_SUITE_P(Grid, PrepareMoeInputCpu,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 16, 128, 513, 16384),
                                            ::testing::Values<int64_t>(1, 2, 4, 8),
                                            ::testing::Values<int64_t>(1, 8, 16, 64, 257)));

TEST(PrepareMoeInputCpu, ExpertMapEqualsTranslatedIds) {
  auto rng = fresh_rng();
  const int64_t E_global = 64, E = 16, M = 300, topk = 6;
  HostTensor map(DType::kInt32, {E_global});
  map.fill(-1);
  for (int64_t e = 0; e < E; ++e) map.set(4 * e + 1, static_cast<double>(E - 1 - e));
  HostTensor ids = random_topk_ids(rng, M, topk, E_global, 0.05, true);
  HostTensor local(DType::kInt32, {M, topk});
  for (int64_t i = 0; i < M * topk; ++i) {
    const int64_t g = static_cast<int64_t>(ids.get(i));
    local.set(i, (g >= 0 && g < E_global) ? map.get(g) : -1.0);
  }
  PrepareBuffers a(M * topk, E), b(M * topk, E);
  reference::prepare_moe_input(local.view(), a.offsets.view(), a.blockscale.view(), a.sizes1.view(),
                               a.sizes2.view(), a.in_perm.view(), a.out_perm.view(), E, 64, 32);
  prepare_moe_input(ids.view(), b.offsets.view(), b.blockscale.view(), b.sizes1.view(),
                    b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), E, 64, 32, map.view());
  EXPECT_TRUE(a.equals(b));
}

TEST(PrepareMoeInputErrors, NameTheArgument) {
  HostTensor ids(DType::kInt32, {4, 2});
  ids.fill(0);
  PrepareBuffers b(8, 4);
  HostTensor short_offsets(DType::kInt32, {4}), bad_sizes(DType::kInt32, {4, 2}),
      short_perm(DType::kInt32, {7}), ids64(DType::kInt64, {4, 2});
  EXPECT_MOEKIT_ERROR(prepare_moe_input(ids.view(), short_offsets.view(), TensorView{}, b.sizes1.view(),
                                        b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 4, 8, 8),
                      "expert_offsets: expected shape [5], got [4]");
  EXPECT_MOEKIT_ERROR(prepare_moe_input(ids.view(), b.offsets.view(), TensorView{}, bad_sizes.view(),
                                        b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 4, 8, 8),
                      "problem_sizes1: expected shape [4, 3]");
  EXPECT_MOEKIT_ERROR(prepare_moe_input(ids.view(), b.offsets.view(), TensorView{}, b.sizes1.view(),
                                        b.sizes2.view(), short_perm.view(), b.out_perm.view(), 4, 8, 8),
                      "input_permutation: expected 8 elements");
  EXPECT_MOEKIT_ERROR(prepare_moe_input(ids64.view(), b.offsets.view(), TensorView{}, b.sizes1.view(),
                                        b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 4, 8, 8),
                      "topk_ids: expected int32, got int64");
  EXPECT_MOEKIT_ERROR(prepare_moe_input(ids.view(), b.offsets.view(), TensorView{}, b.sizes1.view(),
                                        b.sizes2.view(), b.in_perm.view(), b.out_perm.view(), 4, 0, 8),
                      "n: expected a value in [1, ");
}

}  // namespace
}  // namespace moekit::test
