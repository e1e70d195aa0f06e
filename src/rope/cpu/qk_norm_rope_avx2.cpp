// AVX2 + FMA + F16C head kernel of fused_qk_norm_rope: 8 values per vector, the NeoX / interleaved
// partner of a vector found by a lane permute (pairs within 8 values) or a second load (pairs
// 8 or more apart).
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "common/avx2_bf16.h"
#include "rope/cpu/kernels.h"

namespace moekit::cpu {
namespace {

inline __m256 load8(const uint16_t* p, bool fp16) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (fp16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Round to nearest even; NaN stays a quiet NaN (as numeric::float_to_bf16 / float_to_half).
inline void store8(uint16_t* p, __m256 v, bool fp16) {
  __m128i packed;
  if (fp16) {
    packed = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    packed = numeric::avx2::float_to_bf16(v);
  }
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
}

inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

}  // namespace

void normalize_rotate_head_avx2(uint16_t* head, const float* weight, const RotaryRow& row,
                                const HeadArgs& a) {
  const int D = a.head_dim, R = a.rotary_dim, half = a.half;
  __m256 sum_sq = _mm256_setzero_ps();
  for (int e = 0; e < D; e += 8) {
    const __m256 x = load8(head + e, a.fp16);
    sum_sq = _mm256_fmadd_ps(x, x, sum_sq);
  }
  const float inv_rms = 1.f / std::sqrt(horizontal_sum(sum_sq) / static_cast<float>(D) + a.eps);
  const __m256 scale = _mm256_set1_ps(inv_rms);
  // y = x * w * inv_rms, recomputed from the head (still in L1) where it is used.
  auto normalized = [&](int e) {
    return _mm256_mul_ps(_mm256_mul_ps(load8(head + e, a.fp16), _mm256_loadu_ps(weight + e)), scale);
  };
  auto rotate = [&](__m256 v, __m256 partner, int e) {
    return _mm256_fmadd_ps(v, _mm256_loadu_ps(row.cos_a + e), _mm256_mul_ps(partner, _mm256_loadu_ps(row.sin_a + e)));
  };

  // Whole vectors inside the rotated range; a vector that straddles R or a NeoX half narrower than
  // a vector goes through the per-element loop below (both halves of a NeoX pair are read before
  // either is written: the head is rotated in place).
  int e = 0;
  if (!a.is_neox) {
    for (; e + 8 <= R; e += 8) {
      const __m256 v = normalized(e);
      store8(head + e, rotate(v, _mm256_permute_ps(v, 0xB1), e), a.fp16);  // (0 1)(2 3)... swapped
    }
  } else if (half % 8 == 0) {
    for (; e < half; e += 8) {
      const __m256 lo = normalized(e), hi = normalized(e + half);
      store8(head + e, rotate(lo, hi, e), a.fp16);
      store8(head + e + half, rotate(hi, lo, e + half), a.fp16);
    }
    e = R;
  }
  if (e < R) {  // the general case for what is left of the rotated range
    alignas(32) float y[256], out[256];
    for (int d = 0; d < D; d += 8) _mm256_store_ps(y + d, normalized(d));
    for (int d = e; d < R; ++d) {
      const int partner = !a.is_neox ? d ^ 1 : (d < half ? d + half : d - half);
      out[d] = y[d] * row.cos_a[d] + y[partner] * row.sin_a[d];
    }
    const int end = (R + 7) & ~7;
    for (int d = R; d < end; ++d) out[d] = y[d];
    for (int d = e; d < end; d += 8) store8(head + d, _mm256_load_ps(out + d), a.fp16);
    e = end;
  }
  for (; e < D; e += 8) store8(head + e, normalized(e), a.fp16);
}

}  // namespace moekit::cpu

// ---- whole tokens ----

namespace moekit::cpu {
namespace {

// A block of 16 values is held as two vectors (lo, hi). bf16: lo = values 0-3 and 8-11, hi = 4-7
// and 12-15 (one 256-bit load and an unpack per half; the pack on store restores the order). fp16:
// lo = 0-7, hi = 8-15. The per-token tables are stored in the same "lane order".
template <bool kFp16>
inline void load16(const uint16_t* p, __m256& lo, __m256& hi) {
  if constexpr (kFp16) {
    lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  } else {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
    hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
  }
}

// bf16 bits (round to nearest even) in the low half of each lane. No NaN fix-up is needed here:
// every stored value comes out of an fp32 multiply or fma whose operands are bf16 values, folded
// tables of finite cos/sin and bf16 weights, or inv_rms of bf16 values, so a NaN among them is
// either the default NaN or a quieted bf16 NaN: both have 16 low zero bits, which the rounding add
// leaves without a carry.
inline __m256i bf16_bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
}

template <bool kFp16>
inline void store16(uint16_t* p, __m256 lo, __m256 hi) {
  if constexpr (kFp16) {
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm256_set_m128i(_mm256_cvtps_ph(hi, kRound), _mm256_cvtps_ph(lo, kRound)));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_packus_epi32(bf16_bits(lo), bf16_bits(hi)));
  }
}

// Natural-order values e..e+7 (a) and e+8..e+15 (b) stored in lane order at t.
template <bool kFp16>
inline void store_lane_order(float* t, __m256 a, __m256 b) {
  if constexpr (!kFp16) {
    const __m256 lo = _mm256_permute2f128_ps(a, b, 0x20), hi = _mm256_permute2f128_ps(a, b, 0x31);
    a = lo;
    b = hi;
  }
  _mm256_store_ps(t, a);
  _mm256_store_ps(t + 8, b);
}

// cos and sin of position * freq[0..7], the steps of detail::rotary_cos_sin four lanes at a time
// (exact double-double angle, Cody-Waite reduction in fp64, the same fp32 polynomials evaluated
// with fma, the quadrant k mod 4 taken in fp64 so any |k| < 2^53 works).
inline void rotary_cos_sin8(double position, const double* freq, __m256& cos_out, __m256& sin_out) {
  const __m256d p = _mm256_set1_pd(position);
  __m128 x4[2];
  __m128i q4[2];
  for (int half = 0; half < 2; ++half) {
    const __m256d f = _mm256_loadu_pd(freq + 4 * half);
    const __m256d hi = _mm256_mul_pd(p, f);
    const __m256d lo = _mm256_fmsub_pd(p, f, hi);
    const __m256d k = _mm256_round_pd(_mm256_mul_pd(hi, _mm256_set1_pd(0.63661977236758134)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256d r = _mm256_fnmadd_pd(
        k, _mm256_set1_pd(6.123233995736766e-17),
        _mm256_add_pd(_mm256_fnmadd_pd(k, _mm256_set1_pd(1.5707963267948966), hi), lo));
    const __m256d q = _mm256_fnmadd_pd(
        _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.25))), _mm256_set1_pd(4.0), k);
    x4[half] = _mm256_cvtpd_ps(r);
    q4[half] = _mm256_cvtpd_epi32(q);
  }
  const __m256 x = _mm256_set_m128(x4[1], x4[0]);
  const __m256i q = _mm256_set_m128i(q4[1], q4[0]);
  const __m256 z = _mm256_mul_ps(x, x);
  const __m256 sin_poly = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(-1.9515295891e-4f), z, _mm256_set1_ps(8.3321608736e-3f)), z,
      _mm256_set1_ps(-1.6666654611e-1f));
  const __m256 sin_r = _mm256_fmadd_ps(_mm256_mul_ps(sin_poly, z), x, x);
  const __m256 cos_poly = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_set1_ps(2.443315711809948e-5f), z, _mm256_set1_ps(-1.388731625493765e-3f)),
      z, _mm256_set1_ps(4.166664568298827e-2f));
  const __m256 cos_r = _mm256_add_ps(
      _mm256_fmadd_ps(_mm256_mul_ps(cos_poly, z), z, _mm256_mul_ps(_mm256_set1_ps(-0.5f), z)),
      _mm256_set1_ps(1.0f));
  // Quadrant q: 0 (c, s), 1 (-s, c), 2 (-c, -s), 3 (s, -c).
  const __m256 swap = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(1)));
  const __m256 cos_neg = _mm256_castsi256_ps(_mm256_slli_epi32(
      _mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)), _mm256_set1_epi32(2)), 30));
  const __m256 sin_neg =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(q, _mm256_set1_epi32(2)), 30));
  cos_out = _mm256_xor_ps(_mm256_blendv_ps(cos_r, sin_r, swap), cos_neg);
  sin_out = _mm256_xor_ps(_mm256_blendv_ps(sin_r, cos_r, swap), sin_neg);
}

// One token's rotation with one head kind's weights folded in, lane order: rotated value e =
// inv_rms * (x[e] * wc[e] + x[partner(e)] * ws[e]); past the rotated range inv_rms * x[e] * w[e].
struct FoldedRow {
  alignas(32) float wc[256];
  alignas(32) float ws[256];
  alignas(32) float w[256];
};

// inv_rms of up to 8 heads from their sum-of-squares vectors (unused ones zero): one horizontal
// sum for all (a transpose by hadd) and one sqrt and divide. D is a power of two, so * (1 / D) is
// exactly / D.
inline __m256 inv_rms8(const __m256* sum_sq, int D, float eps) {
  const __m256 a01 = _mm256_hadd_ps(sum_sq[0], sum_sq[1]), a23 = _mm256_hadd_ps(sum_sq[2], sum_sq[3]);
  const __m256 a45 = _mm256_hadd_ps(sum_sq[4], sum_sq[5]), a67 = _mm256_hadd_ps(sum_sq[6], sum_sq[7]);
  const __m256 b0 = _mm256_hadd_ps(a01, a23), b1 = _mm256_hadd_ps(a45, a67);
  const __m256 total = _mm256_add_ps(_mm256_permute2f128_ps(b0, b1, 0x20), _mm256_permute2f128_ps(b0, b1, 0x31));
  const __m256 mean = _mm256_fmadd_ps(total, _mm256_set1_ps(1.f / static_cast<float>(D)), _mm256_set1_ps(eps));
  return _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_sqrt_ps(mean));
}

// Up to 8 heads of one kind, D values apart: the sums of squares of all of them first (their
// latency chains overlap, and the heads stay in L1 for the second pass), then one inv_rms8, then
// the rotation of each. `next` (may be null): the same heads of the next token, prefetched one head
// at a time.
template <bool kFp16, bool kNeox>
void normalize_rotate_heads(uint16_t* x, int count, const uint16_t* next, const FoldedRow& t, int D,
                            int R, float eps) {
  __m256 sum_sq[8];
  for (int h = 0; h < 8; ++h) sum_sq[h] = _mm256_setzero_ps();
  for (int h = 0; h < count; ++h) {
    const uint16_t* head = x + h * D;
    __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
    for (int e = 0; e < D; e += 16) {
      __m256 lo, hi;
      load16<kFp16>(head + e, lo, hi);
      sum0 = _mm256_fmadd_ps(lo, lo, sum0);
      sum1 = _mm256_fmadd_ps(hi, hi, sum1);
    }
    sum_sq[h] = _mm256_add_ps(sum0, sum1);
  }
  alignas(32) float inv[8];
  _mm256_store_ps(inv, inv_rms8(sum_sq, D, eps));
  for (int h = 0; h < count; ++h) {
    uint16_t* head = x + h * D;
    if (next) {  // a few lines per head: a burst of a whole group's stalls on the miss buffers
      for (int b = 0; b < 2 * D; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(next + h * D) + b, _MM_HINT_T0);
    }
    const __m256 inv_rms = _mm256_broadcast_ss(inv + h);
    auto rotate = [&](__m256 v, __m256 partner, int e) {
      return _mm256_mul_ps(
          _mm256_fmadd_ps(v, _mm256_load_ps(t.wc + e), _mm256_mul_ps(partner, _mm256_load_ps(t.ws + e))),
          inv_rms);
    };
    if constexpr (kNeox) {
      const int half = R / 2;
      for (int e = 0; e < half; e += 16) {
        __m256 a_lo, a_hi, b_lo, b_hi;
        load16<kFp16>(head + e, a_lo, a_hi);
        load16<kFp16>(head + e + half, b_lo, b_hi);
        store16<kFp16>(head + e, rotate(a_lo, b_lo, e), rotate(a_hi, b_hi, e + 8));
        store16<kFp16>(head + e + half, rotate(b_lo, a_lo, e + half), rotate(b_hi, a_hi, e + half + 8));
      }
    } else {
      for (int e = 0; e < R; e += 16) {
        __m256 lo, hi;
        load16<kFp16>(head + e, lo, hi);
        store16<kFp16>(head + e, rotate(lo, _mm256_permute_ps(lo, 0xB1), e),
                       rotate(hi, _mm256_permute_ps(hi, 0xB1), e + 8));
      }
    }
    for (int e = R; e < D; e += 16) {
      __m256 lo, hi;
      load16<kFp16>(head + e, lo, hi);
      store16<kFp16>(head + e, _mm256_mul_ps(_mm256_mul_ps(lo, _mm256_load_ps(t.w + e)), inv_rms),
                     _mm256_mul_ps(_mm256_mul_ps(hi, _mm256_load_ps(t.w + e + 8)), inv_rms));
    }
  }
}

template <bool kFp16, bool kNeox>
void normalize_rotate_tokens(const TokenArgs& a, const detail::RotaryFrequencies& freqs, int64_t begin,
                             int64_t end) {
  const int D = a.head.head_dim, R = a.head.rotary_dim, pairs = R / 2;
  auto partner = [&](int e) { return !kNeox ? e ^ 1 : (e < pairs ? e + pairs : e - pairs); };
  const float* weights[2] = {a.q_weight, a.k_weight};
  const int64_t heads[2] = {a.heads_q, a.heads_k};
  // Per call: each head kind's weights at the partners (natural order) and past R (lane order).
  alignas(32) float w_partner[2][256];
  FoldedRow folded[2];
  for (int kind = 0; kind < 2; ++kind) {
    for (int e = 0; e < R; ++e) w_partner[kind][e] = weights[kind][partner(e)];
    for (int e = R; e < D; e += 16)
      store_lane_order<kFp16>(folded[kind].w + e, _mm256_loadu_ps(weights[kind] + e),
                              _mm256_loadu_ps(weights[kind] + e + 8));
  }
  alignas(32) float cos_row[256], sin_row[256];  // natural order, attention factor and sign folded in
  const __m256 factor = _mm256_set1_ps(a.attention_factor);
  const __m256 sign = _mm256_set1_ps(-0.f);
  for (int64_t t = begin; t < end; ++t) {
    const int64_t position = a.positions64 ? a.positions64[t] : a.positions32[t];
    for (int i = 0; i < pairs; i += 8) {
      __m256 c, s;
      rotary_cos_sin8(static_cast<double>(position), freqs.freq + i, c, s);
      c = _mm256_mul_ps(c, factor);
      s = _mm256_mul_ps(s, factor);
      if constexpr (kNeox) {
        _mm256_store_ps(cos_row + i, c);
        _mm256_store_ps(cos_row + i + pairs, c);
        _mm256_store_ps(sin_row + i, _mm256_xor_ps(s, sign));
        _mm256_store_ps(sin_row + i + pairs, s);
      } else {  // pair i at values 2i, 2i + 1
        const __m256 c_lo = _mm256_unpacklo_ps(c, c), c_hi = _mm256_unpackhi_ps(c, c);
        const __m256 s_lo = _mm256_unpacklo_ps(_mm256_xor_ps(s, sign), s);
        const __m256 s_hi = _mm256_unpackhi_ps(_mm256_xor_ps(s, sign), s);
        _mm256_store_ps(cos_row + 2 * i, _mm256_permute2f128_ps(c_lo, c_hi, 0x20));
        _mm256_store_ps(cos_row + 2 * i + 8, _mm256_permute2f128_ps(c_lo, c_hi, 0x31));
        _mm256_store_ps(sin_row + 2 * i, _mm256_permute2f128_ps(s_lo, s_hi, 0x20));
        _mm256_store_ps(sin_row + 2 * i + 8, _mm256_permute2f128_ps(s_lo, s_hi, 0x31));
      }
    }
    uint16_t* row = a.qkv + t * a.width;
    const uint16_t* next_row = t + 1 < end ? row + a.width : nullptr;
    for (int kind = 0; kind < 2; ++kind) {
      if (heads[kind] == 0) continue;
      uint16_t* first = row + (kind == 0 ? 0 : a.heads_q * D);
      FoldedRow& f = folded[kind];
      for (int e = 0; e < R; e += 16) {
        const __m256 w0 = _mm256_loadu_ps(weights[kind] + e), w1 = _mm256_loadu_ps(weights[kind] + e + 8);
        const __m256 p0 = _mm256_load_ps(w_partner[kind] + e), p1 = _mm256_load_ps(w_partner[kind] + e + 8);
        store_lane_order<kFp16>(f.wc + e, _mm256_mul_ps(w0, _mm256_load_ps(cos_row + e)),
                                _mm256_mul_ps(w1, _mm256_load_ps(cos_row + e + 8)));
        store_lane_order<kFp16>(f.ws + e, _mm256_mul_ps(p0, _mm256_load_ps(sin_row + e)),
                                _mm256_mul_ps(p1, _mm256_load_ps(sin_row + e + 8)));
      }
      for (int64_t h = 0; h < heads[kind]; h += 8) {
        uint16_t* group = first + h * D;
        const int count = static_cast<int>(std::min<int64_t>(8, heads[kind] - h));
        normalize_rotate_heads<kFp16, kNeox>(group, count, next_row ? group + a.width : nullptr, f, D,
                                             R, a.head.eps);
      }
    }
  }
}

}  // namespace

bool tokens_fit_avx2(const HeadArgs& a) {
  return a.rotary_dim > 0 && a.head_dim % 16 == 0 &&
         (a.is_neox ? a.rotary_dim % 32 == 0 : a.rotary_dim % 16 == 0);
}

void normalize_rotate_tokens_avx2(const TokenArgs& args, const detail::RotaryFrequencies& freqs,
                                  int64_t begin, int64_t end) {
  if (args.head.fp16) {
    if (args.head.is_neox) normalize_rotate_tokens<true, true>(args, freqs, begin, end);
    else normalize_rotate_tokens<true, false>(args, freqs, begin, end);
  } else {
    if (args.head.is_neox) normalize_rotate_tokens<false, true>(args, freqs, begin, end);
    else normalize_rotate_tokens<false, false>(args, freqs, begin, end);
  }
}

}  // namespace moekit::cpu
