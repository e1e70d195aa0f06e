// CUDA routers against the oracle: the spec's grid (tokens up to 16384), awkward inputs, graph
// capture and replay, and decode-size timings printed for the record (never a pass/fail criterion:
// speed is judged by the benchmarks).
#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "common/cuda_perf_util.h"
#include "common/cuda_test_util.h"
#include "routing/router_cases.h"

namespace moekit::test {
namespace {

void check_cuda(const RouterCall& call, DType dtype, int64_t M, int64_t E, bool specials,
                double bias_scale, std::mt19937_64& rng) {
  SCOPED_TRACE(call.describe() + " dtype=" + dtype_name(dtype) + " M=" + std::to_string(M) +
               " E=" + std::to_string(E));
  HostTensor logits(dtype, {M, E});
  fill_logits(logits, rng, specials);
  bool gate = call.op == RouterOp::kFusedGate || call.op == RouterOp::kKimi ||
              call.op == RouterOp::kBiasedGrouped;
  HostTensor bias(gate ? dtype : DType::kFloat32, {E});
  bias.fill_normal(rng, 0.0, bias_scale);
  HostTensor w_ref(DType::kFloat32, {M, call.topk}), ids_ref(DType::kInt32, {M, call.topk});
  call.run(true, logits.view(), bias.view(), w_ref.view(), ids_ref.view());
  HostTensor w0(DType::kFloat32, {M, call.topk}), ids0(DType::kInt32, {M, call.topk});
  w0.poison();
  ids0.poison();
  DeviceTensor d_logits(logits), d_bias(bias), d_w(w0), d_ids(ids0);
  call.run(false, d_logits.view(), d_bias.view(), d_w.view(), d_ids.view());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_TRUE(RoutesMatch(d_w.to_host(), d_ids.to_host(), w_ref, ids_ref));
}

const std::vector<int64_t> kExperts = {8, 60, 64, 128, 160, 256, 384, 512};
const std::vector<int> kTopk = {1, 2, 6, 8, 16};

class RouterCuda : public ::testing::TestWithParam<DType> {};

TEST_P(RouterCuda, SoftmaxAndSigmoidMatchOracle) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t E : kExperts)
    for (int k : kTopk) {
      if (k > E) continue;
      for (int64_t M : {0, 1, 7, 64, 1000}) {
        for (RouterOp op : {RouterOp::kSoftmax, RouterOp::kSigmoid}) {
          RouterCall c;
          c.op = op;
          c.topk = k;
          c.renormalize = (M + k) % 2 == 0;
          c.use_bias = M % 2 == 1;
          c.softcap = op == RouterOp::kSoftmax && M == 7 ? 30.f : 0.f;
          c.bias_mode = M == 1 && op == RouterOp::kSoftmax ? RouterBiasMode::kSelectionOnly
                                                           : RouterBiasMode::kLogit;
          check_cuda(c, GetParam(), M, E, M >= 7, 1.0, rng);
        }
      }
    }
  RouterCall c;
  c.op = RouterOp::kSigmoid;
  c.topk = 8;
  c.use_bias = true;
  check_cuda(c, GetParam(), 16384, 256, true, 1e4, rng);
  c.op = RouterOp::kSoftmax;
  c.renormalize = true;
  check_cuda(c, GetParam(), 16384, 128, true, 1.0, rng);
  // Teams of three warps (257-384 experts), partial last warp included.
  for (int64_t E : {300, 384})
    for (int64_t M : {1, 7, 64})
      for (RouterOp op : {RouterOp::kSoftmax, RouterOp::kSigmoid}) {
        c.op = op;
        c.topk = M == 7 ? 16 : 8;
        c.bias_mode = RouterBiasMode::kLogit;
        check_cuda(c, GetParam(), M, E, true, 1.0, rng);
      }
  c.topk = 8;
  // Above 1024 rows one warp routes a row (up to 16 experts per lane); below, teams of warps do.
  for (int64_t E : {160, 384, 512})
    for (RouterOp op : {RouterOp::kSoftmax, RouterOp::kSigmoid}) {
      c.op = op;
      c.bias_mode = RouterBiasMode::kLogit;
      check_cuda(c, GetParam(), 1500, E, true, 1.0, rng);
      if (op == RouterOp::kSoftmax) {
        c.bias_mode = RouterBiasMode::kSelectionOnly;
        check_cuda(c, GetParam(), 1030, E, true, 1.0, rng);
      }
    }
}

TEST_P(RouterCuda, GroupedGatesMatchOracle) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t E : kExperts)
    for (int G : {1, 4, 8})
      for (int k : kTopk) {
        if (E % G) continue;
        const int V = static_cast<int>(E / G);
        for (int tg : {1, G / 2, G}) {
          if (tg < 1 || k > tg * V) continue;
          for (RouterOp op : {RouterOp::kFusedGate, RouterOp::kBiasedGrouped, RouterOp::kGrouped}) {
            RouterCall c;
            c.op = op;
            c.topk = k + (k % 3 == 0 ? 2 : 0);
            c.shared = c.topk - k;
            c.groups = G;
            c.topk_group = tg;
            c.rsf = 2.5;
            c.apply = k % 2 == 0;
            c.renormalize = k != 2;
            c.use_bias = true;
            check_cuda(c, GetParam(), tg == G ? 64 : 7, E, true, 0.5, rng);
          }
        }
      }
  // Unusual group shapes: one expert per group, 32 groups, groups wider than a warp.
  for (auto [E, G, tg, k] : std::vector<std::tuple<int, int, int, int>>{
           {64, 64, 40, 16}, {64, 64, 3, 3}, {512, 32, 4, 16}, {384, 2, 1, 8}, {160, 16, 9, 12},
           {384, 12, 4, 8}, {288, 9, 3, 8}}) {
    RouterCall c;
    c.op = RouterOp::kFusedGate;
    c.topk = k;
    c.groups = G;
    c.topk_group = tg;
    c.use_bias = true;
    check_cuda(c, GetParam(), 64, E, true, 0.5, rng);
  }
  RouterCall c;
  c.op = RouterOp::kFusedGate;
  c.topk = 9;
  c.shared = 1;
  c.groups = 8;
  c.topk_group = 4;
  c.rsf = 2.5;
  c.use_bias = true;
  check_cuda(c, GetParam(), 16384, 256, true, 1.0, rng);
  check_cuda(c, GetParam(), 1000, 256, true, 1e4, rng);
  c.topk = 16;
  c.shared = 0;
  c.groups = 8;  // one kept group of 64: two of the team's four warps hold none of its experts
  c.topk_group = 1;
  check_cuda(c, GetParam(), 1500, 512, true, 1.0, rng);  // one warp per row
  check_cuda(c, GetParam(), 33, 512, true, 1.0, rng);    // a team of 4 warps per row
}

TEST_P(RouterCuda, KimiGateMatchesOracle) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (int64_t E : {256, 384, 60})
    for (int k : {1, 6, 8, 9, 16})
      for (bool renorm : {false, true}) {
        RouterCall c;
        c.op = RouterOp::kKimi;
        c.topk = k;
        c.renormalize = renorm;
        c.apply = true;
        c.rsf = 2.872;
        c.use_bias = true;
        check_cuda(c, GetParam(), k == 6 ? 16384 : 64, E, true, 0.5, rng);
      }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, RouterCuda,
                         ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(RouterCudaGraph, CaptureAndReplayIsIdentical) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  for (RouterOp op : {RouterOp::kSoftmax, RouterOp::kSigmoid, RouterOp::kFusedGate, RouterOp::kKimi,
                      RouterOp::kGrouped, RouterOp::kBiasedGrouped}) {
    SCOPED_TRACE(router_op_name(op));
    RouterCall c;
    c.op = op;
    c.topk = 8;
    c.use_bias = true;
    c.renormalize = true;
    if (op == RouterOp::kFusedGate || op == RouterOp::kGrouped || op == RouterOp::kBiasedGrouped) {
      c.groups = 8;
      c.topk_group = 4;
      c.rsf = 2.5;
    }
    HostTensor logits(DType::kFloat32, {64, 256}), bias(DType::kFloat32, {256});
    fill_logits(logits, rng, true);
    bias.fill_normal(rng);
    HostTensor w(DType::kFloat32, {64, 8}), ids(DType::kInt32, {64, 8});
    w.poison();
    ids.poison();
    DeviceTensor d_logits(logits), d_bias(bias), d_w_eager(w), d_ids_eager(ids), d_w(w), d_ids(ids);
    cudaStream_t stream;
    ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
    c.run(false, d_logits.view(), d_bias.view(), d_w_eager.view(), d_ids_eager.view(), Stream{stream});
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
    c.run(false, d_logits.view(), d_bias.view(), d_w.view(), d_ids.view(), Stream{stream});
    ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_TRUE(d_w.to_host().bytes_equal(d_w_eager.to_host()));
    EXPECT_TRUE(d_ids.to_host().bytes_equal(d_ids_eager.to_host()));
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    cudaStreamDestroy(stream);
  }
}

__global__ void empty_kernel() {}

// Median GPU time of one call: a graph of kCallsPerGraph calls replayed between two events, divided
// by kCallsPerGraph, so the graph launch latency is amortised. Back-to-back kernel nodes still
// cost the node-to-node gap; EmptyKernelBaseline prints that gap for the same measurement.
constexpr int kCallsPerGraph = 200;

float replay_us(const std::function<void(cudaStream_t)>& call) {
  return static_cast<float>(graph_time_us(
      [&](Stream s) { call(static_cast<cudaStream_t>(s.handle)); }, kCallsPerGraph, 7));
}

TEST(RouterCudaTiming, EmptyKernelBaseline) {
  MOEKIT_REQUIRE_GPU();
  float us = replay_us([](cudaStream_t st) { empty_kernel<<<1, 32, 0, st>>>(); });
  std::printf("[router timing] empty kernel (graph node gap) %.2f us\n", us);
}

TEST(RouterCudaTiming, DecodeSizes) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  struct Shape { RouterOp op; int64_t E; int topk, G, tg, S; };
  for (Shape s : {Shape{RouterOp::kSoftmax, 128, 8, 1, 1, 0}, Shape{RouterOp::kSoftmax, 512, 8, 1, 1, 0},
                  Shape{RouterOp::kSigmoid, 256, 8, 1, 1, 0}, Shape{RouterOp::kFusedGate, 256, 9, 8, 4, 1},
                  Shape{RouterOp::kKimi, 384, 8, 1, 1, 0}})
    for (int64_t M : {1, 16, 64, 4096}) {
      RouterCall c;
      c.op = s.op;
      c.topk = s.topk;
      c.groups = s.G;
      c.topk_group = s.tg;
      c.shared = s.S;
      c.rsf = 2.5;
      c.use_bias = true;
      c.renormalize = true;
      HostTensor logits(DType::kFloat32, {M, s.E}), bias(DType::kFloat32, {s.E});
      fill_logits(logits, rng, false);
      bias.fill_normal(rng);
      HostTensor w(DType::kFloat32, {M, s.topk}), ids(DType::kInt32, {M, s.topk});
      DeviceTensor d_logits(logits), d_bias(bias), d_w(w), d_ids(ids);
      float us = replay_us([&](cudaStream_t st) {
        c.run(false, d_logits.view(), d_bias.view(), d_w.view(), d_ids.view(), Stream{st});
      });
      std::printf("[router timing] %-24s E=%-4lld topk=%-2d M=%-5lld %.2f us\n", router_op_name(s.op),
                  static_cast<long long>(s.E), s.topk, static_cast<long long>(M), us);
    }
}

}  // namespace
}  // namespace moekit::test
