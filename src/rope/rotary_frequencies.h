// Rotary frequencies and angle reduction shared by the CPU and CUDA fast paths.
//
// The frequencies f_i (base^(-2i/R) with the YaRN correction) are computed once per call on the host
// in fp64 and handed to the kernels by value; the angle p * f_i is formed from the integer position
// as an exact double-double product and reduced modulo 2*pi in fp64, so sin/cos of the reduced fp32
// argument are accurate for any position up to 2^53.
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

// p * f reduced to about [-pi, pi]: hi + lo = p * f exactly (fma), then a two-part Cody-Waite
// subtraction of k * 2pi. Accurate to a few fp64 ulps of pi for |p| <= 2^53 and f <= 1.
MOEKIT_HD double reduced_rotary_angle(int64_t position, double freq) {
  constexpr double kInvTwoPi = 0.15915494309189535;
  constexpr double kTwoPiHi = 6.283185307179586;          // 2pi rounded to fp64
  constexpr double kTwoPiLo = 2.4492935982947064e-16;     // 2pi - kTwoPiHi
  const double p = static_cast<double>(position);
  const double hi = p * freq;
  const double lo = fma(p, freq, -hi);
  const double k = rint(hi * kInvTwoPi);
  const double r = fma(-k, kTwoPiHi, hi);
  return fma(-k, kTwoPiLo, r + lo);
}

}  // namespace moekit::detail
