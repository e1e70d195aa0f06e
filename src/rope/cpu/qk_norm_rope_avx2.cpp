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
  alignas(32) float y[256];
  const int D = a.head_dim, R = a.rotary_dim, half = a.half;
  __m256 sum_sq = _mm256_setzero_ps();
  for (int e = 0; e < D; e += 8) {
    const __m256 x = load8(head + e, a.fp16);
    sum_sq = _mm256_fmadd_ps(x, x, sum_sq);
    _mm256_store_ps(y + e, x);
  }
  const float inv_rms = 1.f / std::sqrt(horizontal_sum(sum_sq) / static_cast<float>(D) + a.eps);
  const __m256 scale = _mm256_set1_ps(inv_rms);
  for (int e = 0; e < D; e += 8)
    _mm256_store_ps(y + e, _mm256_mul_ps(_mm256_mul_ps(_mm256_load_ps(y + e), _mm256_loadu_ps(weight + e)), scale));

  // Whole vectors inside the rotated range. For NeoX such vectors exist only when half >= 8
  // (partner vector half away) or half == 4 (R == 8: swap the 128-bit halves).
  const int rotated_vectors_end = R & ~7;
  for (int e = 0; e < rotated_vectors_end; e += 8) {
    const __m256 v = _mm256_load_ps(y + e);
    __m256 partner;
    if (!a.is_neox)
      partner = _mm256_permute_ps(v, 0xB1);  // (0 1)(2 3)... swapped
    else if (half >= 8)
      partner = _mm256_load_ps(y + (e ^ half));
    else
      partner = _mm256_permute2f128_ps(v, v, 1);
    const __m256 out = _mm256_fmadd_ps(v, _mm256_loadu_ps(row.cos_a + e),
                                       _mm256_mul_ps(partner, _mm256_loadu_ps(row.sin_a + e)));
    store8(head + e, out, a.fp16);
  }
  int e = rotated_vectors_end;
  if (e < R) {  // a vector that straddles R (R not a multiple of 8)
    alignas(32) float out[8];
    for (int j = 0; j < 8; ++j) {
      const int d = e + j;
      const int partner = !a.is_neox ? d ^ 1 : (d < half ? d + half : d - half);
      out[j] = d < R ? y[d] * row.cos_a[d] + y[partner] * row.sin_a[d] : y[d];
    }
    store8(head + e, _mm256_load_ps(out), a.fp16);
    e += 8;
  }
  for (; e < D; e += 8) store8(head + e, _mm256_load_ps(y + e), a.fp16);
}

}  // namespace moekit::cpu
