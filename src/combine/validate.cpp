#include "combine/validate.h"

#include <cmath>

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

void validate_moe_sum_reduce(const TensorView& input, const TensorView& output,
                             double routed_scaling_factor, Device device) {
  check_defined(input, "input");
  check_defined(output, "output");
  check_device(input, "input", device);
  check_device(output, "output", device);
  check_dtype_in(input, "input",
                 {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64});
  check_same_dtype(output, "output", input, "input");
  check_ndim(input, "input", 3);
  check_shape(output, "output", {input.size(0), input.size(2)});
  check_contiguous(input, "input");
  check_contiguous(output, "output");
  require(std::isfinite(routed_scaling_factor),
          "routed_scaling_factor: expected a finite value, got ", routed_scaling_factor);
}

void validate_apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                                    const TensorView& permutation, const TensorView& factors,
                                    Device device) {
  check_defined(input, "input");
  check_defined(output, "output");
  check_device(input, "input", device);
  check_device(output, "output", device);
  check_dtype_in(output, "output", {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  check_same_dtype(input, "input", output, "output");
  check_ndim(input, "input", 2);
  check_ndim(output, "output", 2);
  check_contiguous(input, "input");
  check_contiguous(output, "output");
  require(input.size(1) == output.size(1), "input: expected ", output.size(1),
          " columns (the H of output), got shape ", detail::shape_of(input));
  check_tensor(permutation, "permutation", DType::kInt32, device);
  const int64_t M = output.size(0), pairs = permutation.numel();
  if (M == 0) {
    require(pairs == 0, "permutation: expected no elements for an output of 0 rows, got ", pairs);
  } else {
    require(pairs % M == 0 && pairs > 0, "permutation: expected M * k elements for M = ", M,
            " output rows, got ", pairs);
  }
  if (factors.defined()) {
    check_defined(factors, "factors");
    check_device(factors, "factors", device);
    if (factors.dtype != DType::kFloat32)
      check_same_dtype(factors, "factors (fp32 or the output dtype)", output, "output");
    check_contiguous(factors, "factors");
    require(factors.numel() == pairs, "factors: expected ", pairs,
            " elements (one per permutation entry), got shape ", detail::shape_of(factors));
  }
}

}  // namespace moekit::detail
