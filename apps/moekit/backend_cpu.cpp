// The moekit CPU back end: weights packed once into MKCPU v1 (pack_moe_weights), then
// fused_experts_cpu on the ISA path of moekit::cpu_isa() with cpu_threads() threads and a workspace
// allocated once per batch size (untimed).
#include <cstring>

#include "bench_backend.h"
#include "moekit/cpu.h"
#include "moekit/cpu_experts.h"

namespace moekit::bench {
namespace {

class CpuBackend : public Backend {
 public:
  DeviceKind device() const override { return DeviceKind::kCPU; }
  bool available(std::string*) const override { return true; }
  std::string describe() const override {
    return std::string("fused_experts_cpu, isa ") + cpu_isa_name(cpu_isa()) + ", " + std::to_string(cpu_threads()) +
           " threads";
  }
  std::vector<int64_t> default_tokens() const override { return {1, 16, 128, 1024, 4096}; }
  TimingOptions default_timing() const override { return {1, 5}; }

  bool supports(const MoeLayer& layer, std::string* why) const override {
    if (layer.options.scheme == WeightScheme::kBF16) return true;
    if (why) *why = "the CPU back end implements the bf16/fp16 scheme only";
    return false;
  }

  void prepare(const MoeLayer& layer) override {
    layer_ = &layer;
    w13_ = pack(layer.w13.weight, PackedRole::kW13);
    w2_ = pack(layer.w2.weight, PackedRole::kW2);
  }

  void set_batch(const RoutedBatch& batch) override {
    batch_ = batch;
    output_ = HostBuffer(batch.hidden.nbytes());
    const int64_t E = layer_->preset.experts, N = layer_->preset.intermediate, K = layer_->preset.hidden;
    workspace_ = HostBuffer(fused_experts_cpu_workspace_bytes(batch.tokens, batch.topk_ids.size(1), E, N, K));
  }

  void run() override {
    TensorView out(output_.data(), batch_.hidden.dtype, {batch_.tokens, batch_.hidden.size(1)});
    CpuRunConfig config;
    config.workspace = TensorView(workspace_.data(), DType::kUInt8, {static_cast<int64_t>(workspace_.bytes())});
    fused_experts_cpu(batch_.hidden, view(w13_), view(w2_), batch_.topk_weights, batch_.topk_ids, out,
                      layer_->options, config);
  }

  void fetch_output(TensorView host_output) override {
    std::memcpy(host_output.data, output_.data(), output_.bytes());
  }

 private:
  static HostBuffer pack(const TensorView& weight, PackedRole role) {
    HostBuffer packed(packed_weight_bytes(weight, role));
    pack_moe_weights(weight, role, view(packed));
    return packed;
  }
  static TensorView view(const HostBuffer& b) {
    return TensorView(b.data(), DType::kUInt8, {static_cast<int64_t>(b.bytes())});
  }

  const MoeLayer* layer_ = nullptr;
  RoutedBatch batch_;
  HostBuffer w13_, w2_, output_, workspace_;
};

}  // namespace

MOEKIT_REGISTER_BACKEND("cpu", 10, "moekit CPU kernels (fused_experts_cpu on packed weights)", CpuBackend);

}  // namespace moekit::bench
