// The fused_qk_norm_rope oracle: plain loops in fp64, the angle as an exact integer times the fp64
// frequency in long double (so positions far past 2^24 stay exact), one rounding at the store.
#include <cmath>
#include <vector>

#include "common/host_values.h"
#include "moekit/qk_norm_rope.h"
#include "rope/validate.h"

namespace moekit::reference {

void fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q, int64_t num_heads_k,
                        int64_t num_heads_v, int64_t head_dim, double eps, TensorView q_weight,
                        TensorView k_weight, double base, bool is_neox, TensorView position_ids,
                        double factor, double low, double high, double attention_factor,
                        int64_t rotary_dim) {
  const detail::QkNormRopeArgs a = detail::validate_fused_qk_norm_rope(
      qkv, num_heads_q, num_heads_k, num_heads_v, head_dim, eps, q_weight, k_weight, base, is_neox,
      position_ids, factor, low, high, attention_factor, rotary_dim, Device{});
  const int64_t D = a.head_dim, R = a.rotary_dim, half = R / 2;
  const int64_t width = (a.num_heads_q + a.num_heads_k + a.num_heads_v) * D;

  std::vector<double> freq(half);
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(a.base, -2.0 * static_cast<double>(i) / static_cast<double>(R));
    if (a.factor != 1.0) {
      const double hi = std::fabs(a.low - a.high) <= 1e-6 ? a.high + 0.001 : a.high;
      const double ramp = std::fmin(std::fmax((static_cast<double>(i) - a.low) / (hi - a.low), 0.0), 1.0);
      f = f / a.factor * ramp + f * (1.0 - ramp);
    }
    freq[i] = f;
  }

  std::vector<double> x(D), y(D), cos_theta(half), sin_theta(half);
  for (int64_t t = 0; t < a.num_tokens; ++t) {
    const int64_t p = a.position_ids.dtype == DType::kInt32
                          ? a.position_ids.ptr<const int32_t>()[t]
                          : a.position_ids.ptr<const int64_t>()[t];
    for (int64_t i = 0; i < half; ++i) {
      const long double theta = static_cast<long double>(p) * static_cast<long double>(freq[i]);
      cos_theta[i] = static_cast<double>(std::cos(theta));
      sin_theta[i] = static_cast<double>(std::sin(theta));
    }
    for (int64_t h = 0; h < a.num_heads_q + a.num_heads_k; ++h) {
      const TensorView& w = h < a.num_heads_q ? a.q_weight : a.k_weight;
      const int64_t offset = t * width + h * D;
      double sum_sq = 0;
      for (int64_t d = 0; d < D; ++d) {
        x[d] = detail::load_value(a.qkv, offset + d);
        sum_sq += x[d] * x[d];
      }
      const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(D) + a.eps);
      for (int64_t d = 0; d < D; ++d) y[d] = x[d] * detail::load_value(w, d) * inv_rms;
      for (int64_t i = 0; i < half; ++i) {
        const double c = cos_theta[i], s = sin_theta[i];
        const int64_t first = a.is_neox ? i : 2 * i;
        const int64_t second = a.is_neox ? i + half : 2 * i + 1;
        const double y0 = y[first], y1 = y[second];
        y[first] = (y0 * c - y1 * s) * a.attention_factor;
        y[second] = (y1 * c + y0 * s) * a.attention_factor;
      }
      for (int64_t d = 0; d < D; ++d) detail::store_value(a.qkv, offset + d, y[d]);
    }
  }
}

}  // namespace moekit::reference
