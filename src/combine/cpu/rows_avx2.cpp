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

template <DType D>
__m256 load8_as(const void* row, int64_t h) {
  return load8(row, D, h);
}

template <DType D>
void store8_as(void* out, int64_t h, __m256 v) {
  if constexpr (D == DType::kFloat16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + h),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  else if constexpr (D == DType::kBFloat16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + h), to_bf16(v));
  else
    _mm256_storeu_ps(static_cast<float*>(out) + h, v);
}

void store_scalar(void* out, DType dtype, int64_t h, float v) {
  switch (dtype) {
    case DType::kFloat16: static_cast<uint16_t*>(out)[h] = numeric::float_to_half(v); break;
    case DType::kBFloat16: static_cast<uint16_t*>(out)[h] = numeric::float_to_bf16(v); break;
    default: static_cast<float*>(out)[h] = v;
  }
}

// One step of the sum: acc + x, or fma(f, x, acc) when weighted.
inline __m256 add_row(__m256 acc, __m256 x, const float* f, int64_t j) {
  return f ? _mm256_fmadd_ps(_mm256_set1_ps(f[j]), x, acc) : _mm256_add_ps(acc, x);
}

template <DType D>
void sum_rows_as(const void* const* rows, const float* f, int64_t n, float scale, void* out, int64_t H) {
  const __m256 vs = _mm256_set1_ps(scale);
  int64_t h = 0;
  for (; h + 32 <= H; h += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < n; ++j) {
      a0 = add_row(a0, load8_as<D>(rows[j], h), f, j);
      a1 = add_row(a1, load8_as<D>(rows[j], h + 8), f, j);
      a2 = add_row(a2, load8_as<D>(rows[j], h + 16), f, j);
      a3 = add_row(a3, load8_as<D>(rows[j], h + 24), f, j);
    }
    store8_as<D>(out, h, _mm256_mul_ps(a0, vs));
    store8_as<D>(out, h + 8, _mm256_mul_ps(a1, vs));
    store8_as<D>(out, h + 16, _mm256_mul_ps(a2, vs));
    store8_as<D>(out, h + 24, _mm256_mul_ps(a3, vs));
  }
  for (; h + 8 <= H; h += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j) a = add_row(a, load8_as<D>(rows[j], h), f, j);
    store8_as<D>(out, h, _mm256_mul_ps(a, vs));
  }
  for (; h < H; ++h) {
    float a = 0.f;
    for (int64_t j = 0; j < n; ++j) {
      const float x = load_scalar(rows[j], D, h);
      a = f ? std::fma(f[j], x, a) : a + x;
    }
    store_scalar(out, D, h, a * scale);
  }
}

}  // namespace

void sum_rows(const void* const* rows, const float* f, int64_t n, DType dtype, float scale, void* out,
              int64_t H) {
  switch (dtype) {
    case DType::kFloat16: sum_rows_as<DType::kFloat16>(rows, f, n, scale, out, H); break;
    case DType::kBFloat16: sum_rows_as<DType::kBFloat16>(rows, f, n, scale, out, H); break;
    default: sum_rows_as<DType::kFloat32>(rows, f, n, scale, out, H);
  }
}

}  // namespace moekit::cpu::avx2
