// Baseline for the CPU back end: what a user writes without moekit. Per expert: gather its tokens,
// oneDNN matmul x_e . W13[e]^T, a separate SiLU-and-mul pass, oneDNN matmul a . W2[e]^T, then a
// weighted scatter-add into an fp32 [M, H] buffer and one final rounding. Weights stay in their
// logical [E, R, C] layout (oneDNN reads them as the transposed "ba" operand). oneDNN primitives are
// created outside the timed region (one per distinct token count), as a primitive cache would.
// Where oneDNN has no native bf16 matmul on this CPU (none, or its implementation is "ref"), the baseline
// uses fp32 matmuls on weights converted once at load time: the fastest oneDNN path a user has here.
// Built only when oneDNN is found (MOEKIT_BENCH_ONEDNN, apps/moekit/CMakeLists.txt).
#if defined(MOEKIT_BENCH_ONEDNN)

#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <oneapi/dnnl/dnnl.hpp>

#include "bench_backend.h"
#include "common/numeric.h"

namespace moekit::bench {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

class OneDnnBackend : public Backend {
 public:
  DeviceKind device() const override { return DeviceKind::kCPU; }
  bool available(std::string*) const override { return true; }
  bool is_baseline() const override { return true; }
  std::string describe() const override {
    probe();
    return std::string("oneDNN ") + std::to_string(dnnl_version()->major) + "." +
           std::to_string(dnnl_version()->minor) + " per-expert matmuls (" + (fp32_ ? "fp32, no native bf16" : "bf16") +
           ": " + impl_ + ") + separate activation + combine, " + std::to_string(omp_get_max_threads()) + " threads";
  }
  std::vector<int64_t> default_tokens() const override { return {1, 16, 128, 1024, 4096}; }
  TimingOptions default_timing() const override { return {1, 5}; }
  bool supports(const MoeLayer& layer, std::string* why) const override {
    if (layer.options.scheme == WeightScheme::kBF16 && layer.act_dtype == DType::kBFloat16 &&
        layer.options.activation == Activation::kSiluAndMul)
      return true;
    if (why) *why = "the oneDNN baseline covers bf16 weights with SiLU-and-mul only";
    return false;
  }

  void prepare(const MoeLayer& layer) override {
    layer_ = &layer;
    E_ = layer.preset.experts;
    H_ = layer.preset.hidden;
    I_ = layer.preset.intermediate;
    primitives_.clear();
    probe();
    if (fp32_) {
      impl_ = make_pd(1, H_, 2 * I_, memory::data_type::f32).impl_info_str();
      w13_f32_ = widen(layer.w13.weight);
      w2_f32_ = widen(layer.w2.weight);
    }
  }

  void set_batch(const RoutedBatch& batch) override {
    batch_ = batch;
    const int64_t M = batch.tokens, k = batch.topk_ids.size(1);
    output_ = HostBuffer(batch.hidden.nbytes());
    acc_.assign(M * H_, 0.f);
    const size_t elem = fp32_ ? 4 : 2;
    xe_ = HostBuffer(M * k * H_ * elem + 64);
    he_ = HostBuffer(M * k * 2 * I_ * elem + 64);
    ae_ = HostBuffer(M * k * I_ * elem + 64);
    ye_ = HostBuffer(M * k * H_ * elem + 64);
    rows_.assign(E_, {});
    const int32_t* ids = batch.topk_ids.ptr<int32_t>();
    for (int64_t i = 0; i < M * k; ++i)
      if (ids[i] >= 0) rows_[ids[i]].push_back(i);
    for (const auto& r : rows_)
      if (!r.empty() && !primitives_.count(r.size())) primitives_.emplace(r.size(), make_pair_for(r.size()));
  }

  void run() override {
    const int64_t M = batch_.tokens, k = batch_.topk_ids.size(1), H = H_, I = I_;
    const float* wts = batch_.topk_weights.ptr<float>();
    const uint16_t* x = batch_.hidden.ptr<uint16_t>();
    std::fill(acc_.begin(), acc_.end(), 0.f);
    const memory::data_type dt = fp32_ ? memory::data_type::f32 : memory::data_type::bf16;
    for (int64_t e = 0; e < E_; ++e) {
      const std::vector<int64_t>& rows = rows_[e];
      const int64_t m = static_cast<int64_t>(rows.size());
      if (m == 0) continue;
      // Gather.
#pragma omp parallel for
      for (int64_t r = 0; r < m; ++r) {
        const uint16_t* src = x + (rows[r] / k) * H;
        if (fp32_) {
          float* d = static_cast<float*>(xe_.data()) + r * H;
          for (int64_t c = 0; c < H; ++c) d[c] = numeric::bf16_to_float(src[c]);
        } else {
          std::memcpy(static_cast<uint16_t*>(xe_.data()) + r * H, src, H * 2);
        }
      }
      const auto& prims = primitives_.at(m);
      const void* w13 = fp32_ ? static_cast<const void*>(w13_f32_.data() + e * 2 * I * H)
                              : static_cast<const void*>(layer_->w13.weight.ptr<uint16_t>() + e * 2 * I * H);
      const void* w2 = fp32_ ? static_cast<const void*>(w2_f32_.data() + e * H * I)
                             : static_cast<const void*>(layer_->w2.weight.ptr<uint16_t>() + e * H * I);
      execute(prims.first, m, H, 2 * I, dt, xe_.data(), w13, he_.data());
      // SiLU(gate) * up, rounded to bf16 (what a bf16 tensor holds; fp32 mode rounds too).
#pragma omp parallel for
      for (int64_t r = 0; r < m; ++r)
        for (int64_t j = 0; j < I; ++j) {
          const float g = load(he_.data(), r * 2 * I + j), u = load(he_.data(), r * 2 * I + I + j);
          store(ae_.data(), r * I + j, numeric::round_bf16(g / (1.f + std::exp(-g)) * u));
        }
      execute(prims.second, m, I, H, dt, ae_.data(), w2, ye_.data());
      // Weighted combine, each weighted row rounded to bf16 as a bf16 tensor would be (each row of acc is owned by one token; rows of one expert are distinct tokens).
#pragma omp parallel for
      for (int64_t r = 0; r < m; ++r) {
        float* a = acc_.data() + (rows[r] / k) * H;
        const float w = wts[rows[r]];
        for (int64_t c = 0; c < H; ++c) a[c] += numeric::round_bf16(w * load(ye_.data(), r * H + c));
      }
    }
    uint16_t* out = static_cast<uint16_t*>(output_.data());
#pragma omp parallel for
    for (int64_t i = 0; i < M * H; ++i) out[i] = numeric::float_to_bf16(acc_[i]);
  }

  void fetch_output(TensorView host_output) override {
    std::memcpy(host_output.data, output_.data(), output_.bytes());
  }

 private:
  float load(const void* base, int64_t i) const {
    return fp32_ ? static_cast<const float*>(base)[i] : numeric::bf16_to_float(static_cast<const uint16_t*>(base)[i]);
  }
  void store(void* base, int64_t i, float v) const {
    if (fp32_)
      static_cast<float*>(base)[i] = v;
    else
      static_cast<uint16_t*>(base)[i] = numeric::float_to_bf16(v);
  }

  // Is there a native bf16 matmul? (oneDNN 2.x has none without AVX-512: no descriptor at all.)
  void probe() const {
    if (!impl_.empty()) return;
    try {
      impl_ = make_pd(1, 64, 64, memory::data_type::bf16).impl_info_str();
      fp32_ = impl_.find("ref") != std::string::npos;
    } catch (const dnnl::error&) {
      fp32_ = true;
    }
    if (fp32_) impl_ = make_pd(1, 64, 64, memory::data_type::f32).impl_info_str();
  }

  dnnl::matmul::primitive_desc make_pd(int64_t m, int64_t kdim, int64_t n, memory::data_type dt) const {
    memory::desc src({m, kdim}, dt, tag::ab), wei({kdim, n}, dt, tag::ba), dst({m, n}, dt, tag::ab);
#if DNNL_VERSION_MAJOR >= 3
    return dnnl::matmul::primitive_desc(engine_, src, wei, dst);
#else
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, wei, dst), engine_);
#endif
  }

  std::pair<dnnl::matmul, dnnl::matmul> make_pair_for(int64_t m) const {
    const memory::data_type dt = fp32_ ? memory::data_type::f32 : memory::data_type::bf16;
    return {dnnl::matmul(make_pd(m, H_, 2 * I_, dt)), dnnl::matmul(make_pd(m, I_, H_, dt))};
  }

  void execute(const dnnl::matmul& prim, int64_t m, int64_t kdim, int64_t n, memory::data_type dt, void* a,
               const void* w, void* c) {
    memory src({{m, kdim}, dt, tag::ab}, engine_, a);
    memory wei({{kdim, n}, dt, tag::ba}, engine_, const_cast<void*>(w));
    memory dst({{m, n}, dt, tag::ab}, engine_, c);
    prim.execute(stream_, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    stream_.wait();
  }

  static std::vector<float> widen(const TensorView& w) {
    std::vector<float> out(w.numel());
    const uint16_t* p = w.ptr<uint16_t>();
#pragma omp parallel for
    for (int64_t i = 0; i < static_cast<int64_t>(out.size()); ++i) out[i] = numeric::bf16_to_float(p[i]);
    return out;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  const MoeLayer* layer_ = nullptr;
  RoutedBatch batch_;
  int64_t E_ = 0, H_ = 0, I_ = 0;
  mutable bool fp32_ = false;
  mutable std::string impl_;
  std::vector<float> w13_f32_, w2_f32_, acc_;
  std::vector<std::vector<int64_t>> rows_;
  std::map<size_t, std::pair<dnnl::matmul, dnnl::matmul>> primitives_;
  HostBuffer output_, xe_, he_, ae_, ye_;
};

}  // namespace

MOEKIT_REGISTER_BACKEND("onednn", 5, "baseline: oneDNN per-expert matmuls + activation + combine", OneDnnBackend);

}  // namespace moekit::bench

#endif  // MOEKIT_BENCH_ONEDNN
