// AVX-512-BF16 expert kernel (bf16 only): VDPBF16PS on a broadcast A pair and 16 columns of one K
// pair of the block, up to 8 rows x 32 columns of fp32 accumulators in registers. The activation
// epilogue and the weighted add are the AVX2 ones (bit-identical to scalar).
#include <immintrin.h>

#include <cstring>

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

void gemm(const void* a_panel, int64_t lda, int rows, const uint16_t* w, int64_t kpairs, float* c) {
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

}  // namespace

const ExpertKernels* avx512bf16_expert_kernels(DType dtype) {
  if (dtype != DType::kBFloat16) return nullptr;
  static const ExpertKernels kernels = [] {
    ExpertKernels k = *avx2_expert_kernels(DType::kBFloat16);
    k.isa = CpuIsa::kAvx512Bf16;
    k.panel = PanelFormat::kBFloat16;
    k.max_rows = 8;
    k.gemm = gemm;
    k.read_rows = 0;
    return k;
  }();
  return &kernels;
}

}  // namespace moekit::cpu
