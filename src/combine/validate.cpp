#include "combine/validate.h"

#include "common/checks.h"

namespace moekit::detail {

void validate_moe_sum(const TensorView& input, const TensorView& output, Device device) {
  check_defined(input, "input");
  check_defined(output, "output");
  check_device(input, "input", device);
  check_device(output, "output", device);
  check_dtype_in(input, "input", {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  check_same_dtype(output, "output", input, "input");
  check_ndim(input, "input", 3);
  check_shape(output, "output", {input.size(0), input.size(2)});
  check_contiguous(input, "input");
  check_contiguous(output, "output");
}

}  // namespace moekit::detail
