// route_and_align_block_size on the CPU: a hand-computed case and the composition of the router and
// alignment oracles against the public entry.
#include "moekit/dispatch.h"
#include "routing/router_cases.h"

namespace moekit::test {
namespace {

struct AlignBuffers {
  HostTensor w, ids, sorted, experts, total;
  AlignBuffers(int64_t M, int k, int64_t buckets, int64_t bs)
      : w(DType::kFloat32, {M, k}), ids(DType::kInt32, {M, k}) {
    AlignCapacity cap = moe_align_block_size_capacity(M * k, buckets, bs);
    sorted = HostTensor(DType::kInt32, {cap.sorted_token_ids + 5});
    experts = HostTensor(DType::kInt32, {cap.experts_ids + 3});
    total = HostTensor(DType::kInt32, {1});
    for (HostTensor* t : {&w, &ids, &sorted, &experts, &total}) t->poison();
  }
  bool equals(const AlignBuffers& o) const {
    return w.bytes_equal(o.w) && ids.bytes_equal(o.ids) && sorted.bytes_equal(o.sorted) &&
           experts.bytes_equal(o.experts) && total.bytes_equal(o.total);
  }
};

TEST(RouteAndAlignReference, HandComputed) {
  // Rows route to (3, 1) and (3, 0); block size 2: buckets e0 [3], e1 [1], e3 [0, 2].
  HostTensor x(DType::kFloat32, {2, 4});
  const float v[] = {0, 2, 1, 3, 2, 1, 0, 3};
  for (int i = 0; i < 8; ++i) x.set(i, v[i]);
  RouteAndAlignOptions o;
  o.block_size = 2;
  o.pad_sorted_token_ids = true;
  AlignBuffers b(2, 2, 4, 2);
  reference::route_and_align_block_size(x.view(), TensorView{}, b.w.view(), b.ids.view(),
                                        b.sorted.view(), b.experts.view(), b.total.view(), o);
  EXPECT_EQ(b.ids.get(0), 3);
  EXPECT_EQ(b.ids.get(1), 1);
  EXPECT_EQ(b.ids.get(2), 3);
  EXPECT_EQ(b.ids.get(3), 0);
  EXPECT_EQ(b.total.get(0), 6);
  const int sorted[] = {3, 4, 1, 4, 0, 2};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(b.sorted.get(i), sorted[i]) << i;
  EXPECT_EQ(b.sorted.get(6), 4);  // the pad fill reaches the end of the buffer
  const int experts[] = {0, 1, 3};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.experts.get(i), experts[i]) << i;
  EXPECT_EQ(static_cast<uint32_t>(b.experts.get(3)), 0x7f7f7f7fu);  // untouched
}

TEST(RouteAndAlignCpu, MatchesComposedOracles) {
  auto rng = fresh_rng();
  for (auto router : {RouteAndAlignOptions::Router::kTopkSoftmax,
                      RouteAndAlignOptions::Router::kTopkSigmoid,
                      RouteAndAlignOptions::Router::kMoeFusedGate})
    for (int64_t M : {0, 1, 7, 300})
      for (int64_t bs : {1, 16, 64})
        for (bool pad : {false, true}) {
          const int64_t E = 256;
          RouteAndAlignOptions o;
          o.router = router;
          o.block_size = bs;
          o.pad_sorted_token_ids = pad;
          o.renormalize = true;
          o.gate.num_expert_group = 8;
          o.gate.topk_group = 4;
          o.gate.topk = 9;
          o.gate.num_fused_shared_experts = 1;
          o.gate.routed_scaling_factor = 2.5;
          const bool gate = router == RouteAndAlignOptions::Router::kMoeFusedGate;
          const int k = gate ? 9 : 8;
          SCOPED_TRACE("router " + std::to_string(static_cast<int>(router)) + " M=" +
                       std::to_string(M) + " bs=" + std::to_string(bs) + " pad=" + std::to_string(pad));
          HostTensor x(DType::kFloat32, {M, E}), bias(DType::kFloat32, {E});
          fill_logits(x, rng, true);
          bias.fill_normal(rng);
          AlignBuffers want(M, k, E + (gate ? 1 : 0), bs), got = want;
          reference::route_and_align_block_size(x.view(), bias.view(), want.w.view(), want.ids.view(),
                                                want.sorted.view(), want.experts.view(),
                                                want.total.view(), o);
          route_and_align_block_size(x.view(), bias.view(), got.w.view(), got.ids.view(),
                                     got.sorted.view(), got.experts.view(), got.total.view(), o);
          EXPECT_TRUE(RoutesMatch(got.w, got.ids, want.w, want.ids));
          EXPECT_TRUE(got.sorted.bytes_equal(want.sorted) && got.experts.bytes_equal(want.experts) &&
                      got.total.bytes_equal(want.total));
          if (M > 0 && gate) {
            EXPECT_EQ(want.ids.get(8), E);  // the shared slot is a real bucket
          }
        }
}

TEST(RouteAndAlignErrors, CapacityAndRouterArguments) {
  HostTensor x(DType::kFloat32, {4, 16});
  HostTensor w(DType::kFloat32, {4, 2}), ids(DType::kInt32, {4, 2});
  HostTensor small(DType::kInt32, {3}), experts(DType::kInt32, {64}), total(DType::kInt32, {1});
  RouteAndAlignOptions o;
  o.block_size = 4;
  EXPECT_MOEKIT_ERROR(route_and_align_block_size(x.view(), TensorView{}, w.view(), ids.view(),
                                                 small.view(), experts.view(), total.view(), o),
                      "sorted_token_ids: expected at least");
  o.router = RouteAndAlignOptions::Router::kMoeFusedGate;
  o.gate.topk = 2;
  HostTensor big(DType::kInt32, {1024});
  EXPECT_MOEKIT_ERROR(route_and_align_block_size(x.view(), TensorView{}, w.view(), ids.view(),
                                                 big.view(), experts.view(), total.view(), o),
                      "bias: expected a tensor");
}

}  // namespace
}  // namespace moekit::test
