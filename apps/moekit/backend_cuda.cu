// moekit's GPU MoE layer (moekit::fused_experts of gpu_experts.h, sm_90a) as a bench back end:
// weights uploaded once, each batch's inputs, output and workspace staged before timing, the call
// timed by CUDA-graph replay with a cold L2 (cuda_timing.h). Gated layers run on the interleaved w13
// layout (FusedExpertsOptions::gate_up_interleaved: the grouped prefill GEMM 1 then computes the
// activation in its epilogue), rearranged once on the host from the same logical weights, so the
// bench's oracle check is unchanged; a build that rejects the flag runs the halves layout.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_backend.h"
#include "common/checks.h"
#include "common/cuda_check.h"
#include "cuda_timing.h"
#include "device_buffer.h"
#include "moekit/gpu_experts.h"

namespace moekit::bench {
namespace {

constexpr Device kGpu{DeviceKind::kCUDA, 0};

TensorView on_gpu(const DeviceBuffer& buffer, const TensorView& like) {
  return TensorView(buffer.data(), like.dtype, like.ndim, like.shape, nullptr, kGpu);
}

DeviceBuffer upload(const TensorView& host) {
  DeviceBuffer buffer(host.nbytes());
  if (host.nbytes()) MOEKIT_CUDA_CHECK(cudaMemcpy(buffer.data(), host.data, host.nbytes(), cudaMemcpyHostToDevice));
  return buffer;
}

class CudaBackend : public Backend {
 public:
  DeviceKind device() const override { return DeviceKind::kCUDA; }

  bool available(std::string* why) const override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      cudaGetLastError();
      *why = "no CUDA device visible";
      return false;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess || prop.major != 9) {
      *why = detail::cat("the kernels are built for sm_90a (Hopper), device 0 is sm_", prop.major, prop.minor);
      return false;
    }
    return true;
  }

  std::string describe() const override {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    return detail::cat("moekit::fused_experts on ", prop.name, " (", prop.multiProcessorCount,
                       " SMs), CUDA-graph replay after a 256 MiB L2 flush; gated layers on interleaved w13 "
                       "where the build takes it");
  }

  // The anchors' grid (anchors.md).
  std::vector<int64_t> default_tokens() const override { return {1, 4, 16, 64, 256, 1024, 4096, 8192}; }
  TimingOptions default_timing() const override { return {5, 30}; }

  bool supports(const MoeLayer& layer, std::string* why) const override {
    if (layer.options.scheme != WeightScheme::kBF16) {
      *why = detail::cat("the GPU path runs bf16 weights only, not ", weight_scheme_name(layer.options.scheme));
      return false;
    }
    return true;
  }

  void prepare(const MoeLayer& layer) override {
    layer_ = &layer;
    options_ = layer.options;
    const bool gated = layer.options.activation != Activation::kSilu && layer.options.activation != Activation::kGelu;
    if (gated && !layer.options.gate_up_interleaved && accepts_interleaved(layer)) {
      options_.gate_up_interleaved = true;
      w13_ = upload_interleaved(layer.w13.weight);
    } else {
      w13_ = upload(layer.w13.weight);
    }
    std::fprintf(stderr, "[moekit bench] cuda: %s\n", layout().c_str());
    w2_ = upload(layer.w2.weight);
    w13_view_.weight = on_gpu(w13_, layer.w13.weight);
    w2_view_.weight = on_gpu(w2_, layer.w2.weight);
    MOEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~CudaBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  std::string layout() const { return options_.gate_up_interleaved ? "w13 interleaved" : "w13 halves"; }

  void set_batch(const RoutedBatch& batch) override {
    hidden_ = upload(batch.hidden);
    weights_ = upload(batch.topk_weights);
    ids_ = upload(batch.topk_ids);
    output_ = DeviceBuffer(batch.hidden.nbytes());
    hidden_view_ = on_gpu(hidden_, batch.hidden);
    weights_view_ = on_gpu(weights_, batch.topk_weights);
    ids_view_ = on_gpu(ids_, batch.topk_ids);
    output_view_ = on_gpu(output_, batch.hidden);
    // 0xFF bytes are NaN in bf16 and fp16: a row the kernel never writes fails the bench's check.
    MOEKIT_CUDA_CHECK(cudaMemset(output_.data(), 0xFF, output_.bytes()));
    size_t bytes = fused_experts_workspace_size(hidden_view_, w13_view_, w2_view_, ids_view_, options_);
    workspace_ = DeviceBuffer(bytes);
    workspace_view_ = TensorView(workspace_.data(), DType::kUInt8, {static_cast<int64_t>(bytes)}, kGpu);
  }

  void run() override {
    enqueue(stream_);
    MOEKIT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  Timing time(const TimingOptions& options) override {
    run();  // once outside the graph: errors surface here with their message
    return time_cuda_graph([this](cudaStream_t s) { enqueue(s); }, options);
  }

  void fetch_output(TensorView host_output) override {
    MOEKIT_CUDA_CHECK(cudaMemcpy(host_output.data, output_.data(), host_output.nbytes(), cudaMemcpyDeviceToHost));
  }

 private:
  void enqueue(cudaStream_t s) {
    fused_experts(hidden_view_, w13_view_, w2_view_, weights_view_, ids_view_, output_view_, workspace_view_,
                  options_, Stream{s});
  }

  // Whether this build's fused_experts takes the interleaved layout (its size query validates the
  // options on shapes alone).
  static bool accepts_interleaved(const MoeLayer& layer) {
    FusedExpertsOptions o = layer.options;
    o.gate_up_interleaved = true;
    const int64_t H = layer.w13.weight.size(2);
    int64_t hidden_shape[2] = {1, H}, ids_shape[2] = {1, 1};
    const TensorView hidden(nullptr, layer.w13.weight.dtype, 2, hidden_shape, nullptr, kGpu);
    const TensorView ids(nullptr, DType::kInt32, 2, ids_shape, nullptr, kGpu);
    ExpertWeights w13, w2;
    w13.weight = TensorView(nullptr, layer.w13.weight.dtype, layer.w13.weight.ndim, layer.w13.weight.shape, nullptr, kGpu);
    w2.weight = TensorView(nullptr, layer.w2.weight.dtype, layer.w2.weight.ndim, layer.w2.weight.shape, nullptr, kGpu);
    try {
      fused_experts_workspace_size(hidden, w13, w2, ids, o);
      return true;
    } catch (const Error&) {
      return false;
    }
  }

  // w13 [E, 2I, H] halves -> rows 2j = gate_j, 2j + 1 = up_j, uploaded.
  static DeviceBuffer upload_interleaved(const TensorView& w13) {
    const int64_t E = w13.size(0), I = w13.size(1) / 2;
    const size_t row = w13.nbytes() / size_t(E * 2 * I);
    std::vector<unsigned char> host(w13.nbytes());
    const auto* src = static_cast<const unsigned char*>(w13.data);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t j = 0; j < I; ++j) {
        std::memcpy(host.data() + (e * 2 * I + 2 * j) * row, src + (e * 2 * I + j) * row, row);
        std::memcpy(host.data() + (e * 2 * I + 2 * j + 1) * row, src + (e * 2 * I + I + j) * row, row);
      }
    DeviceBuffer buffer(host.size());
    if (!host.empty()) MOEKIT_CUDA_CHECK(cudaMemcpy(buffer.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
    return buffer;
  }

  const MoeLayer* layer_ = nullptr;
  FusedExpertsOptions options_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer w13_, w2_, hidden_, weights_, ids_, output_, workspace_;
  ExpertWeights w13_view_, w2_view_;
  TensorView hidden_view_, weights_view_, ids_view_, output_view_, workspace_view_;
};

}  // namespace

MOEKIT_REGISTER_BACKEND("cuda", 20, "moekit GPU kernels (moekit::fused_experts, sm_90a, bf16)", CudaBackend);

}  // namespace moekit::bench
