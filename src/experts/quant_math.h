// The per-group quantisation math of every expert format (see include/moekit/quant.h for the
// formulas), on decoded fp32 values. Shared by the quantise ops and the oracle, so that what the
// oracle feeds its GEMMs is exactly what a producer makes. Codes are returned one per byte
// (4-bit formats unpacked); callers pack.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/numeric.h"

namespace moekit::detail {

constexpr float kE4m3Max = 448.f;
constexpr float kE2m1Max = 6.f;
constexpr float kInt8AmaxFloor = 1e-7f;  // cpu-moe.md 1.3
constexpr float kInt4RangeFloor = 1e-5f;  // AWQ's clamp of max - min
constexpr float kFp8ActivationEps = 1e-10f;  // sglang per_token_group_quant_fp8 default
constexpr int kNvfp4Group = 16;
constexpr int kMxGroup = 32;
constexpr uint8_t kE4m3NaN = 0x7f;
constexpr uint8_t kE8m0NaN = 0xff;

// max |x| over n values; false when a NaN or Inf is among them.
inline bool finite_amax(const float* x, int64_t n, float* amax) {
  float m = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    float a = std::fabs(x[i]);
    if (!(a <= std::numeric_limits<float>::max())) return false;
    m = std::max(m, a);
  }
  *amax = m;
  return true;
}

inline float quiet_nan() { return std::numeric_limits<float>::quiet_NaN(); }

// FP8 e4m3 group (per-token-group activations and 2-D weight blocks): returns the fp32 scale.
inline float quantize_fp8_group(const float* x, int64_t n, float eps, uint8_t* q) {
  float amax;
  if (!finite_amax(x, n, &amax)) {
    std::fill(q, q + n, uint8_t{0});
    return quiet_nan();
  }
  const float s = std::max(amax, eps) / kE4m3Max;
  for (int64_t i = 0; i < n; ++i) q[i] = numeric::float_to_e4m3(x[i] / s);
  return s;
}

// Symmetric int8 row (cpu-moe.md 1.3): returns s = amax / 127.
inline float quantize_int8_row(const float* x, int64_t n, int8_t* q) {
  float amax;
  if (!finite_amax(x, n, &amax)) {
    std::fill(q, q + n, int8_t{0});
    return quiet_nan();
  }
  amax = std::max(amax, kInt8AmaxFloor);
  const float s = amax / 127.f;
  const float inv = 127.f / amax;
  for (int64_t i = 0; i < n; ++i) {
    float v = std::nearbyint(x[i] * inv);  // RNE in the default rounding mode
    q[i] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, v)));
  }
  return s;
}

// Asymmetric int4 group (AWQ): codes 0..15, scale and zero point.
inline void quantize_int4_group(const float* x, int64_t n, uint8_t* q, float* scale,
                                uint8_t* zero) {
  float lo = x[0], hi = x[0];
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) finite = false;
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (!finite) {
    std::fill(q, q + n, uint8_t{0});
    *scale = quiet_nan();
    *zero = 0;
    return;
  }
  const float s = std::max(hi - lo, kInt4RangeFloor) / 15.f;
  const float z = std::min(15.f, std::max(0.f, std::nearbyint(-lo / s)));
  for (int64_t i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(std::min(15.f, std::max(0.f, std::nearbyint(x[i] / s) + z)));
  *scale = s;
  *zero = static_cast<uint8_t>(z);
}

// NVFP4 group of up to 16 with global scale gs: returns the e4m3 block-scale code.
inline uint8_t quantize_nvfp4_group(const float* x, int64_t n, float gs, uint8_t* q) {
  float amax;
  if (!finite_amax(x, n, &amax) || !std::isfinite(gs)) {
    std::fill(q, q + n, uint8_t{0});
    return kE4m3NaN;
  }
  const uint8_t sf = numeric::float_to_e4m3(gs * amax / kE2m1Max);
  const float sf_value = numeric::e4m3_to_float(sf);
  if (sf_value == 0.f) {
    std::fill(q, q + n, uint8_t{0});
    return sf;
  }
  const float to_e2m1 = gs / sf_value;
  for (int64_t i = 0; i < n; ++i) q[i] = numeric::float_to_e2m1(x[i] * to_e2m1);
  return sf;
}

// MX group (up to 32) with e8m0 scale u = ceil_pow2(amax / elem_max); element codes via `encode`.
template <typename Encode>
inline uint8_t quantize_mx_group(const float* x, int64_t n, float elem_max, uint8_t* q,
                                 Encode encode) {
  float amax;
  if (!finite_amax(x, n, &amax)) {
    std::fill(q, q + n, uint8_t{0});
    return kE8m0NaN;
  }
  const uint8_t u = numeric::float_to_e8m0_ceil(amax / elem_max);
  const float s = numeric::e8m0_to_float(u);
  for (int64_t i = 0; i < n; ++i) q[i] = encode(x[i] / s);
  return u;
}

inline uint8_t quantize_mxfp8_group(const float* x, int64_t n, uint8_t* q) {
  return quantize_mx_group(x, n, kE4m3Max, q, [](float v) { return numeric::float_to_e4m3(v); });
}

inline uint8_t quantize_mxfp4_group(const float* x, int64_t n, uint8_t* q) {
  return quantize_mx_group(x, n, kE2m1Max, q, [](float v) { return numeric::float_to_e2m1(v); });
}

// 4-bit code k of a packed row (element 2j in the low nibble of byte j).
inline uint8_t nibble(const uint8_t* packed, int64_t k) {
  return (k & 1) ? static_cast<uint8_t>(packed[k >> 1] >> 4) : static_cast<uint8_t>(packed[k >> 1] & 0xf);
}

inline void pack_nibbles(const uint8_t* codes, int64_t n, uint8_t* packed) {
  for (int64_t j = 0; j < (n + 1) / 2; ++j) {
    uint8_t lo = codes[2 * j] & 0xf;
    uint8_t hi = 2 * j + 1 < n ? codes[2 * j + 1] & 0xf : 0;
    packed[j] = static_cast<uint8_t>(lo | (hi << 4));
  }
}

}  // namespace moekit::detail
