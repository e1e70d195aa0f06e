// Timings of the CUDA fused_qk_norm_rope (H100/H200) for the record, as CUDA-graph replays of 20
// launches (median of 15); printed, never asserted: the targets (16384 tokens >= 75% of copy
// bandwidth, decode sizes < 5 us) are judged by bench/gpu_ops_bench.cu.
// Run alone: moekit_cuda_tests --gtest_filter='*QkNormRopeCudaPerf*'.
#include <cstdio>

#include "common/cuda_perf_util.h"
#include "common/cuda_test_util.h"
#include "moekit/qk_norm_rope.h"
#include "rope/cuda/launcher.h"

namespace moekit::test {
namespace {

TEST(QkNormRopeCudaPerf, BandwidthAndDecodeLatency) {
  MOEKIT_REQUIRE_GPU();
  const size_t copy_bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, copy_bytes), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, copy_bytes), cudaSuccess);
  const double copy_us = graph_time_us(
      [&](Stream st) {
        cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(st.handle));
      },
      5, 9);
  const double copy_gbps = 2.0 * copy_bytes / copy_us / 1e3;
  cudaFree(a);
  cudaFree(b);

  struct Shape {
    int64_t hq, hkv, D, R;
  };
  // Qwen3-30B-A3B, Qwen3-235B, GLM-4.5 (partial rotary), a D = 64 and a D = 256 model.
  for (Shape s : {Shape{32, 4, 128, 128}, Shape{64, 4, 128, 128}, Shape{96, 8, 128, 64},
                  Shape{16, 8, 64, 64}, Shape{16, 2, 256, 256}})
    for (int64_t T : {1, 16, 64, 16384}) {
      const int64_t width = (s.hq + 2 * s.hkv) * s.D;
      HostTensor qkv(DType::kBFloat16, {T, width}), w(DType::kBFloat16, {s.D}), pos(DType::kInt32, {T});
      // Cheap pseudo-random bf16 values in [-2, 2) (the timing does not depend on the data).
      uint32_t state = 12345;
      uint16_t* q = qkv.ptr<uint16_t>();
      for (int64_t i = 0; i < qkv.numel(); ++i) {
        state = state * 1664525u + 1013904223u;
        q[i] = static_cast<uint16_t>(0x3f80u | ((state >> 16) & 0x807fu)) ^ ((state >> 9) & 0x0080u);
      }
      w.fill(1.0);
      for (int64_t t = 0; t < T; ++t) pos.set(t, 100 + t);
      DeviceTensor d_qkv(qkv), d_w(w), d_pos(pos);
      const double us = graph_time_us([&](Stream st) {
        fused_qk_norm_rope(d_qkv.view(), s.hq, s.hkv, s.hkv, s.D, 1e-6, d_w.view(), d_w.view(), 1e6, true,
                           d_pos.view(), 1.0, 0.0, 0.0, 1.0, s.R, st);
      });
      const double bytes = 2.0 * T * (s.hq + s.hkv) * s.D * 2 + 4.0 * T;
      const double gbps = bytes / us / 1e3;
      std::printf("fused_qk_norm_rope T=%ld Hq=%ld Hkv=%ld D=%ld R=%ld bf16: %.2f us, %.0f GB/s = %.0f%% of copy %.0f GB/s\n",
                  long(T), long(s.hq), long(s.hkv), long(s.D), long(s.R), us, gbps, 100 * gbps / copy_gbps,
                  copy_gbps);
      // Every unit size of the launcher (warp rows per unit) for the record, hot inputs.
      const detail::QkNormRopeArgs args = detail::validate_fused_qk_norm_rope(
          d_qkv.view(), s.hq, s.hkv, s.hkv, s.D, 1e-6, d_w.view(), d_w.view(), 1e6, true, d_pos.view(), 1.0,
          0.0, 0.0, 1.0, s.R, d_qkv.view().device);
      const detail::RotaryFrequencies& freqs =
          detail::rotary_frequencies(args.base, args.rotary_dim, args.factor, args.low, args.high);
      std::printf("  unit rows 1/2/3/4:");
      for (int unit_rows = 1; unit_rows <= 4; ++unit_rows)
        std::printf(" %.2f", graph_time_us([&](Stream st) { cuda::fused_qk_norm_rope(args, freqs, st, unit_rows); }));
      std::printf(" us\n");
    }
}

}  // namespace
}  // namespace moekit::test
