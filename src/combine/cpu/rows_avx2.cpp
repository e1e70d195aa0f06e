// AVX2 + F16C row primitives (see rows.h); compiled with -mavx2 -mfma -mf16c, run only when
// cpu_isa() >= kAvx2.
#include <immintrin.h>

#include <cmath>

#include "combine/cpu/rows.h"
#include "common/numeric.h"

namespace moekit::cpu::avx2 {
namespace {

float load_scalar(const void* row, DType dtype, int64_t h) {
  switch (dtype) {
    case DType::kFloat16: return numeric::half_to_float(static_cast<const uint16_t*>(row)[h]);
    case DType::kBFloat16: return numeric::bf16_to_float(static_cast<const uint16_t*>(row)[h]);
    default: return static_cast<const float*>(row)[h];
  }
}

__m256 load8(const void* row, DType dtype, int64_t h) {
  switch (dtype) {
    case DType::kFloat16:
      return _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + h)));
    case DType::kBFloat16: {
      const __m128i x =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + h));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(x), 16));
    }
    default: return _mm256_loadu_ps(static_cast<const float*>(row) + h);
  }
}

// float -> bf16 bits, round to nearest even, NaN quieted (numeric::float_to_bf16 lane-wise).
__m128i to_bf16(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f800000));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  const __m256i bits = _mm256_blendv_epi8(rounded, quiet, nan);
  const __m256i packed = _mm256_packus_epi32(bits, bits);  // per 128-bit lane
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

}  // namespace

void accumulate_row(const void* row, DType dtype, float f, float* acc, int64_t H) {
  int64_t h = 0;
  if (f == 1.f) {
    for (; h + 8 <= H; h += 8)
      _mm256_storeu_ps(acc + h, _mm256_add_ps(_mm256_loadu_ps(acc + h), load8(row, dtype, h)));
    for (; h < H; ++h) acc[h] += load_scalar(row, dtype, h);
  } else {
    const __m256 vf = _mm256_set1_ps(f);
    for (; h + 8 <= H; h += 8)
      _mm256_storeu_ps(acc + h, _mm256_fmadd_ps(vf, load8(row, dtype, h), _mm256_loadu_ps(acc + h)));
    for (; h < H; ++h) acc[h] = std::fma(f, load_scalar(row, dtype, h), acc[h]);
  }
}

void store_row(const float* acc, float scale, DType dtype, void* out, int64_t H) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t h = 0;
  for (; h + 8 <= H; h += 8) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(acc + h), vs);
    switch (dtype) {
      case DType::kFloat16:
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + h),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
      case DType::kBFloat16:
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + h), to_bf16(v));
        break;
      default: _mm256_storeu_ps(static_cast<float*>(out) + h, v);
    }
  }
  for (; h < H; ++h) {
    const float v = acc[h] * scale;
    switch (dtype) {
      case DType::kFloat16: static_cast<uint16_t*>(out)[h] = numeric::float_to_half(v); break;
      case DType::kBFloat16: static_cast<uint16_t*>(out)[h] = numeric::float_to_bf16(v); break;
      default: static_cast<float*>(out)[h] = v;
    }
  }
}

}  // namespace moekit::cpu::avx2
