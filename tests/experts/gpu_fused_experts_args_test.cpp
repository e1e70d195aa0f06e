// Argument checks and the workspace query of the GPU fused_experts (host-only: no device needed).
#include "common/test_util.h"
#include "experts/configs.h"
#include "experts/cuda/launcher.h"
#include "moekit/gpu_experts.h"

namespace moekit::test {
namespace {

struct Shapes {
  HostTensor x, w13, w2, tw, ids, out, ws;
  ExpertWeights ew13, ew2;
  Shapes(int64_t M, int64_t E, int64_t k, int64_t H, int64_t I, DType dt = DType::kBFloat16)
      : x(dt, {M, H}), w13(dt, {E, 2 * I, H}), w2(dt, {E, H, I}), tw(DType::kFloat32, {M, k}),
        ids(DType::kInt32, {M, k}), out(dt, {M, H}), ws(DType::kUInt8, {1 << 20}) {
    ew13.weight = w13.view();
    ew2.weight = w2.view();
  }
  void run(FusedExpertsOptions o = {}) {
    fused_experts(x.view(), ew13, ew2, tw.view(), ids.view(), out.view(), ws.view(), o);
  }
};

TEST(FusedExpertsGpuArgs, WorkspaceGrowsWithTokens) {
  Shapes a(1, 8, 2, 64, 32), b(1000, 8, 2, 64, 32);
  const size_t sa = fused_experts_workspace_size(a.x.view(), a.ew13, a.ew2, a.ids.view());
  const size_t sb = fused_experts_workspace_size(b.x.view(), b.ew13, b.ew2, b.ids.view());
  EXPECT_GT(sa, 0u);
  // At least the two intermediate row buffers: P * (I + H) elements of 2 bytes.
  EXPECT_GE(sb, size_t(2000) * (32 + 64) * 2);
  EXPECT_GT(sb, sa);
}

// The grouped prefill path (when built) adds its gate/up rows [P, 2I] and argument arrays.
TEST(FusedExpertsGpuArgs, WorkspaceOfGroupedPath) {
  Shapes s(1000, 8, 2, 64, 32);
  cuda::force_experts_tile(cuda::kGemmTiles[int(cuda::TileId::kLarge128)].name);
  const size_t tiled = fused_experts_workspace_size(s.x.view(), s.ew13, s.ew2, s.ids.view());
  cuda::force_experts_tile(cuda::kGroupedTiles[0].name);
  const size_t grouped = fused_experts_workspace_size(s.x.view(), s.ew13, s.ew2, s.ids.view());
  cuda::force_experts_tile(nullptr);
  // The default choice for 250 tokens per expert is the grouped path where it is built.
  EXPECT_EQ(fused_experts_workspace_size(s.x.view(), s.ew13, s.ew2, s.ids.view()), grouped);
  if (cuda::grouped_experts_available())  // + fp32 gate/up rows, sorted weights, CUTLASS scratch
    EXPECT_GE(grouped, tiled + size_t(2000) * 64 * 4 + 2000 * 4 + 2 * cuda::kGroupedGemmScratchBytes);
  else
    EXPECT_EQ(grouped, tiled);
}

TEST(FusedExpertsGpuArgs, RejectsBadArguments) {
  {
    Shapes s(4, 8, 2, 64, 32);
    s.ids = HostTensor(DType::kInt64, {4, 2});
    EXPECT_MOEKIT_ERROR(s.run(), "topk_ids: expected int32");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    s.w2 = HostTensor(DType::kBFloat16, {8, 64, 16});
    s.ew2.weight = s.w2.view();
    EXPECT_MOEKIT_ERROR(s.run(), "w13.weight: expected shape [8, 32, 64]");
  }
  {
    Shapes s(4, 8, 2, 60, 32);
    EXPECT_MOEKIT_ERROR(s.run(), "multiple of 8");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    TensorView x = s.x.view();
    x.data = static_cast<char*>(x.data) + 2;  // one bf16 element off: 2-byte aligned only
    EXPECT_MOEKIT_ERROR(fused_experts(x, s.ew13, s.ew2, s.tw.view(), s.ids.view(), s.out.view(),
                                      s.ws.view()),
                        "hidden: expected a 16-byte aligned data pointer");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    s.w13 = HostTensor(DType::kFloat16, {8, 64, 64});
    s.ew13.weight = s.w13.view();
    EXPECT_MOEKIT_ERROR(s.run(), "w13.weight: expected the dtype of hidden");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    s.tw = HostTensor(DType::kFloat32, {4, 3});
    EXPECT_MOEKIT_ERROR(s.run(), "topk_weights: expected shape [4, 2]");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    FusedExpertsOptions o;
    o.scheme = WeightScheme::kInt8W8A8;
    EXPECT_MOEKIT_ERROR(s.run(o), "options.scheme: expected kBF16");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    s.ws = HostTensor(DType::kUInt8, {16});
    EXPECT_MOEKIT_ERROR(s.run(), "workspace: expected at least");
  }
  {
    Shapes s(4, 8, 2, 64, 32);
    EXPECT_MOEKIT_ERROR(s.run(), "expected a CUDA tensor");
  }
}

TEST(FusedExpertsGpuArgs, ZeroTokensIsANoOp) {
  Shapes s(0, 8, 2, 64, 32);
  s.ws = HostTensor();
  EXPECT_NO_THROW(s.run());
}

}  // namespace
}  // namespace moekit::test
