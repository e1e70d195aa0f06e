// GPU fused_experts / fused_moe with FusedExpertsOptions::gate_up_interleaved: the interleaved w13
// (and bias), made on the device by interleave_gate_up, gives exactly the bytes of the halves layout
// on every tiled-path tile (the layout changes only which weight rows a CTA loads).
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/cuda_test_util.h"
#include "experts/configs.h"
#include "moekit/gpu_experts.h"

namespace moekit::test {
namespace {

struct InterleavedCase {
  int64_t M, E, k, H, I;
  DType dtype;
  Activation act;
  bool bias;
};

FusedExpertsOptions options_of(const InterleavedCase& c, bool interleaved) {
  FusedExpertsOptions o;
  o.activation = c.act;
  o.routed_scaling_factor = 1.25;
  if (c.act == Activation::kSwigluOai) {
    o.swiglu_alpha = 1.702f;
    o.swiglu_limit = 7.f;
  }
  o.gate_up_interleaved = interleaved;
  return o;
}

struct TileScope {  // clears a forced tile when the test ends (also on failure)
  explicit TileScope(const char* name) { cuda::force_experts_tile(name); }
  ~TileScope() { cuda::force_experts_tile(nullptr); }
};

// Device tensors of one layer in both layouts.
struct Layer {
  HostTensor x, w13, w2, b13, b2, tw, ids;
  DeviceTensor dx, dw13, dw13i, dw2, db13, db13i, db2, dtw, dids;
  ExpertWeights halves13, inter13, e2;

  Layer(const InterleavedCase& c, std::mt19937_64& rng, cudaStream_t stream) {
    x = HostTensor(c.dtype, {c.M, c.H});
    x.fill_normal(rng);
    w13 = HostTensor(c.dtype, {c.E, 2 * c.I, c.H});
    w13.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(c.H)));
    w2 = HostTensor(c.dtype, {c.E, c.H, c.I});
    w2.fill_normal(rng, 0.0, 1.0 / std::sqrt(double(c.I)));
    tw = HostTensor(DType::kFloat32, {c.M, c.k});
    tw.fill_uniform(rng, 0.05, 1.0);
    ids = HostTensor(DType::kInt32, {c.M, c.k});
    std::uniform_int_distribution<int> pick(0, static_cast<int>(c.E) - 1);
    for (int64_t i = 0; i < c.M * c.k; ++i) ids.set(i, i % 7 == 3 ? -1 : pick(rng));  // some dropped
    dx = DeviceTensor(x);
    dw13 = DeviceTensor(w13);
    dw13i = DeviceTensor(w13);  // overwritten by the op below
    dw2 = DeviceTensor(w2);
    dtw = DeviceTensor(tw);
    dids = DeviceTensor(ids);
    interleave_gate_up(dw13.view(), dw13i.view(), 1, Stream{stream});
    halves13.weight = dw13.view();
    inter13.weight = dw13i.view();
    e2.weight = dw2.view();
    if (c.bias) {
      b13 = HostTensor(DType::kFloat32, {c.E, 2 * c.I});
      b13.fill_normal(rng, 0.0, 0.5);
      b2 = HostTensor(DType::kFloat32, {c.E, c.H});
      b2.fill_normal(rng, 0.0, 0.5);
      db13 = DeviceTensor(b13);
      db13i = DeviceTensor(b13);
      db2 = DeviceTensor(b2);
      interleave_gate_up(db13.view(), db13i.view(), 1, Stream{stream});
      halves13.bias = db13.view();
      inter13.bias = db13i.view();
      e2.bias = db2.view();
    }
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  }

  HostTensor run(const InterleavedCase& c, bool interleaved, cudaStream_t stream) {
    const FusedExpertsOptions o = options_of(c, interleaved);
    const ExpertWeights& w13v = interleaved ? inter13 : halves13;
    HostTensor out_h(c.dtype, {c.M, c.H});
    out_h.poison();
    DeviceTensor out(out_h);
    HostTensor ws_h(DType::kUInt8, {int64_t(fused_experts_workspace_size(dx.view(), w13v, e2, dids.view(), o))});
    ws_h.poison();
    DeviceTensor ws(ws_h);
    fused_experts(dx.view(), w13v, e2, dtw.view(), dids.view(), out.view(), ws.view(), o, Stream{stream});
    EXPECT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    return out.to_host();
  }
};

void check_equal(const HostTensor& got, const HostTensor& want, const std::string& what) {
  ASSERT_EQ(first_mismatch(want, want, 0, 0), -1) << what << ": halves output has NaN (unwritten?)";
  EXPECT_TRUE(got.bytes_equal(want)) << what << ": " << describe_mismatch(got, want, first_mismatch(got, want, 0, 0));
}

class GpuInterleavedW13 : public ::testing::TestWithParam<InterleavedCase> {};

TEST_P(GpuInterleavedW13, EqualsHalvesOnEveryTiledTile) {
  MOEKIT_REQUIRE_GPU();
  const InterleavedCase c = GetParam();
  auto rng = fresh_rng();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  Layer layer(c, rng, stream);
  // The device-made interleave is the host one.
  HostTensor w13i(c.dtype, layer.w13.shape());
  interleave_gate_up(layer.w13.view(), w13i.view(), 1);
  EXPECT_TRUE(layer.dw13i.to_host().bytes_equal(w13i));
  for (int t = 0; t < int(cuda::TileId::kCount); ++t) {
    const char* name = cuda::kGemmTiles[t].name;
    TileScope scope(name);
    check_equal(layer.run(c, true, stream), layer.run(c, false, stream), name);
  }
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuInterleavedW13,
    ::testing::Values(
        InterleavedCase{1, 8, 2, 256, 128, DType::kBFloat16, Activation::kSiluAndMul, false},
        InterleavedCase{5, 4, 2, 136, 72, DType::kBFloat16, Activation::kSwigluOai, true},     // I % 16 != 0
        InterleavedCase{37, 6, 3, 264, 200, DType::kFloat16, Activation::kGeluAndMul, true},   // I % 128 != 0
        InterleavedCase{300, 8, 2, 128, 264, DType::kBFloat16, Activation::kSwigluOai, true},  // many tokens
        InterleavedCase{64, 5, 1, 64, 24, DType::kFloat16, Activation::kGeluTanhAndMul, false},
        InterleavedCase{130, 16, 4, 512, 96, DType::kFloat16, Activation::kSiluAndMul, true}));

// Decode-sized layers on the default choice (tiled), and fused_moe's routing in front.
TEST(GpuInterleavedW13Default, FusedExpertsAndFusedMoe) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const InterleavedCase c{3, 32, 4, 256, 192, DType::kBFloat16, Activation::kSwigluOai, true};
  Layer layer(c, rng, stream);
  check_equal(layer.run(c, true, stream), layer.run(c, false, stream), "fused_experts default tile");

  HostTensor logits(DType::kFloat32, {c.M, c.E});
  logits.fill_normal(rng);
  DeviceTensor dlogits(logits);
  HostTensor outs[2];
  for (int interleaved = 0; interleaved < 2; ++interleaved) {
    const FusedExpertsOptions o = options_of(c, interleaved != 0);
    const ExpertWeights& w13v = interleaved ? layer.inter13 : layer.halves13;
    HostTensor out_h(c.dtype, {c.M, c.H});
    out_h.poison();
    DeviceTensor out(out_h);
    HostTensor ws_h(DType::kUInt8,
                    {int64_t(fused_moe_workspace_size(layer.dx.view(), w13v, layer.e2, dlogits.view(), int(c.k), o))});
    DeviceTensor ws(ws_h);
    fused_moe(layer.dx.view(), w13v, layer.e2, dlogits.view(), int(c.k), true, out.view(), ws.view(), o,
              Stream{stream});
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    outs[interleaved] = out.to_host();
  }
  check_equal(outs[1], outs[0], "fused_moe");
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace moekit::test
