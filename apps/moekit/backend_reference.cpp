// The oracle as a back end: reference::fused_experts timed on the host. It is slow (plain loops,
// fp64 accumulation), so it defaults to tiny batches; it exists to exercise the bench end to end.
#include <cstring>

#include "bench_backend.h"
#include "moekit/experts.h"

namespace moekit::bench {
namespace {

class ReferenceBackend : public Backend {
 public:
  DeviceKind device() const override { return DeviceKind::kCPU; }
  bool available(std::string*) const override { return true; }
  std::string describe() const override { return "reference::fused_experts (plain loops, fp64 sums)"; }
  std::vector<int64_t> default_tokens() const override { return {1, 4}; }
  TimingOptions default_timing() const override { return {0, 1}; }

  void prepare(const MoeLayer& layer) override { layer_ = &layer; }

  void set_batch(const RoutedBatch& batch) override {
    batch_ = batch;
    output_.assign(batch.hidden.nbytes(), 0xFF);  // NaN: rows never written fail the check
  }

  void run() override {
    TensorView out(output_.data(), batch_.hidden.dtype, {batch_.tokens, batch_.hidden.size(1)});
    reference::fused_experts(batch_.hidden, layer_->w13, layer_->w2, batch_.topk_weights,
                             batch_.topk_ids, out, layer_->options);
  }

  void fetch_output(TensorView host_output) override {
    std::memcpy(host_output.data, output_.data(), output_.size());
  }

 private:
  const MoeLayer* layer_ = nullptr;
  RoutedBatch batch_;
  std::vector<unsigned char> output_;
};

}  // namespace

MOEKIT_REGISTER_BACKEND("reference", 0, "the oracle, reference::fused_experts (slow)", ReferenceBackend);

}  // namespace moekit::bench
