// CPU fused_qk_norm_rope: threads over tokens; per token the R/2 angles are reduced in fp64 once
// and expanded into a per-element cos/sin row shared by all of that token's heads. AVX2 takes whole
// tokens where the rotated range is made of 16-value blocks (normalize_rotate_tokens_avx2), single
// heads otherwise.
#include <cmath>
#include <vector>

#include "common/numeric.h"
#include "common/parallel.h"
#include "moekit/cpu.h"
#include "rope/cpu/kernels.h"

namespace moekit::cpu {
namespace {

int partner_of(int e, int half, bool is_neox) {
  if (!is_neox) return e ^ 1;
  return e < half ? e + half : e - half;
}

void normalize_rotate_head_scalar(uint16_t* head, const float* weight, const RotaryRow& row,
                                  const HeadArgs& a) {
  float y[256];
  float sum_sq = 0.f;
  for (int d = 0; d < a.head_dim; ++d) {
    y[d] = a.fp16 ? numeric::half_to_float(head[d]) : numeric::bf16_to_float(head[d]);
    sum_sq += y[d] * y[d];
  }
  const float inv_rms = 1.f / std::sqrt(sum_sq / static_cast<float>(a.head_dim) + a.eps);
  for (int d = 0; d < a.head_dim; ++d) y[d] = y[d] * weight[d] * inv_rms;
  for (int d = 0; d < a.head_dim; ++d) {
    float v = y[d];
    if (d < a.rotary_dim) v = y[d] * row.cos_a[d] + y[partner_of(d, a.half, a.is_neox)] * row.sin_a[d];
    head[d] = a.fp16 ? numeric::float_to_half(v) : numeric::float_to_bf16(v);
  }
}

void rotary_row(int64_t position, const detail::RotaryFrequencies& freqs, const HeadArgs& a,
                float attention_factor, RotaryRow& row) {
  for (int i = 0; i < freqs.pairs; ++i) {
    const detail::RotaryCosSin cs = detail::rotary_cos_sin(position, freqs.freq[i]);
    const float c = cs.cos * attention_factor, s = cs.sin * attention_factor;
    const int first = a.is_neox ? i : 2 * i;
    const int second = a.is_neox ? i + a.half : 2 * i + 1;
    row.cos_a[first] = c;
    row.cos_a[second] = c;
    row.sin_a[first] = -s;
    row.sin_a[second] = s;
  }
}

std::vector<float> weight_as_float(const TensorView& w, bool fp16, int64_t D) {
  std::vector<float> out(D, 0.f);
  if (!w.defined()) return out;
  const uint16_t* p = w.ptr<const uint16_t>();
  for (int64_t d = 0; d < D; ++d)
    out[d] = fp16 ? numeric::half_to_float(p[d]) : numeric::bf16_to_float(p[d]);
  return out;
}

}  // namespace

void fused_qk_norm_rope(const detail::QkNormRopeArgs& args, const detail::RotaryFrequencies& freqs) {
  HeadArgs a;
  a.head_dim = static_cast<int>(args.head_dim);
  a.rotary_dim = static_cast<int>(args.rotary_dim);
  a.half = a.rotary_dim / 2;
  a.is_neox = args.is_neox;
  a.fp16 = args.qkv.dtype == DType::kFloat16;
  a.eps = static_cast<float>(args.eps);
  const float attention_factor = static_cast<float>(args.attention_factor);
  const std::vector<float> q_weight = weight_as_float(args.q_weight, a.fp16, args.head_dim);
  const std::vector<float> k_weight = weight_as_float(args.k_weight, a.fp16, args.head_dim);
  const int64_t width = (args.num_heads_q + args.num_heads_k + args.num_heads_v) * args.head_dim;
  const int64_t rotated_heads = args.num_heads_q + args.num_heads_k;
  const bool avx2 = cpu_isa() >= CpuIsa::kAvx2;
  uint16_t* qkv = args.qkv.ptr<uint16_t>();
  const bool pos64 = args.position_ids.dtype == DType::kInt64;
  if (avx2 && tokens_fit_avx2(a)) {
    TokenArgs ta;
    ta.qkv = qkv;
    ta.width = width;
    ta.heads_q = args.num_heads_q;
    ta.heads_k = args.num_heads_k;
    if (pos64) ta.positions64 = args.position_ids.ptr<const int64_t>();
    else ta.positions32 = args.position_ids.ptr<const int32_t>();
    ta.q_weight = q_weight.data();
    ta.k_weight = k_weight.data();
    ta.attention_factor = attention_factor;
    ta.head = a;
    detail::parallel_for(args.num_tokens, 4, [&](int64_t begin, int64_t end) {
      normalize_rotate_tokens_avx2(ta, freqs, begin, end);
    });
    return;
  }
  auto* normalize_rotate = avx2 ? normalize_rotate_head_avx2 : normalize_rotate_head_scalar;

  detail::parallel_for(args.num_tokens, 4, [&](int64_t begin, int64_t end) {
    RotaryRow row;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t position = pos64 ? args.position_ids.ptr<const int64_t>()[t]
                                     : args.position_ids.ptr<const int32_t>()[t];
      rotary_row(position, freqs, a, attention_factor, row);
      for (int64_t h = 0; h < rotated_heads; ++h)
        normalize_rotate(qkv + t * width + h * args.head_dim,
                         h < args.num_heads_q ? q_weight.data() : k_weight.data(), row, a);
    }
  });
}

}  // namespace moekit::cpu
