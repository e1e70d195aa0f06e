// AVX2 + F16C row primitives (see rows.h); compiled with -mavx2 -mfma -mf16c, run only when
// cpu_isa() >= kAvx2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "combine/cpu/rows.h"
#include "common/avx2_bf16.h"
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

template <DType D>
__m256 load8_as(const void* row, int64_t h) {
  return load8(row, D, h);
}

// A streamed store needs `out + h` aligned to the vector's bytes (checked once per row).
template <DType D, bool kStream>
void store8_as(void* out, int64_t h, __m256 v) {
  if constexpr (D == DType::kFloat32) {
    float* p = static_cast<float*>(out) + h;
    if constexpr (kStream) _mm256_stream_ps(p, v);
    else _mm256_storeu_ps(p, v);
  } else {
    const __m128i bits = D == DType::kFloat16
                             ? _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                             : numeric::avx2::float_to_bf16(v);
    auto* p = reinterpret_cast<__m128i*>(static_cast<uint16_t*>(out) + h);
    if constexpr (kStream) _mm_stream_si128(p, bits);
    else _mm_storeu_si128(p, bits);
  }
}

// 32 columns h..h+31 of a row as four fp32 vectors. fp32 / fp16: x[i] = columns h+8i..h+8i+7.
// bf16: each 32-byte load is widened in place by interleaving zero words below the values, so x[0]
// holds columns h+0..3 and h+8..11, x[1] h+4..7 and h+12..15 (x[2], x[3] likewise from h+16):
// one load and two unpacks per 16 columns instead of two widening loads and two shifts; store32_as
// packs the lanes back in column order.
template <DType D>
[[gnu::always_inline]] inline void load32_as(const void* row, int64_t h, __m256 x[4]) {
  if constexpr (D == DType::kBFloat16) {
    const auto* p = static_cast<const uint16_t*>(row) + h;
    const __m256i zero = _mm256_setzero_si256();
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
    x[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, lo));
    x[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, lo));
    x[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, hi));
    x[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, hi));
  } else {
    for (int i = 0; i < 4; ++i) x[i] = load8(row, D, h + 8 * i);
  }
}

// Stores four vectors in load32_as's lane order.
template <DType D, bool kStream>
[[gnu::always_inline]] inline void store32_as(void* out, int64_t h, const __m256 v[4]) {
  if constexpr (D == DType::kBFloat16) {
    auto* p = reinterpret_cast<__m256i*>(static_cast<uint16_t*>(out) + h);
    for (int i = 0; i < 2; ++i) {
      const __m256i bits = _mm256_packus_epi32(numeric::avx2::float_to_bf16_lanes(v[2 * i]),
                                               numeric::avx2::float_to_bf16_lanes(v[2 * i + 1]));
      if constexpr (kStream) _mm256_stream_si256(p + i, bits);
      else _mm256_storeu_si256(p + i, bits);
    }
  } else {
    for (int i = 0; i < 4; ++i) store8_as<D, kStream>(out, h + 8 * i, v[i]);
  }
}

// Byte alignment of `out + h` that store32_as needs for streamed stores.
template <DType D>
constexpr uintptr_t stream_alignment() {
  return D == DType::kFloat16 ? 16 : 32;
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

// Columns a streamed sum prefetches ahead in each row (256 bytes of 16-bit values; with k rows that
// is k * 256 bytes in flight beside the hardware prefetcher's own: 1 KiB ahead was 5-13 % slower
// with two threads, no software prefetch 8 % slower on the gathers).
constexpr int64_t kPrefetchColumns = 128;

template <DType D, bool kStream>
void sum_rows_as(const void* const* rows, const float* f, int64_t n, float scale, void* out, int64_t H,
                 const RowStreaming* streaming) {
  constexpr int64_t elem = D == DType::kFloat32 ? 4 : 2;
  const __m256 vs = _mm256_set1_ps(scale);
  auto sum32 = [&](int64_t h, auto stream_tag) {
    constexpr bool kStreamOut = decltype(stream_tag)::value;
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t j = 0; j < n; ++j) {
      __m256 x[4];
      load32_as<D>(rows[j], h, x);
      for (int i = 0; i < 4; ++i) a[i] = add_row(a[i], x[i], f, j);
    }
    for (int i = 0; i < 4; ++i) a[i] = _mm256_mul_ps(a[i], vs);
    store32_as<D, kStreamOut>(out, h, a);
  };
  // The 32 columns at h, each row's line(s) at byte offset `ahead` of `base` prefetched first.
  auto prefetch = [](const void* base, int64_t ahead) {
    const char* p = static_cast<const char*>(base) + ahead;
    _mm_prefetch(p, _MM_HINT_T0);
    if constexpr (elem == 4) _mm_prefetch(p + 64, _MM_HINT_T0);
  };
  int64_t h = 0;
  if constexpr (kStream) {
    const int64_t own = std::max<int64_t>(H - 31 - kPrefetchColumns, 0);
    const bool aligned = reinterpret_cast<uintptr_t>(out) % stream_alignment<D>() == 0 && streaming->stream_out;
    auto run = [&](auto stream_tag) {
      for (; h < own; h += 32) {
        for (int64_t j = 0; j < n; ++j) prefetch(rows[j], (h + kPrefetchColumns) * elem);
        sum32(h, stream_tag);
      }
      for (; h + 32 <= H; h += 32) {
        const int64_t next = h + kPrefetchColumns - H;
        if (next >= 0 && next < H)
          for (int64_t j = 0; j < streaming->next_n; ++j) prefetch(streaming->next_rows[j], next * elem);
        sum32(h, stream_tag);
      }
    };
    if (aligned) run(std::true_type{});
    else run(std::false_type{});
  } else {
    for (; h + 32 <= H; h += 32) sum32(h, std::false_type{});
  }
  for (; h + 8 <= H; h += 8) {
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; ++j) a = add_row(a, load8_as<D>(rows[j], h), f, j);
    store8_as<D, false>(out, h, _mm256_mul_ps(a, vs));
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

template <DType D>
void sum_rows_dispatch(const void* const* rows, const float* f, int64_t n, float scale, void* out,
                       int64_t H, const RowStreaming* streaming) {
  if (streaming) sum_rows_as<D, true>(rows, f, n, scale, out, H, streaming);
  else sum_rows_as<D, false>(rows, f, n, scale, out, H, nullptr);
}

}  // namespace

void sum_rows(const void* const* rows, const float* f, int64_t n, DType dtype, float scale, void* out,
              int64_t H, const RowStreaming* streaming) {
  switch (dtype) {
    case DType::kFloat16: sum_rows_dispatch<DType::kFloat16>(rows, f, n, scale, out, H, streaming); break;
    case DType::kBFloat16: sum_rows_dispatch<DType::kBFloat16>(rows, f, n, scale, out, H, streaming); break;
    default: sum_rows_dispatch<DType::kFloat32>(rows, f, n, scale, out, H, streaming);
  }
}

void finish_streamed_stores() { _mm_sfence(); }

}  // namespace moekit::cpu::avx2
