#include "bench_layer.h"

#include <algorithm>
#include <cmath>

#include <sys/mman.h>

#include "common/checks.h"
#include "common/numeric.h"
#include "common/parallel.h"
#include "moekit/route.h"

namespace moekit::bench {

const std::vector<Preset>& presets() {
  static const std::vector<Preset> list = {
      {"qwen3-30b-a3b", 128, 8, 2048, 768},
      {"mixtral-8x7b", 8, 2, 4096, 14336},
      {"deepseek-v3", 256, 8, 7168, 2048, 8, 4},
      {"kimi-k2", 384, 8, 7168, 2048},
  };
  return list;
}

const Preset& find_preset(const std::string& name) {
  std::string known;
  for (const Preset& p : presets()) {
    if (p.name == name) return p;
    known += (known.empty() ? "" : ", ") + p.name;
  }
  detail::fail(detail::cat("--preset: expected one of ", known, ", got '", name, "'"));
}

const std::vector<SchemeInfo>& bench_schemes() {
  static const std::vector<SchemeInfo> list = {{"bf16", WeightScheme::kBF16}};
  return list;
}

WeightScheme parse_scheme(const std::string& name) {
  std::string known;
  for (const SchemeInfo& s : bench_schemes()) {
    if (name == s.name) return s.scheme;
    known += (known.empty() ? "" : ", ") + std::string(s.name);
  }
  detail::fail(detail::cat("--scheme: expected one of ", known, ", got '", name, "'"));
}

HostBuffer::HostBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  // Anonymous pages read as zero and are placed on first touch (by the threads that fill them).
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  detail::require(p != MAP_FAILED, "out of host memory allocating ", bytes, " bytes");
  madvise(p, bytes, MADV_HUGEPAGE);
  data_ = std::shared_ptr<void>(p, [bytes](void* q) { munmap(q, bytes); });
}

namespace {

// Counter-based generator: value i of stream s depends only on (seed, s, i).
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

struct NormalStream {
  uint64_t key;
  NormalStream(uint64_t seed, uint64_t stream) : key(mix64(seed * 0x9e3779b97f4a7c15ull + stream)) {}

  // Box-Muller: pair p gives elements 2p and 2p + 1.
  void pair(uint64_t p, float* out2) const {
    uint64_t r = mix64(key ^ mix64(p));
    double u1 = (static_cast<double>(r >> 40) + 1.0) * (1.0 / 16777217.0);  // (0, 1)
    double u2 = static_cast<double>(r & 0xffffff) * (1.0 / 16777216.0);    // [0, 1)
    double radius = std::sqrt(-2.0 * std::log(u1));
    out2[0] = static_cast<float>(radius * std::cos(6.283185307179586 * u2));
    out2[1] = static_cast<float>(radius * std::sin(6.283185307179586 * u2));
  }
};

enum StreamId : uint64_t { kW13 = 1, kW2 = 2, kHidden = 3, kLogits = 4 };

// Fills n fp32/bf16/fp16 values with N(0, stddev^2).
void fill_normal(void* dst, DType dtype, int64_t n, double stddev, uint64_t seed, uint64_t stream) {
  NormalStream gen(seed, stream);
  int64_t pairs = (n + 1) / 2;
  detail::parallel_for(pairs, 1 << 14, [&](int64_t b, int64_t e) {
    float v[2];
    for (int64_t p = b; p < e; ++p) {
      gen.pair(static_cast<uint64_t>(p), v);
      for (int j = 0; j < 2 && 2 * p + j < n; ++j) {
        float x = static_cast<float>(v[j] * stddev);
        int64_t i = 2 * p + j;
        if (dtype == DType::kFloat32) static_cast<float*>(dst)[i] = x;
        else if (dtype == DType::kBFloat16) static_cast<uint16_t*>(dst)[i] = numeric::float_to_bf16(x);
        else static_cast<uint16_t*>(dst)[i] = numeric::float_to_half(x);
      }
    }
  });
}

// [E, R, C] weights with N(0, 0.02^2) in the experts marked in `touched` (each expert its own stream,
// so the values do not depend on which others are touched); the rest stay zero.
ExpertWeights expert_weights(MoeLayer& layer, DType dtype, int64_t E, int64_t R, int64_t C,
                             const std::vector<char>& touched, uint64_t seed, uint64_t stream) {
  const int64_t per_expert = R * C;
  layer.storage.emplace_back(static_cast<size_t>(E * per_expert) * dtype_size(dtype));
  auto* data = static_cast<unsigned char*>(layer.storage.back().data());
  for (int64_t e = 0; e < E; ++e)
    if (touched[e])
      fill_normal(data + static_cast<size_t>(e * per_expert) * dtype_size(dtype), dtype, per_expert, 0.02, seed,
                  stream * 0x100000000ull + static_cast<uint64_t>(e));
  ExpertWeights w;
  w.weight = TensorView(data, dtype, {E, R, C});
  return w;
}

}  // namespace

size_t MoeLayer::expert_bytes() const {
  size_t total = 0;
  for (const ExpertWeights* w : {&w13, &w2})
    for (const TensorView* t : {&w->weight, &w->scale, &w->zero, &w->global_scale,
                                &w->input_global_scale, &w->bias})
      if (t->defined()) total += t->nbytes();
  return total / static_cast<size_t>(preset.experts);
}

MoeLayer make_layer(const Preset& preset, WeightScheme scheme, const RoutedInputs& inputs, uint64_t seed) {
  detail::require(scheme == WeightScheme::kBF16, "--scheme: the bench builds bf16 weights only, got ",
                  weight_scheme_name(scheme));
  MoeLayer layer;
  layer.preset = preset;
  layer.options.scheme = scheme;
  const int64_t E = preset.experts, H = preset.hidden, I = preset.intermediate;
  std::vector<char> touched(E, 0);
  const auto* ids = static_cast<const int32_t*>(inputs.topk_ids.data());
  for (int64_t i = 0; i < inputs.max_tokens * preset.topk; ++i) touched[ids[i]] = 1;
  layer.storage.reserve(8);
  layer.w13 = expert_weights(layer, layer.act_dtype, E, 2 * I, H, touched, seed, kW13);
  layer.w2 = expert_weights(layer, layer.act_dtype, E, H, I, touched, seed, kW2);
  return layer;
}

RoutedInputs make_inputs(const Preset& preset, int64_t max_tokens, uint64_t seed) {
  RoutedInputs in;
  in.max_tokens = max_tokens;
  in.hidden_size = preset.hidden;
  in.topk = preset.topk;
  const int64_t H = preset.hidden, E = preset.experts, k = preset.topk;
  in.hidden = HostBuffer(static_cast<size_t>(max_tokens * H) * dtype_size(in.act_dtype));
  fill_normal(in.hidden.data(), in.act_dtype, max_tokens * H, 1.0, seed, kHidden);

  in.topk_weights = HostBuffer(static_cast<size_t>(max_tokens * k) * sizeof(float));
  in.topk_ids = HostBuffer(static_cast<size_t>(max_tokens * k) * sizeof(int32_t));
  // Logits ~ N(0, 1) fp32 routed by the library's CPU routers (softmax -> top-k -> renormalise).
  HostBuffer logits(static_cast<size_t>(max_tokens * E) * sizeof(float));
  fill_normal(logits.data(), DType::kFloat32, max_tokens * E, 1.0, seed, kLogits);
  TensorView logits_view(logits.data(), DType::kFloat32, {max_tokens, E});
  TensorView weights(in.topk_weights.data(), DType::kFloat32, {max_tokens, k});
  TensorView ids(in.topk_ids.data(), DType::kInt32, {max_tokens, k});
  if (preset.groups > 1)
    grouped_topk(weights, ids, logits_view, static_cast<int>(k), /*renormalize=*/true,
                 static_cast<int>(preset.groups), static_cast<int>(preset.groups_kept));
  else
    topk_softmax(weights, ids, logits_view, /*renormalize=*/true);
  return in;
}

RoutedBatch batch(const RoutedInputs& in, int64_t tokens) {
  detail::require(tokens >= 0 && tokens <= in.max_tokens, "batch: tokens must be in [0, ",
                  in.max_tokens, "], got ", tokens);
  RoutedBatch b;
  b.tokens = tokens;
  b.hidden = TensorView(in.hidden.data(), in.act_dtype, {tokens, in.hidden_size});
  b.topk_weights = TensorView(in.topk_weights.data(), DType::kFloat32, {tokens, in.topk});
  b.topk_ids = TensorView(in.topk_ids.data(), DType::kInt32, {tokens, in.topk});
  return b;
}

Work work_of(const MoeLayer& layer, const RoutedBatch& b) {
  const Preset& p = layer.preset;
  std::vector<char> touched(p.experts, 0);
  const int32_t* ids = b.topk_ids.ptr<int32_t>();
  for (int64_t i = 0; i < b.tokens * p.topk; ++i)
    if (ids[i] >= 0 && ids[i] < p.experts) touched[ids[i]] = 1;
  Work w;
  w.distinct_experts = std::count(touched.begin(), touched.end(), 1);
  double act_bytes = static_cast<double>(dtype_size(layer.act_dtype));
  w.bytes = static_cast<double>(w.distinct_experts) * static_cast<double>(layer.expert_bytes()) +
            2.0 * static_cast<double>(b.tokens * p.hidden) * act_bytes;
  w.flops = 2.0 * static_cast<double>(b.tokens * p.topk) *
            (2.0 * static_cast<double>(p.intermediate * p.hidden) + static_cast<double>(p.hidden * p.intermediate));
  return w;
}

}  // namespace moekit::bench
