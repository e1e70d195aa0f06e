// Rotary frequencies and angle reduction shared by the CPU and CUDA fast paths.
//
// The frequencies f_i (base^(-2i/R) with the YaRN correction) are computed once per call on the host
// in fp64 and handed to the kernels by value; the angle p * f_i is formed from the integer position
// as an exact double-double product and reduced modulo pi/2 in fp64, so its cos/sin are accurate
// for any position up to 2^53 (positions never pass through fp32).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/numeric.h"  // MOEKIT_HD

namespace moekit::detail {

constexpr int kMaxRotaryPairs = 128;  // R <= D <= 256

struct RotaryFrequencies {
  int pairs = 0;  // R / 2
  double freq[kMaxRotaryPairs] = {};
};

// The table for (base, R, factor, low, high); the last one computed on this thread is reused.
const RotaryFrequencies& rotary_frequencies(double base, int64_t rotary_dim, double factor,
                                            double low, double high);

// cos and sin of the angle p * f, accurate to 2 fp32 ulps for |p| <= 2^53 and f <= 1.
// hi + lo = p * f exactly (fma); a two-part Cody-Waite subtraction of k * pi/2 in fp64 leaves
// |r| <= pi/4 (error a few fp64 ulps), then minimax polynomials on [-pi/4, pi/4] in fp32 (the Cephes
// sinf/cosf kernels, about 1 ulp) and the quadrant k mod 4 picks signs and order.
struct RotaryCosSin {
  float cos, sin;
};

MOEKIT_HD RotaryCosSin rotary_cos_sin(int64_t position, double freq) {
  constexpr double kTwoOverPi = 0.63661977236758134;
  constexpr double kPiOverTwoHi = 1.5707963267948966;     // pi/2 rounded to fp64
  constexpr double kPiOverTwoLo = 6.123233995736766e-17;  // pi/2 - kPiOverTwoHi
  const double p = static_cast<double>(position);
  const double hi = p * freq;
  const double lo = fma(p, freq, -hi);
  const double k = rint(hi * kTwoOverPi);
  const double r = fma(-k, kPiOverTwoLo, fma(-k, kPiOverTwoHi, hi) + lo);
  const float x = static_cast<float>(r), z = x * x;
  const float sin_r = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
  const float cos_r =
      ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
      0.5f * z + 1.0f;
  switch (static_cast<int64_t>(k) & 3) {
    case 0: return {cos_r, sin_r};
    case 1: return {-sin_r, cos_r};
    case 2: return {-cos_r, -sin_r};
    default: return {sin_r, -cos_r};
  }
}

}  // namespace moekit::detail
