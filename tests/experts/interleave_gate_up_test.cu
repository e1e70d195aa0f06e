// interleave_gate_up on CUDA tensors: equals the CPU op (itself checked against a hand-built
// interleave in gate_up_interleaved_test.cpp) for every copy width, on a caller stream and in a
// captured graph; untouched bytes around `out` keep their poison.
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "common/cuda_test_util.h"
#include "moekit/experts.h"

namespace moekit::test {
namespace {

struct GpuPackCase {
  DType dtype;
  std::vector<int64_t> shape;
  int dim;
  int64_t byte_offset;  // of both device pointers from a 256-byte aligned allocation
};

// Runs the op on the device with src / dst at `byte_offset`, poisoned guard bytes either side.
void check_case(const GpuPackCase& c, cudaStream_t stream, std::mt19937_64& rng) {
  HostTensor w(c.dtype, c.shape), want(c.dtype, c.shape);
  if (c.dtype == DType::kUInt8 || c.dtype == DType::kInt32) w.fill_int(rng, 0, 255);
  else w.fill_normal(rng);
  interleave_gate_up(w.view(), want.view(), c.dim);

  const int64_t bytes = static_cast<int64_t>(w.nbytes()), guard = 64;
  const int64_t span = c.byte_offset + bytes + guard;
  HostTensor src_buf(DType::kUInt8, {span}), dst_buf(DType::kUInt8, {span});
  src_buf.poison();
  dst_buf.poison();
  std::memcpy(static_cast<unsigned char*>(src_buf.data()) + c.byte_offset, w.data(), bytes);
  DeviceTensor src_dev(src_buf), dst_dev(dst_buf);
  const std::vector<int64_t>& s = c.shape;
  const Device gpu{DeviceKind::kCUDA, 0};
  TensorView src(static_cast<unsigned char*>(src_dev.data()) + c.byte_offset, c.dtype, static_cast<int>(s.size()),
                 s.data(), nullptr, gpu);
  TensorView dst(static_cast<unsigned char*>(dst_dev.data()) + c.byte_offset, c.dtype, static_cast<int>(s.size()),
                 s.data(), nullptr, gpu);
  interleave_gate_up(src, dst, c.dim, Stream{stream});
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);

  const HostTensor got_buf = dst_dev.to_host();
  const auto* g = static_cast<const unsigned char*>(got_buf.data());
  EXPECT_EQ(std::memcmp(g + c.byte_offset, want.data(), bytes), 0)
      << dtype_name(c.dtype) << " " << w.view().shape_string() << " dim " << c.dim << " offset " << c.byte_offset;
  for (int64_t i = 0; i < span; ++i)
    if (i < c.byte_offset || i >= c.byte_offset + bytes) {
      ASSERT_EQ(g[i], 0x7F) << "byte " << i << " outside out was written";
    }
}

TEST(InterleaveGateUpGpu, MatchesCpuForEveryWordWidth) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const std::vector<GpuPackCase> cases = {
      {DType::kBFloat16, {3, 26, 40}, 1, 0},      // 80-byte rows: 16-byte words
      {DType::kBFloat16, {3, 26, 40}, 1, 8},      // 8-byte words
      {DType::kFloat16, {4, 258, 136}, -2, 0},    // I = 129, larger
      {DType::kFloat32, {3, 26}, 1, 0},           // bias [E, 2I]: 4-byte rows
      {DType::kBFloat16, {18, 7}, 0, 0},          // 14-byte rows: 2-byte words
      {DType::kUInt8, {2, 10, 5}, 1, 3},          // odd bytes: 1-byte words
      {DType::kInt32, {2, 3, 4, 6}, 3, 4},        // last dim
      {DType::kBFloat16, {0, 8, 16}, 1, 0},       // nothing to do
  };
  for (const GpuPackCase& c : cases) check_case(c, stream, rng);
  cudaStreamDestroy(stream);
}

TEST(InterleaveGateUpGpu, CaptureAndReplay) {
  MOEKIT_REQUIRE_GPU();
  auto rng = fresh_rng();
  HostTensor w(DType::kBFloat16, {5, 64, 48}), want(DType::kBFloat16, {5, 64, 48}), poison(DType::kBFloat16, {5, 64, 48});
  w.fill_normal(rng);
  poison.poison();
  interleave_gate_up(w.view(), want.view(), 1);
  DeviceTensor src(w), dst(poison);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  interleave_gate_up(src.view(), dst.view(), 1, Stream{stream});
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int replay = 0; replay < 2; ++replay) {
    dst.upload(poison);  // waits: the non-blocking stream does not wait for the legacy one
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_TRUE(dst.to_host().bytes_equal(want)) << "replay " << replay;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST(InterleaveGateUpGpu, DevicesMustMatch) {
  MOEKIT_REQUIRE_GPU();
  HostTensor w(DType::kBFloat16, {2, 8, 16}), out(DType::kBFloat16, {2, 8, 16});
  DeviceTensor dw(w);
  EXPECT_MOEKIT_ERROR(interleave_gate_up(dw.view(), out.view(), 1), "out");
}

}  // namespace
}  // namespace moekit::test
