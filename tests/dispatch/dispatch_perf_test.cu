// Performance figures of the dispatch and combine CUDA ops, printed next to their targets but
// never failing (speed is judged by bench/gpu_ops_bench.cu). Timed as CUDA-graph replays of 20
// launches, so launch latency is amortised (common/cuda_perf_util.h); the bandwidth figures flush L2 before
// every call. Run alone: moekit_cuda_tests --gtest_filter='*Perf*'.
//   align: 8192 tokens x top-8 x 256 experts < 20 us; decode sizes < 5 us
//   moe_sum / moe_sum_reduce / apply_shuffle_mul_sum at 16384 tokens: >= 75% of the
//   device-to-device copy bandwidth measured in the same run.
#include <cstdio>

#include "common/cuda_test_util.h"
#include "dispatch/dispatch_test_util.h"
#include "common/cuda_perf_util.h"
#include "moekit/combine.h"

namespace moekit::test {
namespace {

double align_us(int64_t M, int64_t topk, int64_t E, int64_t bs, bool pad) {
  auto rng = fresh_rng();
  HostTensor ids = random_topk_ids(rng, M, topk, E);
  AlignBuffers buf(M * topk, E + 1, bs);
  DeviceTensor d_ids(ids), sorted(buf.sorted), experts(buf.experts), post(buf.post_pad),
      cumsum(buf.cumsum);
  return graph_time_us([&](Stream s) {
    moe_align_block_size(d_ids.view(), E + 1, bs, sorted.view(), experts.view(), post.view(),
                         cumsum.view(), pad, false, s);
  });
}

TEST(MoeAlignCudaPerf, PrefillAndDecodeFigures) {
  MOEKIT_REQUIRE_GPU();
  struct Case {
    int64_t M, topk, E, bs;
    double target_us;
  };
  const Case cases[] = {
      {8192, 8, 256, 64, 20.0}, {8192, 8, 256, 128, 20.0}, {16384, 8, 256, 64, 40.0},
      {4096, 8, 128, 64, 20.0}, {1, 8, 256, 16, 5.0},      {16, 8, 256, 16, 5.0},
      {64, 8, 256, 32, 5.0},    {128, 8, 256, 64, 5.0},    {64, 8, 128, 16, 5.0},
  };
  for (const Case& c : cases) {
    const double us = align_us(c.M, c.topk, c.E, c.bs, true);
    std::printf("moe_align_block_size M=%ld topk=%ld E=%ld bs=%ld pad: %.2f us (target < %.0f%s)\n",
                long(c.M), long(c.topk), long(c.E), long(c.bs), us, c.target_us,
                us < c.target_us ? "" : ", MISSED");
  }
}

TEST(PrepareMoeInputCudaPerf, Prefill) {
  MOEKIT_REQUIRE_GPU();
  for (int64_t M : {16, 8192}) {
    auto rng = fresh_rng();
    const int64_t topk = 8, E = 256;
    HostTensor ids = random_topk_ids(rng, M, topk, E);
    HostTensor off(DType::kInt32, {E + 1}), sizes(DType::kInt32, {E, 3}), perm(DType::kInt32, {M * topk});
    DeviceTensor d_ids(ids), d_off(off), d_bs(off), s1(sizes), s2(sizes), ip(perm), op(perm);
    const double us = graph_time_us([&](Stream s) {
      prepare_moe_input(d_ids.view(), d_off.view(), d_bs.view(), s1.view(), s2.view(), ip.view(),
                        op.view(), E, 1024, 7168, TensorView{}, s);
    });
    std::printf("prepare_moe_input M=%ld topk=8 E=256: %.2f us\n", long(M), us);
  }
}

double copy_gbps(size_t bytes) {
  void *a = nullptr, *b = nullptr;
  cudaMalloc(&a, bytes);
  cudaMalloc(&b, bytes);
  const double us = graph_time_cold_us([&](Stream s) {
    cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(s.handle));
  });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / us / 1e3;  // read + write
}

TEST(CombineCudaPerf, BandwidthAt16384Tokens) {
  MOEKIT_REQUIRE_GPU();
  const int64_t M = 16384, H = 7168;
  for (int64_t k : {1, 2, 8}) {
    HostTensor in(DType::kBFloat16, {M, k, H});  // contents do not matter for timing
    HostTensor out(DType::kBFloat16, {M, H});
    HostTensor perm(DType::kInt32, {M * k}), f(DType::kFloat32, {M * k});
    for (int64_t i = 0; i < M * k; ++i) {
      perm.set(i, static_cast<double>((i * 7919) % (M * k)));
      f.set(i, 0.5);
    }
    DeviceTensor d_in(in), d_out(out), d_perm(perm), d_f(f);
    const TensorView flat(d_in.data(), DType::kBFloat16, {M * k, H}, Device{DeviceKind::kCUDA, 0});
    const double bytes = double(M) * (k + 1) * H * 2;
    const double copy = copy_gbps(static_cast<size_t>(bytes / 2));
    const double sum_us = graph_time_cold_us([&](Stream s) { moe_sum(d_in.view(), d_out.view(), s); });
    const double reduce_us =
        graph_time_cold_us([&](Stream s) { moe_sum_reduce(d_in.view(), d_out.view(), 2.5, s); });
    const double shuffle_us = graph_time_cold_us(
        [&](Stream s) { apply_shuffle_mul_sum(flat, d_out.view(), d_perm.view(), d_f.view(), s); });
    for (auto [name, us] : {std::pair<const char*, double>{"moe_sum", sum_us},
                            {"moe_sum_reduce", reduce_us}, {"apply_shuffle_mul_sum", shuffle_us}}) {
      const double gbps = bytes / us / 1e3;
      std::printf("%s M=%ld k=%ld H=%ld bf16: %.1f us, %.0f GB/s = %.0f%% of copy %.0f GB/s "
                  "(target >= 75%%)\n",
                  name, long(M), long(k), long(H), us, gbps, 100 * gbps / copy, copy);
    }
  }
}

}  // namespace
}  // namespace moekit::test
