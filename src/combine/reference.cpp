// The combine oracle: plain loops, fp64 accumulation, one rounding at the store.
#include "combine/validate.h"
#include "common/host_values.h"
#include "moekit/combine.h"

namespace moekit::reference {

void moe_sum(TensorView input, TensorView output) {
  detail::validate_moe_sum(input, output, Device{});
  const int64_t M = input.size(0), k = input.size(1), H = input.size(2);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += detail::load_value(input, (m * k + j) * H + h);
      detail::store_value(output, m * H + h, acc);
    }
}

void moe_sum_reduce(TensorView input, TensorView output, double routed_scaling_factor) {
  detail::validate_moe_sum_reduce(input, output, routed_scaling_factor, Device{});
  const int64_t M = input.size(0), k = input.size(1), H = input.size(2);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += detail::load_value(input, (m * k + j) * H + h);
      detail::store_value(output, m * H + h, routed_scaling_factor * acc);
    }
}

void apply_shuffle_mul_sum(TensorView input, TensorView output, TensorView permutation,
                           TensorView factors) {
  detail::validate_apply_shuffle_mul_sum(input, output, permutation, factors, Device{});
  const int64_t M = output.size(0), H = output.size(1), R = input.size(0);
  if (M == 0) return;
  const int64_t k = permutation.numel() / M;
  const int32_t* perm = permutation.ptr<int32_t>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t src = perm[m * k + j];
        if (src < 0 || src >= R) continue;
        const double f = factors.defined() ? detail::load_value(factors, m * k + j) : 1.0;
        acc += f * detail::load_value(input, src * H + h);
      }
      detail::store_value(output, m * H + h, acc);
    }
}

}  // namespace moekit::reference
