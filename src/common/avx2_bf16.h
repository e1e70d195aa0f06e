// AVX2 fp32 -> bf16, lane for lane as numeric::float_to_bf16: round to nearest even; a NaN becomes
// the quiet NaN (bits >> 16) | 0x40 (sign and upper payload kept). Include only from files built
// with the AVX2 flags (*_avx2.cpp and wider). The functions are static: an inline function shared
// by files built for different ISAs could be linked as the wider build's copy.
#pragma once

#include <immintrin.h>

namespace moekit::numeric::avx2 {

// The bf16 bits of 8 fp32 values, one in the low half of each 32-bit lane (high half zero).
static inline __m256i float_to_bf16_lanes(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i high = _mm256_srli_epi32(u, 16);
  const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(high, _mm256_set1_epi32(1)));
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  const __m256i quiet = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(rounded, quiet, _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}

// 8 fp32 values as 8 packed bf16 values.
static inline __m128i float_to_bf16(__m256 v) {
  const __m256i bits = float_to_bf16_lanes(v);
  return _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
}

// 8 fp32 values rounded to bf16 precision, as fp32 (numeric::round_bf16).
static inline __m256 round_bf16(__m256 v) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(float_to_bf16_lanes(v), 16));
}

}  // namespace moekit::numeric::avx2
