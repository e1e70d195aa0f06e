#include "dispatch/dispatch_test_util.h"
#include "moekit/cpu.h"

namespace moekit::test {
namespace {

constexpr int32_t kPoison = 0x7F7F7F7F;

HostTensor ids_from(std::vector<int64_t> values, std::vector<int64_t> shape,
                    DType dtype = DType::kInt32) {
  HostTensor t(dtype, shape);
  for (size_t i = 0; i < values.size(); ++i) t.set(static_cast<int64_t>(i), static_cast<double>(values[i]));
  return t;
}

std::vector<int32_t> to_vector(const HostTensor& t) {
  return std::vector<int32_t>(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel());
}

// ids [[2, 0], [-1, 2], [1, 2]], E = 3 (NB = 4), block_size 2:
//   bucket -1: {2} -> 2 slots, expert 0: {1} -> 2, expert 1: {4} -> 2, expert 2: {0, 3, 5} -> 4.
TEST(MoeAlignReference, HandComputedWithPad) {
  HostTensor ids = ids_from({2, 0, -1, 2, 1, 2}, {3, 2});
  HostTensor sorted(DType::kInt32, {12}), experts(DType::kInt32, {6}), post(DType::kInt32, {1}),
      cumsum(DType::kInt32, {5});
  sorted.poison();
  experts.poison();
  reference::moe_align_block_size(ids.view(), 4, 2, sorted.view(), experts.view(), post.view(),
                                  cumsum.view(), /*pad=*/true);
  EXPECT_EQ(post.ptr<int32_t>()[0], 10);
  EXPECT_EQ(to_vector(sorted), (std::vector<int32_t>{2, 6, 1, 6, 4, 6, 0, 3, 5, 6, 6, 6}));
  EXPECT_EQ(to_vector(experts), (std::vector<int32_t>{-1, 0, 1, 2, 2, kPoison}));
}

TEST(MoeAlignReference, HandComputedWithoutPadLeavesPaddingUntouched) {
  HostTensor ids = ids_from({2, 0, -1, 2, 1, 2}, {3, 2});
  HostTensor sorted(DType::kInt32, {12}), experts(DType::kInt32, {6}), post(DType::kInt32, {1}),
      cumsum(DType::kInt32, {5});
  sorted.poison();
  experts.poison();
  reference::moe_align_block_size(ids.view(), 4, 2, sorted.view(), experts.view(), post.view(),
                                  cumsum.view(), /*pad=*/false);
  const int32_t P = kPoison;
  EXPECT_EQ(to_vector(sorted), (std::vector<int32_t>{2, P, 1, P, 4, P, 0, 3, 5, P, P, P}));
  EXPECT_EQ(to_vector(experts), (std::vector<int32_t>{-1, 0, 1, 2, 2, P}));
}

TEST(MoeAlignReference, HandComputedIgnoringInvalid) {
  HostTensor ids = ids_from({2, 0, -1, 2, 1, 2}, {3, 2});
  HostTensor sorted(DType::kInt32, {9}), experts(DType::kInt32, {5}), post(DType::kInt32, {1});
  sorted.poison();
  experts.poison();
  reference::moe_align_block_size_experts(ids.view(), 3, 2, sorted.view(), experts.view(),
                                          post.view(), /*pad=*/true, /*ignore=*/true);
  EXPECT_EQ(post.ptr<int32_t>()[0], 8);
  EXPECT_EQ(to_vector(sorted), (std::vector<int32_t>{1, 6, 4, 6, 0, 3, 5, 6, 6}));
  EXPECT_EQ(to_vector(experts), (std::vector<int32_t>{0, 1, 2, 2, kPoison}));
}

// Expert map: global ids 0..5 -> local {-1, 0, -1, 1, 2, -1}. Ids [4, 1, 0, 3, 7, 4], E = 3, bs 1.
TEST(MoeAlignReference, HandComputedExpertMap) {
  HostTensor ids = ids_from({4, 1, 0, 3, 7, 4}, {6, 1});
  HostTensor map = ids_from({-1, 0, -1, 1, 2, -1}, {6});
  HostTensor sorted(DType::kInt32, {6}), experts(DType::kInt32, {6}), post(DType::kInt32, {1});
  sorted.poison();
  experts.poison();
  reference::moe_align_block_size_experts(ids.view(), 3, 1, sorted.view(), experts.view(),
                                          post.view(), true, false, map.view());
  // invalid: i = 2 (map -1), 4 (outside the map); expert 0: {1}; 1: {3}; 2: {0, 5}
  EXPECT_EQ(post.ptr<int32_t>()[0], 6);
  EXPECT_EQ(to_vector(sorted), (std::vector<int32_t>{2, 4, 1, 3, 0, 5}));
  EXPECT_EQ(to_vector(experts), (std::vector<int32_t>{-1, -1, 0, 1, 2, 2}));
}

TEST(MoeAlignReference, BadIdsGoToTheInvalidBucket) {
  HostTensor ids = ids_from({5, -7, 1, 3}, {2, 2});  // E = 3: 5, -7 and 3 are invalid
  HostTensor sorted(DType::kInt32, {16}), experts(DType::kInt32, {4}), post(DType::kInt32, {1}),
      cumsum(DType::kInt32, {5});
  sorted.poison();
  experts.poison();
  reference::moe_align_block_size(ids.view(), 4, 4, sorted.view(), experts.view(), post.view(),
                                  cumsum.view(), true);
  EXPECT_EQ(post.ptr<int32_t>()[0], 8);
  std::vector<int32_t> want(16, 4);
  const int32_t head[] = {0, 1, 3, 4, 2};
  std::copy(head, head + 5, want.begin());
  EXPECT_EQ(to_vector(sorted), want);
  EXPECT_EQ(to_vector(experts), (std::vector<int32_t>{-1, 1, kPoison, kPoison}));
}

TEST(MoeAlignReference, ZeroPairsWritesOnlyTheCountAndPad) {
  HostTensor ids(DType::kInt32, {0, 8});
  AlignBuffers buf(0, 257, 64);
  reference::moe_align_block_size(ids.view(), 257, 64, buf.sorted.view(), buf.experts.view(),
                                  buf.post_pad.view(), buf.cumsum.view(), false);
  EXPECT_EQ(buf.post_pad.ptr<int32_t>()[0], 0);
  for (int32_t v : to_vector(buf.sorted)) EXPECT_EQ(v, kPoison);
  for (int32_t v : to_vector(buf.experts)) EXPECT_EQ(v, kPoison);
}

// Properties that hold for any input, checked on the oracle with random data: every valid pair
// appears once, in ascending order inside its bucket, blocks carry their bucket's expert.
TEST(MoeAlignReference, RandomInvariants) {
  auto rng = fresh_rng();
  for (int rep = 0; rep < 20; ++rep) {
    const int64_t M = std::uniform_int_distribution<int64_t>(1, 300)(rng);
    const int64_t E = std::uniform_int_distribution<int64_t>(1, 70)(rng);
    const int64_t topk = std::uniform_int_distribution<int64_t>(1, std::min<int64_t>(E, 9))(rng);
    const int64_t bs = std::uniform_int_distribution<int64_t>(1, 40)(rng);
    HostTensor ids = random_topk_ids(rng, M, topk, E, 0.1, true);
    AlignBuffers buf(M * topk, E + 1, bs);
    reference::moe_align_block_size(ids.view(), E + 1, bs, buf.sorted.view(), buf.experts.view(),
                                    buf.post_pad.view(), buf.cumsum.view(), false);
    const int32_t* sorted = buf.sorted.ptr<int32_t>();
    const int32_t* experts = buf.experts.ptr<int32_t>();
    const int64_t total = buf.post_pad.ptr<int32_t>()[0];
    ASSERT_EQ(total % bs, 0);
    std::vector<int> seen(M * topk, 0);
    int64_t prev_expert = -2, prev_index = -1;
    for (int64_t s = 0; s < total; ++s) {
      const int64_t e = experts[s / bs];
      ASSERT_GE(e, prev_expert);
      if (e != prev_expert) prev_index = -1;
      prev_expert = e;
      if (sorted[s] == kPoison) continue;
      const int64_t i = sorted[s];
      ASSERT_GT(i, prev_index);
      prev_index = i;
      const int64_t id = static_cast<int64_t>(ids.get(i));
      ASSERT_EQ(e, (id >= 0 && id < E) ? id : -1);
      ++seen[i];
    }
    for (int64_t i = 0; i < M * topk; ++i) ASSERT_EQ(seen[i], 1) << i;
    for (int64_t s = total; s < buf.sorted.numel(); ++s) ASSERT_EQ(sorted[s], kPoison);
    for (int64_t j = total / bs; j < buf.experts.numel(); ++j) ASSERT_EQ(experts[j], kPoison);
  }
}

// CPU vs oracle over the grid; block size, pad, ignore and the invalid mix rotate with the case.
class MoeAlignCpu : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(MoeAlignCpu, MatchesOracleForEveryThreadCount) {
  auto [M, E, topk] = GetParam();
  static const int64_t kBlockSizes[] = {1, 16, 32, 48, 64, 128, 256};
  const size_t variant = static_cast<size_t>(M * 31 + E * 7 + topk);
  const int64_t bs = kBlockSizes[variant % 7];
  const bool pad = variant % 2, ignore = (variant / 2) % 3 == 0;
  const double invalid = (variant / 3) % 3 == 0 ? 0.0 : 0.15;
  auto rng = fresh_rng();
  HostTensor ids = random_topk_ids(rng, M, topk, E, invalid, invalid > 0 && variant % 5 == 0);
  const int64_t buckets = ignore ? E : E + 1;
  AlignBuffers expected(M * topk, buckets, bs), got(M * topk, buckets, bs);
  reference::moe_align_block_size_experts(ids.view(), E, bs, expected.sorted.view(),
                                          expected.experts.view(), expected.post_pad.view(), pad,
                                          ignore);
  const int saved_threads = cpu_threads();
  for (int threads : {1, 3}) {
    set_cpu_threads(threads);
    got.poison();
    moe_align_block_size_experts(ids.view(), E, bs, got.sorted.view(), got.experts.view(),
                                 got.post_pad.view(), pad, ignore);
    EXPECT_TRUE(got.equals(expected)) << "threads " << threads << " bs " << bs << " pad " << pad
                                      << " ignore " << ignore;
  }
  set_cpu_threads(saved_threads);
}

INSTANTIATE_TEST_SUITE_P(Grid, MoeAlignCpu,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 7, 64, 1000, 16384),
                                            ::testing::Values<int64_t>(8, 60, 64, 128, 160, 256,
                                                                       384, 512),
                                            ::testing::Values<int64_t>(1, 2, 6, 8, 16)));

TEST(MoeAlignCpu, CompatEntryEqualsExpertsEntry) {
  auto rng = fresh_rng();
  HostTensor ids = random_topk_ids(rng, 333, 8, 256, 0.1);
  for (bool ignore : {false, true}) {
    AlignBuffers a(333 * 8, 257, 64), b(333 * 8, 257, 64);
    moe_align_block_size(ids.view(), 257, 64, a.sorted.view(), a.experts.view(),
                         a.post_pad.view(), a.cumsum.view(), true, ignore);
    moe_align_block_size_experts(ids.view(), 256, 64, b.sorted.view(), b.experts.view(),
                                 b.post_pad.view(), true, ignore);
    EXPECT_TRUE(a.equals(b));
    EXPECT_TRUE(a.cumsum.bytes_equal(b.cumsum));  // scratch left untouched
  }
}

TEST(MoeAlignCpu, AwkwardCases) {
  auto rng = fresh_rng();
  struct Case {
    int64_t M, topk, E, bs;
    double invalid;
    const char* what;
  };
  const Case cases[] = {
      {500, 4, 1, 16, 0.0, "E = 1"},      {61, 3, 1, 48, 0.3, "E = 1 with -1"},
      {1021, 8, 64, 32, 1.0, "all -1"},   {3, 8, 256, 64, 0.0, "numel < NB"},
      {4096, 1, 8, 256, 0.0, "topk 1"},   {257, 16, 8, 1, 0.2, "topk > E"},
  };
  for (const Case& c : cases) {
    HostTensor ids = random_topk_ids(rng, c.M, c.topk, c.E, c.invalid);
    for (bool ignore : {false, true})
      for (bool pad : {false, true}) {
        AlignBuffers expected(c.M * c.topk, c.E + 1, c.bs), got(c.M * c.topk, c.E + 1, c.bs);
        reference::moe_align_block_size_experts(ids.view(), c.E, c.bs, expected.sorted.view(),
                                                expected.experts.view(),
                                                expected.post_pad.view(), pad, ignore);
        moe_align_block_size_experts(ids.view(), c.E, c.bs, got.sorted.view(), got.experts.view(),
                                     got.post_pad.view(), pad, ignore);
        EXPECT_TRUE(got.equals(expected)) << c.what << " pad " << pad << " ignore " << ignore;
      }
  }
}

TEST(MoeAlignCpu, AllPairsToOneExpert) {
  HostTensor ids(DType::kInt32, {2000, 1});
  ids.fill(37);
  AlignBuffers expected(2000, 129, 48), got(2000, 129, 48);
  reference::moe_align_block_size_experts(ids.view(), 128, 48, expected.sorted.view(),
                                          expected.experts.view(), expected.post_pad.view(), true);
  moe_align_block_size_experts(ids.view(), 128, 48, got.sorted.view(), got.experts.view(),
                               got.post_pad.view(), true);
  EXPECT_TRUE(got.equals(expected));
  EXPECT_EQ(got.post_pad.ptr<int32_t>()[0], 2016);  // ceil(2000 / 48) * 48
  for (int64_t s = 0; s < 2000; ++s) ASSERT_EQ(got.sorted.ptr<int32_t>()[s], s);
}

TEST(MoeAlignCpu, Int64IdsMatchInt32) {
  auto rng = fresh_rng();
  HostTensor ids32 = random_topk_ids(rng, 700, 6, 160, 0.1, true);
  HostTensor ids64(DType::kInt64, {700, 6});
  for (int64_t i = 0; i < ids32.numel(); ++i) ids64.set(i, ids32.get(i));
  AlignBuffers a(4200, 161, 32), b(4200, 161, 32);
  moe_align_block_size(ids32.view(), 161, 32, a.sorted.view(), a.experts.view(),
                       a.post_pad.view(), a.cumsum.view(), true);
  moe_align_block_size(ids64.view(), 161, 32, b.sorted.view(), b.experts.view(),
                       b.post_pad.view(), b.cumsum.view(), true);
  EXPECT_TRUE(a.equals(b));
}

// With a map, the result equals the compat op run on ids already translated to local experts.
TEST(MoeAlignCpu, ExpertMapEqualsTranslatedIds) {
  auto rng = fresh_rng();
  const int64_t E_global = 256, E = 64, M = 999, topk = 8;
  HostTensor map(DType::kInt32, {E_global});
  map.fill(-1);
  std::vector<int64_t> globals(E_global);
  std::iota(globals.begin(), globals.end(), 0);
  std::shuffle(globals.begin(), globals.end(), rng);
  for (int64_t e = 0; e < E; ++e) map.set(globals[e], static_cast<double>(e));
  map.set(globals[E], 500);  // a corrupt entry outside [0, E): invalid, never indexed
  HostTensor ids = random_topk_ids(rng, M, topk, E_global + 3, 0.05);
  HostTensor local(DType::kInt32, {M, topk});
  for (int64_t i = 0; i < M * topk; ++i) {
    const int64_t g = static_cast<int64_t>(ids.get(i));
    const int64_t l = (g >= 0 && g < E_global) ? static_cast<int64_t>(map.get(g)) : -1;
    local.set(i, (l >= 0 && l < E) ? static_cast<double>(l) : -1.0);
  }
  for (bool ignore : {false, true}) {
    AlignBuffers a(M * topk, E + 1, 16), b(M * topk, E + 1, 16), c(M * topk, E + 1, 16);
    reference::moe_align_block_size(local.view(), E + 1, 16, a.sorted.view(), a.experts.view(),
                                    a.post_pad.view(), a.cumsum.view(), true, ignore);
    reference::moe_align_block_size_experts(ids.view(), E, 16, b.sorted.view(), b.experts.view(),
                                            b.post_pad.view(), true, ignore, map.view());
    moe_align_block_size_experts(ids.view(), E, 16, c.sorted.view(), c.experts.view(),
                                 c.post_pad.view(), true, ignore, map.view());
    EXPECT_TRUE(a.equals(b)) << "ignore " << ignore;
    EXPECT_TRUE(c.equals(b)) << "ignore " << ignore;
  }
}

TEST(MoeAlignErrors, NameTheArgument) {
  HostTensor ids(DType::kInt32, {10, 4});
  ids.fill(1);
  AlignCapacity cap = moe_align_block_size_capacity(40, 9, 16);
  EXPECT_EQ(cap.sorted_token_ids, (40 + 9 * 15) / 16 * 16);
  EXPECT_EQ(cap.experts_ids, (40 + 9 * 15) / 16);
  HostTensor sorted(DType::kInt32, {cap.sorted_token_ids}), experts(DType::kInt32, {cap.experts_ids}),
      post(DType::kInt32, {1}), cumsum(DType::kInt32, {10});
  HostTensor short_sorted(DType::kInt32, {cap.sorted_token_ids - 1});
  HostTensor short_experts(DType::kInt32, {cap.experts_ids - 1});
  HostTensor short_cumsum(DType::kInt32, {9});
  HostTensor float_ids(DType::kFloat32, {10, 4});
  HostTensor post2(DType::kInt32, {2});
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 9, 16, short_sorted.view(), experts.view(),
                                           post.view(), cumsum.view()),
                      "sorted_token_ids: expected at least");
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 9, 16, sorted.view(), short_experts.view(),
                                           post.view(), cumsum.view()),
                      "experts_ids: expected at least");
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 9, 16, sorted.view(), experts.view(),
                                           post.view(), short_cumsum.view()),
                      "cumsum_buffer: expected at least 10");
  EXPECT_MOEKIT_ERROR(moe_align_block_size(float_ids.view(), 9, 16, sorted.view(), experts.view(),
                                           post.view(), cumsum.view()),
                      "topk_ids: expected int32 or int64, got float32");
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 9, 0, sorted.view(), experts.view(),
                                           post.view(), cumsum.view()),
                      "block_size: expected a value in [1, ");
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 0, 16, sorted.view(), experts.view(),
                                           post.view(), cumsum.view()),
                      "num_experts (the number of buckets, E + 1)");
  EXPECT_MOEKIT_ERROR(moe_align_block_size_experts(ids.view(), 0, 16, sorted.view(),
                                                   experts.view(), post.view()),
                      "num_experts: expected a value in [1, 8192], got 0");
  EXPECT_MOEKIT_ERROR(moe_align_block_size_experts(ids.view(), 8, 16, sorted.view(),
                                                   experts.view(), post2.view()),
                      "num_tokens_post_pad: expected one element");
  HostTensor float_map(DType::kFloat32, {8});
  EXPECT_MOEKIT_ERROR(moe_align_block_size_experts(ids.view(), 8, 16, sorted.view(),
                                                   experts.view(), post.view(), false, false,
                                                   float_map.view()),
                      "expert_map: expected int32, got float32");
  // Nothing was written by the failed calls.
  HostTensor fresh(DType::kInt32, {cap.sorted_token_ids});
  fresh.poison();
  sorted.poison();
  EXPECT_MOEKIT_ERROR(moe_align_block_size(ids.view(), 9, 16, sorted.view(), short_experts.view(),
                                           post.view(), cumsum.view()),
                      "experts_ids");
  EXPECT_TRUE(sorted.bytes_equal(fresh));
}

}  // namespace
}  // namespace moekit::test
