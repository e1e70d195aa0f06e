#include "rope/rotary_frequencies.h"

namespace moekit::detail {

const RotaryFrequencies& rotary_frequencies(double base, int64_t rotary_dim, double factor,
                                            double low, double high) {
  struct Cached {
    double base = 0, factor = 0, low = 0, high = 0;
    int64_t rotary_dim = 0;
    RotaryFrequencies table;
  };
  thread_local Cached cached;
  if (cached.rotary_dim == rotary_dim && cached.base == base && cached.factor == factor &&
      cached.low == low && cached.high == high)
    return cached.table;

  RotaryFrequencies& t = cached.table;
  t.pairs = static_cast<int>(rotary_dim / 2);
  for (int i = 0; i < t.pairs; ++i) {
    double f = std::pow(base, -2.0 * i / static_cast<double>(rotary_dim));
    if (factor != 1.0) {
      // YaRN: pairs below `low` keep f, pairs above `high` get f / factor, a linear ramp between.
      const double hi = std::fabs(low - high) <= 1e-6 ? high + 0.001 : high;
      const double ramp = std::fmin(std::fmax((i - low) / (hi - low), 0.0), 1.0);
      f = f / factor * ramp + f * (1.0 - ramp);
    }
    t.freq[i] = f;
  }
  cached.base = base;
  cached.factor = factor;
  cached.low = low;
  cached.high = high;
  cached.rotary_dim = rotary_dim;
  return t;
}

}  // namespace moekit::detail
