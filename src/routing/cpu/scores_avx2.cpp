// AVX2 row scores: router_math.h's exp / sigmoid / tanh replayed eight lanes at a time with the same
// IEEE operations in the same order (explicit fma, no contraction), so keys are bit-identical to
// the scalar path. Only intrinsics here: no external inline functions get compiled with AVX2 flags
// (avx2_bf16.h's are static).
#include <immintrin.h>

#include <limits>

#include "common/avx2_bf16.h"
#include "routing/cpu/scores.h"
#include "routing/router_math.h"

namespace moekit::cpu {
namespace {

using routing::RouterProblem;

inline __m256 splat(float v) { return _mm256_set1_ps(v); }

__m256 exp8(__m256 x) {
  const __m256 inf = splat(std::numeric_limits<float>::infinity());
  __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  __m256 hi = _mm256_cmp_ps(x, splat(routing::kExpHi), _CMP_GT_OQ);
  __m256 lo = _mm256_cmp_ps(x, splat(routing::kExpLo), _CMP_LT_OQ);
  __m256 xc = _mm256_min_ps(_mm256_max_ps(x, splat(routing::kExpLo)), splat(routing::kExpHi));
  __m256 kf = _mm256_round_ps(_mm256_mul_ps(xc, splat(routing::kLog2e)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(kf, splat(-routing::kLn2Hi), xc);
  r = _mm256_fmadd_ps(kf, splat(-routing::kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(splat(routing::kExpC7), r, splat(routing::kExpC6));
  for (float c : {routing::kExpC5, routing::kExpC4, routing::kExpC3, routing::kExpC2, 1.f, 1.f})
    p = _mm256_fmadd_ps(p, r, splat(c));
  __m256i k = _mm256_cvtps_epi32(kf);
  __m256i big = _mm256_cmpgt_epi32(k, _mm256_set1_epi32(127));
  p = _mm256_blendv_ps(p, _mm256_add_ps(p, p), _mm256_castsi256_ps(big));
  k = _mm256_add_epi32(k, big);  // big lanes are -1
  __m256i bits = _mm256_castps_si256(p);
  __m256i field = _mm256_add_epi32(_mm256_srli_epi32(bits, 23), k);
  __m256 res = _mm256_castsi256_ps(_mm256_add_epi32(bits, _mm256_slli_epi32(k, 23)));
  __m256 under = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(1), field));
  __m256 over = _mm256_castsi256_ps(_mm256_cmpgt_epi32(field, _mm256_set1_epi32(254)));
  res = _mm256_blendv_ps(res, _mm256_setzero_ps(), under);
  res = _mm256_blendv_ps(res, inf, over);
  res = _mm256_blendv_ps(res, _mm256_setzero_ps(), lo);
  res = _mm256_blendv_ps(res, inf, hi);
  return _mm256_blendv_ps(res, x, nan);
}

__m256 neg(__m256 v) { return _mm256_xor_ps(v, splat(-0.f)); }

__m256 sigmoid8(__m256 x) {
  const __m256 one = splat(1.f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(neg(x))));
}

__m256 tanh8(__m256 y) {
  const __m256 one = splat(1.f);
  __m256 a = _mm256_andnot_ps(splat(-0.f), y);
  __m256 small = _mm256_cmp_ps(a, splat(0.55f), _CMP_LT_OQ);
  __m256 z = _mm256_mul_ps(y, y);
  __m256 q = _mm256_fmadd_ps(splat(routing::kTanhC9), z, splat(routing::kTanhC8));
  for (float c : {routing::kTanhC7, routing::kTanhC6, routing::kTanhC5, routing::kTanhC4,
                  routing::kTanhC3, routing::kTanhC2, routing::kTanhC1, routing::kTanhC0})
    q = _mm256_fmadd_ps(q, z, splat(c));
  __m256 t_small = _mm256_fmadd_ps(_mm256_mul_ps(y, z), q, y);
  __m256 e = exp8(_mm256_mul_ps(splat(-2.f), a));
  __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  __m256 negative = _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_LT_OQ);
  __m256 t_large = _mm256_blendv_ps(t, neg(t), negative);
  return _mm256_blendv_ps(t_large, t_small, small);
}

__m256 nan_to_neg_inf8(__m256 v) {
  return _mm256_blendv_ps(v, splat(-std::numeric_limits<float>::infinity()),
                          _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

__m256 round8(__m256 v, routing::Rounding rounding) {
  if (rounding == routing::Rounding::kNone) return v;
  __m256 rounded;
  if (rounding == routing::Rounding::kFP16) {
    rounded = _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  } else {
    rounded = numeric::avx2::round_bf16(v);
  }
  return _mm256_blendv_ps(rounded, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

}  // namespace

void score_row_avx2(const RouterProblem& p, const float* x, const float* bias, float* key,
                    float* weight) {
  const int E = p.E;
  const float inf = std::numeric_limits<float>::infinity();
  if (p.score == routing::ScoreFunction::kSigmoid) {
    for (int e = 0; e < E; e += 8) {
      __m256 s = round8(sigmoid8(_mm256_loadu_ps(x + e)), p.rounding);
      __m256 t = bias ? round8(_mm256_add_ps(s, _mm256_loadu_ps(bias + e)), p.rounding) : s;
      __m256 w = _mm256_blendv_ps(s, _mm256_setzero_ps(), _mm256_cmp_ps(s, s, _CMP_UNORD_Q));
      alignas(32) float wl[8], kl[8];
      _mm256_store_ps(wl, w);
      _mm256_store_ps(kl, nan_to_neg_inf8(t));
      for (int l = 0; l < 8 && e + l < E; ++l) {
        weight[e + l] = wl[l];
        key[e + l] = kl[l];
      }
    }
    return;
  }
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int E8 = (E + 7) / 8 * 8;
  alignas(32) float v[kRowCapacity];
  __m256 mx8 = splat(-inf);
  for (int e = 0; e < E8; e += 8) {
    __m256 val = _mm256_loadu_ps(x + e);
    if (p.softcap != 0.f) {
      __m256 c = splat(p.softcap);
      val = _mm256_mul_ps(c, tanh8(_mm256_div_ps(val, c)));
    }
    if (bias && p.bias_on_logits) val = _mm256_add_ps(val, _mm256_loadu_ps(bias + e));
    val = nan_to_neg_inf8(val);
    __m256 tail = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_add_epi32(lane, _mm256_set1_epi32(e)),
                                                         _mm256_set1_epi32(E - 1)));
    val = _mm256_blendv_ps(val, splat(-inf), tail);
    _mm256_store_ps(v + e, val);
    mx8 = _mm256_max_ps(mx8, val);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, mx8);
  float mx = -inf;
  for (float l : lanes) mx = l > mx ? l : mx;
  alignas(32) float ex[kRowCapacity];
  double sum = 0;
  if (mx == inf || mx == -inf) {  // the +inf logits share the mass / nothing finite
    for (int e = 0; e < E8; ++e) {
      ex[e] = mx == inf && v[e] == inf ? 1.f : 0.f;
      sum += ex[e];
    }
  } else {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    const __m256 m8 = splat(mx);
    for (int e = 0; e < E8; e += 8) {
      __m256 ev = exp8(_mm256_sub_ps(_mm256_load_ps(v + e), m8));
      _mm256_store_ps(ex + e, ev);
      s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(ev)));
      s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)));
    }
    alignas(32) double parts[4];
    _mm256_store_pd(parts, _mm256_add_pd(s0, s1));
    sum = (parts[0] + parts[1]) + (parts[2] + parts[3]);
  }
  // weight = float(ex / sum) in double, four lanes at a time (IEEE division and the conversion
  // round exactly as the scalar expression does); lanes past E are never read.
  const bool selection_bias = bias && !p.bias_on_logits;
  const __m256d sum4 = _mm256_set1_pd(sum);
  for (int e = 0; e < E8; e += 8) {
    const __m256 ev = _mm256_load_ps(ex + e);
    __m256 w = _mm256_setzero_ps();
    if (sum > 0) {
      const __m128 lo = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(ev)), sum4));
      const __m128 hi = _mm256_cvtpd_ps(_mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(ev, 1)), sum4));
      w = _mm256_set_m128(hi, lo);
    }
    _mm256_store_ps(weight + e, w);
    _mm256_store_ps(key + e, nan_to_neg_inf8(selection_bias ? _mm256_add_ps(w, _mm256_loadu_ps(bias + e)) : ev));
  }
}

}  // namespace moekit::cpu
