// AVX-512-BF16 expert kernels (bf16 only): VDPBF16PS on a broadcast A pair and 16 columns of one K
// pair of the block, up to 8 rows x 32 columns of fp32 accumulators in registers. The activation
// epilogue, the weighted rounding and the slot sum are 16-wide copies of the AVX2 ones, operation for
// operation (so bit-identical to them and to scalar). The AMX path shares the activation math
// (avx512_math.h) but rounds and stores its own way (kernels_amx.cpp).
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* values
// (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "common/numeric.h"
#include "experts/cpu/avx512_math.h"
#include "experts/cpu/kernels.h"

namespace moekit::cpu {
namespace {

template <int R>
void gemm_rows(const uint16_t* a, int64_t lda, const uint16_t* w, int64_t kpairs, float* c) {
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kpairs; ++p) {
    const __m512i b0 = _mm512_loadu_si512(w + p * 64);
    const __m512i b1 = _mm512_loadu_si512(w + p * 64 + 32);
    for (int r = 0; r < R; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + r * lda + 2 * p, 4);
      const __m512i x = _mm512_set1_epi32(pair);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)x, (__m512bh)b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)x, (__m512bh)b1);
    }
  }
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(c + r * 32, acc[r][0]);
    _mm512_storeu_ps(c + r * 32 + 16, acc[r][1]);
  }
}

void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c,
          const uint16_t* next_w, int64_t next_bytes) {
  const uint16_t* a = static_cast<const uint16_t*>(a_panel);
  switch (rows) {
    case 1: gemm_rows<1>(a, lda, w, kpairs, c); break;
    case 2: gemm_rows<2>(a, lda, w, kpairs, c); break;
    case 3: gemm_rows<3>(a, lda, w, kpairs, c); break;
    case 4: gemm_rows<4>(a, lda, w, kpairs, c); break;
    case 5: gemm_rows<5>(a, lda, w, kpairs, c); break;
    case 6: gemm_rows<6>(a, lda, w, kpairs, c); break;
    case 7: gemm_rows<7>(a, lda, w, kpairs, c); break;
    default: gemm_rows<8>(a, lda, w, kpairs, c); break;
  }
}

// RNE to bf16, returned as the fp32 value (NaN -> quiet NaN, as numeric::float_to_bf16). Integer
// rounding rather than VCVTNEPS2BF16, which flushes denormal inputs.
__m512 round16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  const __m512i quiet = _mm512_or_si512(u, _mm512_set1_epi32(0x400000));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i r = _mm512_mask_blend_epi32(nan, rounded, quiet);
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

void activate(const float* gate, const float* up, int count, const ActivationParams& act, DType dtype,
              PanelFormat panel, void* dst) {
  alignas(64) float out[32];
  const bool vector = act.kind == Activation::kSiluAndMul || act.kind == Activation::kSwigluOai;
  int n = 0;
  if (vector)
    for (; n + 16 <= count; n += 16)
      _mm512_store_ps(out + n, round16(activation16(_mm512_loadu_ps(gate + n), _mm512_loadu_ps(up + n), act)));
  for (; n < count; ++n) out[n] = numeric::round_bf16(activation_scalar(gate[n], up[n], act));
  for (; n < 32; ++n) out[n] = 0.f;
  if (panel == PanelFormat::kFloat32) {
    std::memcpy(dst, out, sizeof(out));
    return;
  }
  uint16_t* d = static_cast<uint16_t*>(dst);
  for (int h = 0; h < 2; ++h) {
    const __m512i hi = _mm512_srli_epi32(_mm512_castps_si512(_mm512_load_ps(out + 16 * h)), 16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + 16 * h), _mm512_cvtepi32_epi16(hi));
  }
}

// The bf16 bits of 16 fp32 values (round16's rounding).
__m256i encode16(__m512 v) { return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(round16(v)), 16)); }

// A whole slot row line (32 values, 64-byte aligned) goes out by one non-temporal store: no read for
// ownership of the scattered ic2 line, which the combine reads only after the stage. Dev VM (Zen 4, 2
// threads, qwen3-30b-a3b, calls alternated in one process, bit-identical): 0.985 / 0.986x the time at
// 1024 tokens, 0.985 / 0.979x at 4096, 0.996-1.005x at 1-128.
void weighted_round(const float* d, float w, int count, DType dtype, uint16_t* dst) {
  const __m512 wv = _mm512_set1_ps(w);
  if (count == 32 && reinterpret_cast<uintptr_t>(dst) % 64 == 0) {
    const __m256i lo = encode16(_mm512_mul_ps(wv, _mm512_loadu_ps(d)));
    const __m256i hi = encode16(_mm512_mul_ps(wv, _mm512_loadu_ps(d + 16)));
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst), _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
    return;
  }
  int n = 0;
  for (; n + 16 <= count; n += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + n), encode16(_mm512_mul_ps(wv, _mm512_loadu_ps(d + n))));
  for (; n < count; ++n) dst[n] = numeric::float_to_bf16(w * d[n]);
}

void sum_rows(const uint16_t* const* y, int rows, float scale, int64_t count, DType dtype, uint16_t* out) {
  const __m512 sv = _mm512_set1_ps(scale);
  int64_t n = 0;
  for (; n + 16 <= count; n += 16) {
    __m512 s = _mm512_setzero_ps();
    for (int t = 0; t < rows; ++t) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t] + n));
      s = _mm512_add_ps(s, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n), encode16(_mm512_mul_ps(sv, s)));
  }
  for (; n < count; ++n) {
    float s = 0.f;
    for (int t = 0; t < rows; ++t) s += numeric::bf16_to_float(y[t][n]);
    out[n] = numeric::float_to_bf16(scale * s);
  }
}

}  // namespace

const ExpertKernels* avx512bf16_expert_kernels(DType dtype) {
  if (dtype != DType::kBFloat16) return nullptr;
  static const ExpertKernels kernels = [] {
    ExpertKernels k{};
    k.isa = CpuIsa::kAvx512Bf16;
    k.activate = activate;
    k.weighted_round = weighted_round;
    k.sum_rows = sum_rows;
    k.panel = PanelFormat::kBFloat16;
    k.max_rows = 8;
    k.gemm = gemm;
    return k;
  }();
  return &kernels;
}

}  // namespace moekit::cpu
