// AVX-512 pieces of the expert epilogues shared by the avx512bf16 and amx kernel files (both compiled
// with AVX-512 flags; internal linkage, so each file keeps its own copy).
#pragma once

#include <immintrin.h>

#include "experts/cpu/kernels.h"

namespace moekit::cpu {
namespace {

// Mirrors exp_approx() (and exp_approx8 of the AVX2 file) operation for operation.
__m512 exp_approx16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);  // (88 < x) ? 88 : x, NaN stays in x
  x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

__m512 activation16(__m512 g, __m512 u, const ActivationParams& act) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  if (act.kind == Activation::kSiluAndMul) {
    const __m512 e = exp_approx16(_mm512_xor_ps(g, sign));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u);
  }
  // kSwigluOai
  const __m512 limit = _mm512_set1_ps(act.limit);
  const __m512 gc = _mm512_min_ps(limit, g);
  __m512 uc = _mm512_min_ps(limit, u);
  uc = _mm512_max_ps(_mm512_set1_ps(-act.limit), uc);
  const __m512 z = _mm512_mul_ps(_mm512_set1_ps(act.alpha), gc);
  const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, exp_approx16(_mm512_xor_ps(z, sign))));
  return _mm512_mul_ps(_mm512_mul_ps(gc, sig), _mm512_add_ps(uc, one));
}

}  // namespace
}  // namespace moekit::cpu
