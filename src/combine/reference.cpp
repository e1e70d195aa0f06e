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

}  // namespace moekit::reference
