// The routers' fp32 functions, one definition for the oracle, the CPU paths and the CUDA kernels.
//
// Selection compares scores exactly (ties go to the lower index), so every back end must compute the
// same bits: the functions use only correctly rounded IEEE operations (add, mul, div, fma, rint)
// written out explicitly, and multiplies go through mul_rn so no compiler fuses them with a following
// add (GCC contracts a*b+c into an fma when FMA is enabled; nvcc does by default). The AVX2 file
// replays the same operations lane-wise.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/numeric.h"

namespace moekit::routing {

// Internal linkage: the AVX2 translation unit includes this file too, and its copies (compiled with
// AVX2 flags) must never be the ones the linker keeps for the portable code.
#if defined(__CUDACC__)
#define MOEKIT_RHD static __host__ __device__ __forceinline__
#else
#define MOEKIT_RHD static inline
#endif

MOEKIT_RHD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  float r = a * b;
#if defined(__x86_64__) || defined(__i386__)
  asm("" : "+x"(r));  // an opaque value: never contracted into an fma with a later add
#else
  asm("" : "+r"(r));
#endif
  return r;
#endif
}

MOEKIT_RHD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

MOEKIT_RHD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

MOEKIT_RHD float rint_f32(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::rint(x);
#endif
}

// Range limits of router_exp: above kExpHi the result is +inf, below kExpLo (ln FLT_MIN) it is 0.
constexpr float kExpHi = 88.72283935546875f;
constexpr float kExpLo = -87.33654022216796875f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;  // few mantissa bits: k * kLn2Hi is exact
constexpr float kLn2Lo = 1.428606765330187045e-06f;
// Taylor coefficients of e^r, r in [-ln2/2, ln2/2]: the degree-7 truncation error is < 0.1 ulp.
// (Scalars, not an array: device code may use namespace-scope constexpr scalars.)
constexpr float kExpC2 = 0.5f, kExpC3 = 0.16666667163372039795f, kExpC4 = 0.041666667908430099487f,
                kExpC5 = 0.0083333337679505348206f, kExpC6 = 0.0013888889225199818611f,
                kExpC7 = 0.00019841270113829523325f;

// exp(x) for fp32: Cody-Waite reduction x = k ln2 + r, e^r by Horner in fma, 2^k added to the
// exponent field (no multiply, so the result is never fused into the caller's add). Branch-free:
// the reduction runs on x clamped into the finite range (NaN to the low end) and the out-of-range
// and NaN results are selected at the end, so a GPU lane evaluates several exps interleaved; in
// range the operations and bits are those of the plain formula.
MOEKIT_RHD float router_exp(float x) {
  const float xc = x > kExpHi ? kExpHi : (x >= kExpLo ? x : kExpLo);
  float kf = rint_f32(mul_rn(xc, kLog2e));
  float r = fma_rn(kf, -kLn2Hi, xc);
  r = fma_rn(kf, -kLn2Lo, r);
  float p = fma_rn(kExpC7, r, kExpC6);
  p = fma_rn(p, r, kExpC5);
  p = fma_rn(p, r, kExpC4);
  p = fma_rn(p, r, kExpC3);
  p = fma_rn(p, r, kExpC2);
  p = fma_rn(p, r, 1.f);
  p = fma_rn(p, r, 1.f);
  int k = static_cast<int>(kf);
  const bool top = k > 127;  // e^x just below FLT_MAX: keep the exponent field in range
  p = top ? p + p : p;
  k = top ? k - 1 : k;
  const uint32_t bits = numeric::float_bits(p);
  const int field = static_cast<int>(bits >> 23) + k;
  const float inf = numeric::bits_float(0x7f800000u);
  const float scaled = numeric::bits_float(bits + (static_cast<uint32_t>(k) << 23));
  const float e = field <= 0 ? 0.f : (field >= 255 ? inf : scaled);
  return x == x ? (x > kExpHi ? inf : (x < kExpLo ? 0.f : e)) : x;
}

// sigmoid(x) = 1 / (1 + e^-x), given e^-x (a GPU lane computes its exps first: they interleave,
// the divisions do not).
MOEKIT_RHD float router_sigmoid_of_exp(float exp_neg_x) { return div_rn(1.f, 1.f + exp_neg_x); }
MOEKIT_RHD float router_sigmoid(float x) { return router_sigmoid_of_exp(router_exp(-x)); }

// Taylor coefficients of (tanh(y) - y) / y^3 in z = y^2, used for |y| < 0.55 (error < 1e-8).
constexpr float kTanhC0 = -0.3333333432674408f, kTanhC1 = 0.13333334028720856f,
                kTanhC2 = -0.05396825447678566f, kTanhC3 = 0.021869488060474396f,
                kTanhC4 = -0.0088632358238101f, kTanhC5 = 0.0035921279340982437f,
                kTanhC6 = -0.0014558343682438135f, kTanhC7 = 0.0005900274263694882f,
                kTanhC8 = -0.0002391291200183332f, kTanhC9 = 9.69153770711273e-05f;

MOEKIT_RHD float router_tanh(float y) {
  float a = y < 0.f ? -y : y;
  if (a < 0.55f) {
    float z = mul_rn(y, y);
    float q = fma_rn(kTanhC9, z, kTanhC8);
    q = fma_rn(q, z, kTanhC7);
    q = fma_rn(q, z, kTanhC6);
    q = fma_rn(q, z, kTanhC5);
    q = fma_rn(q, z, kTanhC4);
    q = fma_rn(q, z, kTanhC3);
    q = fma_rn(q, z, kTanhC2);
    q = fma_rn(q, z, kTanhC1);
    q = fma_rn(q, z, kTanhC0);
    return fma_rn(mul_rn(y, z), q, y);
  }
  float e = router_exp(mul_rn(-2.f, a));  // NaN stays NaN
  float t = div_rn(1.f - e, 1.f + e);
  return y < 0.f ? -t : t;
}

// Soft-capped logit c * tanh(x / c).
MOEKIT_RHD float router_softcap(float x, float c) { return mul_rn(c, router_tanh(div_rn(x, c))); }

// Selection keys never hold NaN: a NaN score is treated as -inf (ranks last; among equal keys the
// lower index wins).
MOEKIT_RHD float nan_to_neg_inf(float k) { return k == k ? k : -numeric::bits_float(0x7f800000u); }

// (ka, ia) ranks before (kb, ib): larger key first, ties to the lower index.
MOEKIT_RHD bool key_better(float ka, int ia, float kb, int ib) {
  return ka > kb || (ka == kb && ia < ib);
}

// Rounding of an intermediate value to the gate's input type (identity for fp32).
enum class Rounding { kNone, kBF16, kFP16 };

// Not for the AVX2 unit (numeric:: functions have external linkage); it rounds lane-wise itself.
MOEKIT_RHD float round_to(float v, Rounding r) {
  switch (r) {
    case Rounding::kBF16: return numeric::round_bf16(v);
    case Rounding::kFP16: return numeric::round_half(v);
    default: return v;
  }
}

}  // namespace moekit::routing
