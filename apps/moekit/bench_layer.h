// The MoE layer that `moekit bench` times: a model preset's shape, random weights and routed inputs,
// all made on the host from a fixed seed so every back end and every run sees the same numbers.
//
// Data (as /work/shared/anchors.md): weights ~ N(0, 0.02^2), x ~ N(0, 1), router logits ~ N(0, 1)
// fp32 -> softmax -> top-k -> renormalise by moekit's CPU routers (topk_softmax; grouped presets
// grouped_topk: the groups with the best expert kept first). Each random value is a pure function of
// (seed, tensor, index), so the inputs of M tokens are the first M rows of the largest batch and
// nothing depends on the thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moekit/experts.h"
#include "moekit/tensor.h"

namespace moekit::bench {

struct Preset {
  std::string name;
  int64_t experts = 0;      // E
  int64_t topk = 0;         // k
  int64_t hidden = 0;       // H
  int64_t intermediate = 0; // I (per expert)
  int64_t groups = 1;       // grouped routing: E split into `groups`, the best `groups_kept` kept
  int64_t groups_kept = 1;
};

const std::vector<Preset>& presets();
const Preset& find_preset(const std::string& name);  // throws listing the known names

// Weight schemes the bench can build (every scheme of the oracle), named by weight_scheme_name().
const std::vector<WeightScheme>& bench_schemes();
WeightScheme parse_scheme(const std::string& name);  // throws listing the known names

// An owning, page-aligned host buffer that reads as zero until written; movable, shared on copy.
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(size_t bytes);
  void* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }

 private:
  std::shared_ptr<void> data_;
  size_t bytes_ = 0;
};

// The weights of one layer in the logical layout of moekit/experts.h, on the host.
struct MoeLayer {
  Preset preset;
  DType act_dtype = DType::kBFloat16;
  FusedExpertsOptions options;  // scheme, activation, block sizes
  ExpertWeights w13, w2;        // views into `storage`
  std::vector<HostBuffer> storage;

  // Bytes of w13 + w2 (weights and their scales) of one expert.
  size_t expert_bytes() const;
};

// Routed inputs of the largest batch; batch(M) views its first M tokens.
struct RoutedInputs {
  int64_t max_tokens = 0;
  HostBuffer hidden, topk_weights, topk_ids;
  DType act_dtype = DType::kBFloat16;
  int64_t hidden_size = 0, topk = 0;
};

struct RoutedBatch {
  int64_t tokens = 0;
  TensorView hidden;        // [M, H] act dtype
  TensorView topk_weights;  // [M, k] fp32
  TensorView topk_ids;      // [M, k] int32
};

RoutedInputs make_inputs(const Preset& preset, int64_t max_tokens, uint64_t seed);
// Experts that no token of `inputs` routes to are never read by anyone: their weights stay zero,
// which keeps small runs of big presets quick to set up.
MoeLayer make_layer(const Preset& preset, WeightScheme scheme, const RoutedInputs& inputs, uint64_t seed);
RoutedBatch batch(const RoutedInputs& inputs, int64_t tokens);

// Roofline inputs of one call (anchors.md): distinct experts touched, compulsory bytes
// (their w13 + w2 + activations in and out) and flops 2*M*k*(2I*H + H*I).
struct Work {
  int64_t distinct_experts = 0;
  double bytes = 0, flops = 0;
};
Work work_of(const MoeLayer& layer, const RoutedBatch& b);

}  // namespace moekit::bench
