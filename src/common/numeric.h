// Scalar conversions between float and the storage formats moekit reads and writes, usable on host
// and device. Encoders round to nearest-even; decoders are exact. Formats:
//   bf16, fp16 (IEEE binary16), fp8 e4m3fn (OCP: bias 7, no inf, 0x7F/0xFF NaN, max 448),
//   fp8 e5m2 (bias 15, IEEE-like), e8m0 (2^(u-127), 0xFF NaN), e2m1 (FP4: 0,0.5,1,1.5,2,3,4,6).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MOEKIT_HD __host__ __device__ __forceinline__
#else
#define MOEKIT_HD inline
#endif

namespace moekit::numeric {

MOEKIT_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

MOEKIT_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// ---- bf16 ----
MOEKIT_HD float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

MOEKIT_HD uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

MOEKIT_HD float round_bf16(float f) { return bf16_to_float(float_to_bf16(f)); }

// ---- fp16 ----
MOEKIT_HD float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;  // man * 2^-24
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

MOEKIT_HD uint16_t float_to_half(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;  // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                        // below 2^-14: subnormal or zero
    // value / 2^-24 rounded to nearest even integer.
    float v = bits_float(a) * 16777216.0f;
    float r = v - std::floor(v);
    float fl = std::floor(v);
    uint32_t m = static_cast<uint32_t>(fl);
    if (r > 0.5f || (r == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint16_t>(m);
  }
  uint32_t exp = (a >> 23) - 112u;
  uint32_t man = a & 0x7fffffu;
  uint32_t h = (exp << 10) | (man >> 13);
  uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return sign | static_cast<uint16_t>(h);
}

MOEKIT_HD float round_half(float f) { return half_to_float(float_to_half(f)); }

// ---- fp8 e4m3fn ----
MOEKIT_HD float e4m3_to_float(uint8_t v) {
  uint32_t sign = v & 0x80u;
  uint32_t exp = (v >> 3) & 0xfu;
  uint32_t man = v & 0x7u;
  float r;
  if (exp == 0xf && man == 0x7) return bits_float(0x7fc00000u | (sign << 24));
  if (exp == 0)
    r = static_cast<float>(man) * 0.001953125f;  // man * 2^-9
  else
    r = bits_float(((exp + 120u) << 23) | (man << 20));
  return sign ? -r : r;
}

// Round to nearest even, saturating to +-448 (satfinite); NaN -> 0x7F.
MOEKIT_HD uint8_t float_to_e4m3(float f) {
  uint32_t u = float_bits(f);
  uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7f;
  float x = bits_float(a);
  if (x >= 448.0f) return sign | 0x7e;
  if (x < 0.015625f) {  // below 2^-6: subnormal grid of 2^-9
    float v = x * 512.0f;
    float fl = std::floor(v);
    float r = v - fl;
    uint32_t m = static_cast<uint32_t>(fl);
    if (r > 0.5f || (r == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint8_t>(m);  // m == 8 is the smallest normal, encoded correctly
  }
  uint32_t exp = (a >> 23) - 120u;
  uint32_t man = a & 0x7fffffu;
  uint32_t h = (exp << 3) | (man >> 20);
  uint32_t rem = man & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (h & 1u))) ++h;
  if (h > 0x7e) h = 0x7e;
  return sign | static_cast<uint8_t>(h);
}

// ---- fp8 e5m2 ----
MOEKIT_HD float e5m2_to_float(uint8_t v) { return half_to_float(static_cast<uint16_t>(v) << 8); }

// Round to nearest even directly from fp32 (not through fp16: that would round twice); IEEE
// overflow to inf (|x| >= 61440); NaN -> 0x7E.
MOEKIT_HD uint8_t float_to_e5m2(float f) {
  uint32_t u = float_bits(f);
  uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e;
  if (a >= 0x47700000u) return sign | 0x7c;  // >= 61440 (57344 + half an ulp, tie to even) -> inf
  if (a < 0x38800000u) {                      // below 2^-14: subnormal grid of 2^-16
    float v = bits_float(a) * 65536.0f;
    float fl = std::floor(v);
    float r = v - fl;
    uint32_t m = static_cast<uint32_t>(fl);
    if (r > 0.5f || (r == 0.5f && (m & 1u))) ++m;
    return sign | static_cast<uint8_t>(m);  // m == 4 is the smallest normal, encoded correctly
  }
  uint32_t exp = (a >> 23) - 112u;
  uint32_t man = a & 0x7fffffu;
  uint32_t h = (exp << 2) | (man >> 21);
  uint32_t rem = man & 0x1fffffu;
  if (rem > 0x100000u || (rem == 0x100000u && (h & 1u))) ++h;
  return sign | static_cast<uint8_t>(h);
}

// ---- e8m0 ----
MOEKIT_HD float e8m0_to_float(uint8_t u) {
  if (u == 0xff) return bits_float(0x7fc00000u);
  if (u == 0) return bits_float(0x00400000u);  // 2^-127 (subnormal)
  return bits_float(static_cast<uint32_t>(u) << 23);
}

// Smallest power of two >= x (round toward +inf), saturating to [2^-127, 2^127]; NaN -> 0xFF.
MOEKIT_HD uint8_t float_to_e8m0_ceil(float x) {
  uint32_t a = float_bits(x) & 0x7fffffffu;
  if (a > 0x7f800000u) return 0xff;
  if (a == 0) return 0;
  uint32_t exp = a >> 23;
  uint32_t man = a & 0x7fffffu;
  if (exp == 0) return man > 0x400000u ? 1 : 0;  // subnormal: 2^-127 or 2^-126
  if (man != 0) ++exp;
  return exp > 254 ? 254 : static_cast<uint8_t>(exp);
}

// ---- e2m1 (FP4), one nibble: bit 3 sign, 3-bit magnitude code ----
MOEKIT_HD float e2m1_to_float(uint8_t nibble) {
  const float mag[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};
  float v = mag[nibble & 7];
  return (nibble & 8) ? -v : v;
}

// Round to nearest even on the e2m1 grid, saturating to +-6; NaN -> 0.
MOEKIT_HD uint8_t float_to_e2m1(float f) {
  uint8_t sign = (float_bits(f) >> 31) ? 8 : 0;
  float a = std::fabs(f);
  if (!(a == a)) return 0;
  uint8_t code;
  // Midpoints between grid points; ties go to the even code (codes 0,2,4,6 are even).
  if (a <= 0.25f) code = 0;
  else if (a < 0.75f) code = 1;
  else if (a <= 1.25f) code = 2;
  else if (a < 1.75f) code = 3;
  else if (a <= 2.5f) code = 4;
  else if (a < 3.5f) code = 5;
  else if (a <= 5.0f) code = 6;
  else code = 7;
  return sign | code;
}

}  // namespace moekit::numeric
