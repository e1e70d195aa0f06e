// AVX2 + FMA + F16C head kernel of fused_qk_norm_rope: 8 values per vector, the NeoX / interleaved
// partner of a vector found by a lane permute (pairs within 8 values) or a second load (pairs
// 8 or more apart).
#include <immintrin.h>

#include <cmath>

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
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    const __m256i magnitude = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    const __m256i is_nan = _mm256_cmpgt_epi32(magnitude, _mm256_set1_epi32(0x7f800000));
    const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
    const __m256i bits = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, is_nan), 16);
    packed = _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
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
