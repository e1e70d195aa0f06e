// CUDA dispatch ops vs the oracle: exact equality of every output buffer, poisoned first, so the
// regions the spec leaves untouched are checked too.
#include <optional>

#include "common/cuda_test_util.h"
#include "dispatch/cuda/launcher.h"
#include "dispatch/dispatch_test_util.h"
#include "dispatch/validate.h"

namespace moekit::test {
namespace {

struct AlignCase {
  int64_t M, topk, E, bs;
  bool pad, ignore;
  double invalid;
  bool bad_ids;
};

// Runs the oracle and the CUDA op on the same ids (global ids + map when given) and compares.
::testing::AssertionResult align_matches(const HostTensor& ids, int64_t E, int64_t bs, bool pad,
                                         bool ignore, const HostTensor* map = nullptr,
                                         bool compat = false) {
  const int64_t numel = ids.numel();
  AlignBuffers expected(numel, E + 1, bs), got(numel, E + 1, bs);
  const TensorView map_view = map ? map->view() : TensorView{};
  reference::moe_align_block_size_experts(ids.view(), E, bs, expected.sorted.view(),
                                          expected.experts.view(), expected.post_pad.view(), pad,
                                          ignore, map_view);
  DeviceTensor d_ids(ids), d_sorted(got.sorted), d_experts(got.experts), d_post(got.post_pad),
      d_cumsum(got.cumsum);
  std::optional<DeviceTensor> d_map;
  if (map) d_map.emplace(*map);
  if (compat) {
    moe_align_block_size(d_ids.view(), E + 1, bs, d_sorted.view(), d_experts.view(),
                         d_post.view(), d_cumsum.view(), pad, ignore);
  } else {
    moe_align_block_size_experts(d_ids.view(), E, bs, d_sorted.view(), d_experts.view(),
                                 d_post.view(), pad, ignore, d_map ? d_map->view() : TensorView{});
  }
  if (cudaDeviceSynchronize() != cudaSuccess) return ::testing::AssertionFailure() << "CUDA error";
  got.sorted = d_sorted.to_host();
  got.experts = d_experts.to_host();
  got.post_pad = d_post.to_host();
  if (!got.post_pad.bytes_equal(expected.post_pad))
    return ::testing::AssertionFailure() << "num_tokens_post_pad " << got.post_pad.get(0)
                                         << " expected " << expected.post_pad.get(0);
  if (!got.experts.bytes_equal(expected.experts)) {
    for (int64_t j = 0; j < got.experts.numel(); ++j)
      if (got.experts.get(j) != expected.experts.get(j))
        return ::testing::AssertionFailure() << "experts_ids[" << j << "] = " << got.experts.get(j)
                                             << ", expected " << expected.experts.get(j);
  }
  if (!got.sorted.bytes_equal(expected.sorted)) {
    for (int64_t s = 0; s < got.sorted.numel(); ++s)
      if (got.sorted.get(s) != expected.sorted.get(s))
        return ::testing::AssertionFailure() << "sorted_token_ids[" << s << "] = " << got.sorted.get(s)
                                             << ", expected " << expected.sorted.get(s);
  }
  if (!got.cumsum.bytes_equal(d_cumsum.to_host()))
    return ::testing::AssertionFailure() << "cumsum_buffer was written";
  return ::testing::AssertionSuccess();
}

class MoeAlignCuda : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(MoeAlignCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [M, E, topk] = GetParam();
  static const int64_t kBlockSizes[] = {1, 16, 32, 48, 64, 128, 256};
  const size_t variant = static_cast<size_t>(M * 31 + E * 7 + topk);
  const int64_t bs = kBlockSizes[variant % 7];
  const bool pad = variant % 2, ignore = (variant / 2) % 3 == 0;
  const double invalid = (variant / 3) % 3 == 0 ? 0.0 : 0.15;
  auto rng = fresh_rng();
  HostTensor ids = random_topk_ids(rng, M, topk, E, invalid, invalid > 0 && variant % 5 == 0);
  EXPECT_TRUE(align_matches(ids, E, bs, pad, ignore)) << "bs " << bs << " pad " << pad << " ignore " << ignore;
}

INSTANTIATE_TEST_SUITE_P(Grid, MoeAlignCuda,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 7, 64, 1000, 16384),
                                            ::testing::Values<int64_t>(8, 60, 64, 128, 160, 256,
                                                                       384, 512),
                                            ::testing::Values<int64_t>(1, 2, 6, 8, 16)));

TEST(MoeAlignCuda, EveryBlockSizePadAndIgnore) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t M : {3, 513, 8192})
    for (int64_t bs : {1, 16, 32, 48, 64, 128, 256}) {
      HostTensor ids = random_topk_ids(rng, M, 8, 256, 0.1, true);
      for (bool pad : {false, true})
        for (bool ignore : {false, true})
          EXPECT_TRUE(align_matches(ids, 256, bs, pad, ignore, nullptr, /*compat=*/true))
              << "M " << M << " bs " << bs << " pad " << pad << " ignore " << ignore;
    }
}

TEST(MoeAlignCuda, AwkwardCases) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const AlignCase cases[] = {
      {500, 4, 1, 16, true, false, 0.0, false},     {61, 3, 1, 48, false, false, 0.3, false},
      {1021, 8, 64, 32, true, false, 1.0, false},   {1021, 8, 64, 32, true, true, 1.0, false},
      {3, 8, 256, 64, true, false, 0.0, false},     {4096, 1, 8, 256, false, false, 0.0, false},
      {257, 16, 8, 1, true, true, 0.2, true},       {2048, 8, 1024, 16, true, false, 0.1, true},
      {777, 8, 4096, 32, true, false, 0.1, false},  {300, 8, 8192, 64, false, true, 0.1, true},
      {65536, 8, 256, 64, true, false, 0.05, false}, {40000, 16, 384, 128, false, false, 0.0, false},
  };
  for (const AlignCase& c : cases) {
    HostTensor ids = random_topk_ids(rng, c.M, c.topk, c.E, c.invalid, c.bad_ids);
    EXPECT_TRUE(align_matches(ids, c.E, c.bs, c.pad, c.ignore))
        << "M " << c.M << " topk " << c.topk << " E " << c.E << " bs " << c.bs;
  }
}

TEST(MoeAlignCuda, AllPairsToOneExpert) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t M : {5, 2000, 70000}) {
    HostTensor ids(DType::kInt32, {M, 1});
    ids.fill(37);
    EXPECT_TRUE(align_matches(ids, 128, 48, true, false)) << M;
  }
}

TEST(MoeAlignCuda, Int64Ids) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t M : {1, 700, 9000}) {
    HostTensor ids32 = random_topk_ids(rng, M, 6, 160, 0.1, true);
    HostTensor ids64(DType::kInt64, {M, 6});
    for (int64_t i = 0; i < ids32.numel(); ++i) ids64.set(i, ids32.get(i));
    EXPECT_TRUE(align_matches(ids64, 160, 32, true, false)) << M;
  }
}

// The one-CTA small path takes up to 1024 pairs while its [warps][buckets] table fits 48 KiB of
// shared memory; the cluster path takes the rest. Sizes just below, at and above both limits,
// and more buckets than threads (several buckets per thread in the small path).
TEST(MoeAlignCuda, SmallPathBoundaries) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const std::pair<int64_t, int64_t> shapes[] = {{341, 3}, {128, 8}, {205, 5}, {64, 16}, {1, 1}};
  for (auto [M, topk] : shapes)
    for (int64_t E : {8, 256, 700}) {
      const int64_t variant = M + E + topk;
      HostTensor ids = random_topk_ids(rng, M, topk, E, variant % 2 ? 0.1 : 0.0, variant % 3 == 0);
      for (bool pad : {false, true})
        EXPECT_TRUE(align_matches(ids, E, variant % 2 ? 16 : 64, pad, variant % 4 == 0))
            << "M " << M << " topk " << topk << " E " << E << " pad " << pad;
    }
  for (int64_t E : {1500, 4000}) {  // 2 warps of pairs, nb > blockDim.x
    HostTensor ids = random_topk_ids(rng, 8, 8, E, 0.1, true);
    EXPECT_TRUE(align_matches(ids, E, 32, true, false)) << "E " << E;
    EXPECT_TRUE(align_matches(ids, E, 1, false, true)) << "E " << E;
  }
  HostTensor one(DType::kInt32, {1024, 1});
  one.fill(5);
  EXPECT_TRUE(align_matches(one, 6, 256, true, false));
  HostTensor empty(DType::kInt32, {0, 8});
  EXPECT_TRUE(align_matches(empty, 300, 16, true, false));
  HostTensor ids32 = random_topk_ids(rng, 128, 8, 200, 0.1, true);
  HostTensor ids64(DType::kInt64, {128, 8});
  for (int64_t i = 0; i < ids32.numel(); ++i) ids64.set(i, ids32.get(i));
  EXPECT_TRUE(align_matches(ids64, 200, 16, true, false, nullptr, /*compat=*/true));
}

// The small path buckets with chunk_bucket up to 1024 buckets (E = 1023) and with small_bucket past
// that; pairs spread over few or many buckets, buckets over several blocks (block size 1 and 2).
TEST(MoeAlignCuda, ChunkBucketLimit) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {37, 7}, {128, 8}, {1024, 1}};
  for (int64_t E : {1, 31, 32, 33, 1023, 1024})
    for (auto [M, topk] : shapes)
      for (int64_t bs : {1, 2, 16}) {
        const int64_t variant = M + E + bs;
        HostTensor ids = random_topk_ids(rng, M, topk, E, variant % 2 ? 0.2 : 0.0, variant % 3 == 0);
        EXPECT_TRUE(align_matches(ids, E, bs, variant % 2 == 0, variant % 4 == 1))
            << "M " << M << " topk " << topk << " E " << E << " bs " << bs;
      }
}

TEST(MoeAlignCuda, ExpertMap) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const int64_t E_global = 256, E = 64;
  HostTensor map(DType::kInt32, {E_global});
  map.fill(-1);
  std::vector<int64_t> globals(E_global);
  std::iota(globals.begin(), globals.end(), 0);
  std::shuffle(globals.begin(), globals.end(), rng);
  for (int64_t e = 0; e < E; ++e) map.set(globals[e], static_cast<double>(e));
  map.set(globals[E], 500);  // corrupt entry: invalid, never indexed
  for (int64_t M : {1, 128, 129, 999, 20000}) {
    HostTensor ids = random_topk_ids(rng, M, 8, E_global + 3, 0.05);
    for (bool ignore : {false, true})
      EXPECT_TRUE(align_matches(ids, E, 16, true, ignore, &map)) << M << " " << ignore;
  }
}

// The align launched behind the router (route_and_align), called directly on router-like ids: rows
// of row_length with distinct valid ids, -1 and out-of-range ids mixed in (ignored). Up to 64 rows
// and 384 experts it buckets by row masks, past that the small path; rows 64 / 65, 384 / 512
// experts and 1024 pairs are the switch points.
TEST(MoeAlignCuda, AfterRouterRows) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const std::pair<int64_t, int64_t> shapes[] = {{1, 1}, {1, 8}, {7, 3},  {31, 16}, {32, 8},
                                                {33, 8}, {63, 9}, {64, 8}, {64, 16}, {65, 8}};
  for (int64_t E : {1, 8, 33, 256, 384, 512, 1000, 1024})
    for (auto [M, len] : shapes)
      for (int64_t bs : {1, 16, 64}) {
        if (len > E) continue;  // a router's rows hold distinct experts
        const int64_t variant = M + E + bs + len;
        HostTensor ids = random_topk_ids(rng, M, len, E, variant % 2 ? 0.1 : 0.0, variant % 3 == 0);
        const bool pad = variant % 4 < 2;
        AlignBuffers want(M * len, E, bs), got(M * len, E, bs);
        reference::moe_align_block_size_experts(ids.view(), E, bs, want.sorted.view(), want.experts.view(),
                                                want.post_pad.view(), pad, true);
        DeviceTensor d_ids(ids), d_sorted(got.sorted), d_experts(got.experts), d_post(got.post_pad);
        const detail::AlignProblem p =
            detail::validate_align(d_ids.view(), E, bs, d_sorted.view(), d_experts.view(), d_post.view(),
                                   pad, true, TensorView{}, d_ids.view().device);
        cuda::moe_align_block_size_after_router(p, len, Stream{});
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        SCOPED_TRACE("M " + std::to_string(M) + " len " + std::to_string(len) + " E " + std::to_string(E) +
                     " bs " + std::to_string(bs) + " pad " + std::to_string(pad));
        EXPECT_TRUE(d_post.to_host().bytes_equal(want.post_pad)) << d_post.to_host().get(0) << " vs "
                                                                << want.post_pad.get(0);
        EXPECT_TRUE(d_sorted.to_host().bytes_equal(want.sorted)) << "sorted_token_ids";
        EXPECT_TRUE(d_experts.to_host().bytes_equal(want.experts)) << "experts_ids";
      }
}

TEST(MoeAlignCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t M : {4, 64, 8192}) {
    HostTensor ids = random_topk_ids(rng, M, 8, 256, 0.05);
    AlignBuffers buf(M * 8, 257, 64);
    DeviceTensor d_ids(ids), e_sorted(buf.sorted), e_experts(buf.experts), e_post(buf.post_pad),
        g_sorted(buf.sorted), g_experts(buf.experts), g_post(buf.post_pad), cumsum(buf.cumsum);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    moe_align_block_size(d_ids.view(), 257, 64, e_sorted.view(), e_experts.view(), e_post.view(),
                         cumsum.view(), true, false, Stream{stream});
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    moe_align_block_size(d_ids.view(), 257, 64, g_sorted.view(), g_experts.view(), g_post.view(),
                         cumsum.view(), true, false, Stream{stream});
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    for (int replay = 0; replay < 3; ++replay) ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_TRUE(g_sorted.to_host().bytes_equal(e_sorted.to_host()));
    EXPECT_TRUE(g_experts.to_host().bytes_equal(e_experts.to_host()));
    EXPECT_TRUE(g_post.to_host().bytes_equal(e_post.to_host()));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

// ---- prepare_moe_input ----

struct PrepareHost {
  HostTensor offsets, blockscale, sizes1, sizes2, in_perm, out_perm;
  PrepareHost(int64_t numel, int64_t E)
      : offsets(DType::kInt32, {E + 1}), blockscale(DType::kInt32, {E + 1}),
        sizes1(DType::kInt32, {E, 3}), sizes2(DType::kInt32, {E, 3}),
        in_perm(DType::kInt32, {numel}), out_perm(DType::kInt32, {numel}) {
    for (HostTensor* t : {&offsets, &blockscale, &sizes1, &sizes2, &in_perm, &out_perm}) t->poison();
  }
};

::testing::AssertionResult prepare_matches(const HostTensor& ids, int64_t E, bool blockscale,
                                           const HostTensor* map = nullptr) {
  const int64_t numel = ids.numel();
  PrepareHost want(numel, E), init(numel, E);
  const TensorView map_view = map ? map->view() : TensorView{};
  reference::prepare_moe_input(ids.view(), want.offsets.view(),
                               blockscale ? want.blockscale.view() : TensorView{},
                               want.sizes1.view(), want.sizes2.view(), want.in_perm.view(),
                               want.out_perm.view(), E, 128, 256, map_view);
  DeviceTensor d_ids(ids), off(init.offsets), bso(init.blockscale), s1(init.sizes1),
      s2(init.sizes2), ip(init.in_perm), op(init.out_perm);
  std::optional<DeviceTensor> d_map;
  if (map) d_map.emplace(*map);
  prepare_moe_input(d_ids.view(), off.view(), blockscale ? bso.view() : TensorView{}, s1.view(),
                    s2.view(), ip.view(), op.view(), E, 128, 256,
                    d_map ? d_map->view() : TensorView{});
  if (cudaDeviceSynchronize() != cudaSuccess) return ::testing::AssertionFailure() << "CUDA error";
  const std::pair<const char*, std::pair<HostTensor, const HostTensor*>> outs[] = {
      {"expert_offsets", {off.to_host(), &want.offsets}},
      {"blockscale_offsets", {bso.to_host(), &want.blockscale}},
      {"problem_sizes1", {s1.to_host(), &want.sizes1}},
      {"problem_sizes2", {s2.to_host(), &want.sizes2}},
      {"input_permutation", {ip.to_host(), &want.in_perm}},
      {"output_permutation", {op.to_host(), &want.out_perm}},
  };
  for (const auto& [name, pair] : outs)
    if (!pair.first.bytes_equal(*pair.second)) return ::testing::AssertionFailure() << name << " differs";
  return ::testing::AssertionSuccess();
}

class PrepareMoeInputCuda : public ::testing::TestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(PrepareMoeInputCuda, MatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto [M, topk, E] = GetParam();
  auto rng = fresh_rng();
  const double invalid = (M + topk) % 2 ? 0.1 : 0.0;
  HostTensor ids = random_topk_ids(rng, M, topk, E, invalid, invalid > 0);
  EXPECT_TRUE(prepare_matches(ids, E, (M + E) % 3 != 0));
}

INSTANTIATE_TEST_SUITE_P(Grid, PrepareMoeInputCuda,
                         ::testing::Combine(::testing::Values<int64_t>(0, 1, 16, 128, 513, 16384),
                                            ::testing::Values<int64_t>(1, 2, 4, 8),
                                            ::testing::Values<int64_t>(1, 8, 16, 64, 257, 2048)));

TEST(PrepareMoeInputCuda, ExpertMapAndAllOnOneExpert) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor map(DType::kInt32, {64});
  map.fill(-1);
  for (int64_t e = 0; e < 16; ++e) map.set(4 * e + 1, static_cast<double>(15 - e));
  HostTensor ids = random_topk_ids(rng, 3000, 6, 64, 0.05, true);
  EXPECT_TRUE(prepare_matches(ids, 16, true, &map));
  HostTensor one(DType::kInt32, {50000, 2});
  one.fill(3);
  EXPECT_TRUE(prepare_matches(one, 8, true));
}

// Small-path limits as for the align (1024 pairs, 48 KiB table), blockscale on and off.
TEST(PrepareMoeInputCuda, SmallPathBoundaries) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  const std::pair<int64_t, int64_t> shapes[] = {{341, 3}, {128, 8}, {205, 5}, {64, 16}, {8, 8}};
  for (auto [M, topk] : shapes)
    for (int64_t E : {1, 8, 256, 700, 2048}) {
      const int64_t variant = M + E + topk;
      HostTensor ids = random_topk_ids(rng, M, topk, E, variant % 2 ? 0.1 : 0.0, variant % 3 == 0);
      for (bool blockscale : {false, true})
        EXPECT_TRUE(prepare_matches(ids, E, blockscale))
            << "M " << M << " topk " << topk << " E " << E << " blockscale " << blockscale;
    }
  HostTensor map(DType::kInt32, {64});
  map.fill(-1);
  for (int64_t e = 0; e < 16; ++e) map.set(4 * e + 2, static_cast<double>(e));
  HostTensor ids = random_topk_ids(rng, 100, 8, 66, 0.05, true);
  EXPECT_TRUE(prepare_matches(ids, 16, true, &map));
}

TEST(PrepareMoeInputCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t M : {64, 4096}) {
    const int64_t topk = 8, E = 64;
    HostTensor ids = random_topk_ids(rng, M, topk, E, 0.05);
    PrepareHost init(M * topk, E);
    DeviceTensor d_ids(ids);
    DeviceTensor e[6] = {DeviceTensor(init.offsets), DeviceTensor(init.blockscale), DeviceTensor(init.sizes1),
                         DeviceTensor(init.sizes2), DeviceTensor(init.in_perm), DeviceTensor(init.out_perm)};
    DeviceTensor g[6] = {DeviceTensor(init.offsets), DeviceTensor(init.blockscale), DeviceTensor(init.sizes1),
                         DeviceTensor(init.sizes2), DeviceTensor(init.in_perm), DeviceTensor(init.out_perm)};
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    auto run = [&](DeviceTensor* t) {
      prepare_moe_input(d_ids.view(), t[0].view(), t[1].view(), t[2].view(), t[3].view(), t[4].view(),
                        t[5].view(), E, 128, 256, TensorView{}, Stream{stream});
    };
    run(e);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    run(g);
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    for (int i = 0; i < 6; ++i) EXPECT_TRUE(g[i].to_host().bytes_equal(e[i].to_host())) << i << " M " << M;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

// ---- shuffle_rows ----

class ShuffleRowsCuda : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t>> {};

TEST_P(ShuffleRowsCuda, CopiesEveryByte) {
  MOEKIT_REQUIRE_GPU();
  auto [dtype, dst_rows, cols] = GetParam();
  auto rng = fresh_rng();
  const int64_t src_rows = dst_rows / 2 + 3, row_bytes = cols * static_cast<int64_t>(dtype_size(dtype));
  HostTensor in(DType::kUInt8, {src_rows, row_bytes});
  in.fill_int(rng, 0, 255);
  HostTensor map(DType::kInt32, {dst_rows});
  for (int64_t r = 0; r < dst_rows; ++r) {
    int64_t v = std::uniform_int_distribution<int64_t>(0, src_rows - 1)(rng);
    if (r % 7 == 3) v = (r % 2) ? -1 : src_rows + r;
    map.set(r, static_cast<double>(v));
  }
  HostTensor expected(DType::kUInt8, {dst_rows, row_bytes});
  expected.poison();
  HostTensor poisoned = expected;
  reference::shuffle_rows(TensorView(in.data(), dtype, {src_rows, cols}), map.view(),
                          TensorView(expected.data(), dtype, {dst_rows, cols}));
  DeviceTensor d_in(in), d_map(map), d_out(poisoned);
  const Device gpu{DeviceKind::kCUDA, 0};
  shuffle_rows(TensorView(d_in.data(), dtype, {src_rows, cols}, gpu), d_map.view(),
               TensorView(d_out.data(), dtype, {dst_rows, cols}, gpu));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(d_out.to_host().bytes_equal(expected));
}

INSTANTIATE_TEST_SUITE_P(
    Grid, ShuffleRowsCuda,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kFloat16, DType::kBFloat16,
                                         DType::kFloat8E4M3, DType::kUInt8),
                       ::testing::Values<int64_t>(1, 64, 1021),
                       ::testing::Values<int64_t>(1, 3, 56, 256, 512, 4096, 4097)));
INSTANTIATE_TEST_SUITE_P(ManyRows, ShuffleRowsCuda,
                         ::testing::Combine(::testing::Values(DType::kFloat32, DType::kUInt8),
                                            ::testing::Values<int64_t>(70001),
                                            ::testing::Values<int64_t>(3, 24)));

TEST(ShuffleRowsCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor in(DType::kBFloat16, {512, 2048});
  in.fill_normal(rng);
  HostTensor map(DType::kInt32, {1024});
  for (int64_t r = 0; r < 1024; ++r) map.set(r, static_cast<double>((r * 37) % 512));
  HostTensor out(DType::kBFloat16, {1024, 2048});
  out.poison();
  DeviceTensor d_in(in), d_map(map), d_eager(out), d_graph(out);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  shuffle_rows(d_in.view(), d_map.view(), d_eager.view(), Stream{stream});
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  shuffle_rows(d_in.view(), d_map.view(), d_graph.view(), Stream{stream});
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
