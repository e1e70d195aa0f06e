#include "bench_layer.h"

#include <algorithm>
#include <cmath>

#include <sys/mman.h>

#include "common/checks.h"
#include "common/numeric.h"
#include "common/parallel.h"
#include "moekit/quant.h"
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

const std::vector<WeightScheme>& bench_schemes() {
  static const std::vector<WeightScheme> list = {
      WeightScheme::kBF16,     WeightScheme::kFP8BlockW8A8, WeightScheme::kFP8BlockW8A16,
      WeightScheme::kInt8W8A8, WeightScheme::kInt4W4A8,     WeightScheme::kNVFP4,
      WeightScheme::kMXFP8,    WeightScheme::kMXFP4,
  };
  return list;
}

WeightScheme parse_scheme(const std::string& name) {
  std::string known;
  for (WeightScheme s : bench_schemes()) {
    if (name == weight_scheme_name(s)) return s;
    known += (known.empty() ? "" : ", ") + std::string(weight_scheme_name(s));
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

void store(void* dst, DType dtype, int64_t i, float x) {
  if (dtype == DType::kFloat32) static_cast<float*>(dst)[i] = x;
  else if (dtype == DType::kBFloat16) static_cast<uint16_t*>(dst)[i] = numeric::float_to_bf16(x);
  else static_cast<uint16_t*>(dst)[i] = numeric::float_to_half(x);
}

// Elements [first, first + n) of a stream of N(0, stddev^2) values, stored as fp32/bf16/fp16 at dst.
void fill_normal_range(void* dst, DType dtype, int64_t first, int64_t n, double stddev, const NormalStream& gen) {
  float v[2];
  for (int64_t i = first; i < first + n;) {
    gen.pair(static_cast<uint64_t>(i / 2), v);
    for (int j = static_cast<int>(i % 2); j < 2 && i < first + n; ++j, ++i)
      store(dst, dtype, i - first, static_cast<float>(v[j] * stddev));
  }
}

// The whole stream [0, n), in parallel.
void fill_normal(void* dst, DType dtype, int64_t n, double stddev, uint64_t seed, uint64_t stream) {
  NormalStream gen(seed, stream);
  detail::parallel_for((n + 1) / 2, 1 << 14, [&](int64_t b, int64_t e) {
    int64_t first = 2 * b, last = std::min(2 * e, n);
    fill_normal_range(static_cast<unsigned char*>(dst) + first * dtype_size(dtype), dtype, first, last - first, stddev,
                      gen);
  });
}

constexpr double kWeightStd = 0.02;
constexpr int64_t kRowsPerChunk = 128;  // a multiple of every block_n the bench uses

TensorView slice(const TensorView& t, int64_t e) {  // expert e of [E, ...] as a view without E
  TensorView v = t;
  v.ndim = t.ndim - 1;
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = t.shape[d + 1];
    v.strides[d] = t.strides[d + 1];
  }
  v.data = static_cast<unsigned char*>(t.data) + static_cast<size_t>(e * t.strides[0]) * dtype_size(t.dtype);
  return v;
}

TensorView rows(const TensorView& t, int64_t r0, int64_t r1) {  // rows [r0, r1) of [R, ...]
  TensorView v = t;
  v.shape[0] = r1 - r0;
  v.data = static_cast<unsigned char*>(t.data) + static_cast<size_t>(r0 * t.strides[0]) * dtype_size(t.dtype);
  return v;
}

// One projection [E, R, C] in `scheme`, quantised from the same N(0, 0.02^2) draws for every scheme
// (expert e's matrix is stream (stream, e), row-major). Only `touched` experts are filled; the rest
// stay zero (never read). Work items are (expert, 128-row chunk).
ExpertWeights expert_weights(MoeLayer& layer, int64_t R, int64_t C, const std::vector<char>& touched,
                             uint64_t seed, uint64_t stream, float activation_amax) {
  const int64_t E = layer.preset.experts;
  const FusedExpertsOptions& o = layer.options;
  auto tensor = [&](DType dtype, std::initializer_list<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    layer.storage.emplace_back(static_cast<size_t>(n) * dtype_size(dtype));
    return TensorView(layer.storage.back().data(), dtype, shape);
  };
  auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  ExpertWeights w;
  switch (o.scheme) {
    case WeightScheme::kBF16: w.weight = tensor(layer.act_dtype, {E, R, C}); break;
    case WeightScheme::kFP8BlockW8A8:
    case WeightScheme::kFP8BlockW8A16:
      w.weight = tensor(DType::kFloat8E4M3, {E, R, C});
      w.scale = tensor(DType::kFloat32, {E, ceil_div(R, o.block_n), ceil_div(C, o.block_k)});
      break;
    case WeightScheme::kInt8W8A8:
      w.weight = tensor(DType::kInt8, {E, R, C});
      w.scale = tensor(DType::kFloat32, {E, R});
      break;
    case WeightScheme::kInt4W4A8:
      w.weight = tensor(DType::kUInt8, {E, R, ceil_div(C, 2)});
      w.scale = tensor(DType::kFloat32, {E, R, C / o.group_size});
      w.zero = tensor(DType::kUInt8, {E, R, C / o.group_size});
      break;
    case WeightScheme::kNVFP4:
      w.weight = tensor(DType::kUInt8, {E, R, ceil_div(C, 2)});
      w.scale = tensor(DType::kFloat8E4M3, {E, R, ceil_div(C, 16)});
      w.global_scale = tensor(DType::kFloat32, {E});
      w.input_global_scale = tensor(DType::kFloat32, {E});
      break;
    case WeightScheme::kMXFP8:
      w.weight = tensor(DType::kFloat8E4M3, {E, R, C});
      w.scale = tensor(DType::kFloat8E8M0, {E, R, ceil_div(C, 32)});
      break;
    case WeightScheme::kMXFP4:
      w.weight = tensor(DType::kUInt8, {E, R, ceil_div(C, 2)});
      w.scale = tensor(DType::kFloat8E8M0, {E, R, ceil_div(C, 32)});
      break;
  }

  std::vector<int64_t> experts;
  for (int64_t e = 0; e < E; ++e)
    if (touched[e]) experts.push_back(e);
  const int64_t chunks = ceil_div(R, kRowsPerChunk);

  if (o.scheme == WeightScheme::kNVFP4) {
    // gs = 448 * 6 / amax of the expert's matrix (nvfp4_global_scale), from a first pass over it;
    // the activations' input_global_scale = 448 * 6 / their expected amax.
    std::vector<float> amax(E, 0.f);
    detail::parallel_for(static_cast<int64_t>(experts.size()) * chunks, 1, [&](int64_t b, int64_t e_) {
      std::vector<float> buf(static_cast<size_t>(kRowsPerChunk * C));
      for (int64_t item = b; item < e_; ++item) {
        int64_t e = experts[item / chunks], r0 = item % chunks * kRowsPerChunk, r1 = std::min(R, r0 + kRowsPerChunk);
        fill_normal_range(buf.data(), DType::kFloat32, r0 * C, (r1 - r0) * C, kWeightStd,
                          NormalStream(seed, stream * 0x100000000ull + static_cast<uint64_t>(e)));
        float m = 0.f;
        for (int64_t i = 0; i < (r1 - r0) * C; ++i) m = std::max(m, std::abs(buf[i]));
#pragma omp critical
        amax[e] = std::max(amax[e], m);
      }
    });
    for (int64_t e = 0; e < E; ++e) {
      w.global_scale.ptr<float>()[e] = amax[e] > 0.f ? 448.f * 6.f / amax[e] : 1.f;
      w.input_global_scale.ptr<float>()[e] = 448.f * 6.f / activation_amax;
    }
  }

  detail::parallel_for(static_cast<int64_t>(experts.size()) * chunks, 1, [&](int64_t b, int64_t e_) {
    std::vector<float> buf(static_cast<size_t>(kRowsPerChunk * C));
    for (int64_t item = b; item < e_; ++item) {
      int64_t e = experts[item / chunks], r0 = item % chunks * kRowsPerChunk, r1 = std::min(R, r0 + kRowsPerChunk);
      NormalStream gen(seed, stream * 0x100000000ull + static_cast<uint64_t>(e));
      TensorView weight = rows(slice(w.weight, e), r0, r1);
      if (o.scheme == WeightScheme::kBF16) {
        fill_normal_range(weight.data, weight.dtype, r0 * C, (r1 - r0) * C, kWeightStd, gen);
        continue;
      }
      fill_normal_range(buf.data(), DType::kFloat32, r0 * C, (r1 - r0) * C, kWeightStd, gen);
      TensorView x(buf.data(), DType::kFloat32, {r1 - r0, C});
      switch (o.scheme) {
        case WeightScheme::kFP8BlockW8A8:
        case WeightScheme::kFP8BlockW8A16:
          quantize_fp8_block(x, weight, rows(slice(w.scale, e), r0 / o.block_n, ceil_div(r1, o.block_n)), o.block_n,
                             o.block_k);
          break;
        case WeightScheme::kInt8W8A8:
          quantize_int8_per_row(x, weight, rows(slice(w.scale, e), r0, r1));
          break;
        case WeightScheme::kInt4W4A8:
          quantize_int4_group(x, weight, rows(slice(w.scale, e), r0, r1), rows(slice(w.zero, e), r0, r1),
                              o.group_size);
          break;
        case WeightScheme::kNVFP4:
          quantize_nvfp4(x, TensorView(w.global_scale.ptr<float>() + e, DType::kFloat32, {1}), weight,
                         rows(slice(w.scale, e), r0, r1));
          break;
        case WeightScheme::kMXFP8: quantize_mxfp8(x, weight, rows(slice(w.scale, e), r0, r1)); break;
        case WeightScheme::kMXFP4: quantize_mxfp4(x, weight, rows(slice(w.scale, e), r0, r1)); break;
        case WeightScheme::kBF16: break;
      }
    }
  });
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
  MoeLayer layer;
  layer.preset = preset;
  layer.act_dtype = inputs.act_dtype;
  layer.options.scheme = scheme;
  const int64_t E = preset.experts, H = preset.hidden, I = preset.intermediate;
  std::vector<char> touched(E, 0);
  const auto* ids = static_cast<const int32_t*>(inputs.topk_ids.data());
  for (int64_t i = 0; i < inputs.max_tokens * preset.topk; ++i) touched[ids[i]] = 1;
  // NVFP4 activation scales: x ~ N(0, 1) stays below ~6; gate and up are ~N(0, s^2) with
  // s = 0.02 sqrt(H), so a = silu(gate) * up stays below ~(5 s)^2.
  const float x_amax = 6.f, s = static_cast<float>(kWeightStd * std::sqrt(static_cast<double>(H)));
  layer.storage.reserve(16);
  layer.w13 = expert_weights(layer, 2 * I, H, touched, seed, kW13, x_amax);
  layer.w2 = expert_weights(layer, H, I, touched, seed, kW2, 25.f * s * s);
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
