#include "common/checks.h"

namespace moekit::detail {

void check_defined(const TensorView& t, const char* name) {
  require(t.defined(), name, ": expected a tensor, got none");
}

void check_dtype(const TensorView& t, const char* name, DType expected) {
  require(t.dtype == expected, name, ": expected ", dtype_name(expected), ", got ",
          dtype_name(t.dtype));
}

void check_dtype_in(const TensorView& t, const char* name, std::initializer_list<DType> allowed) {
  for (DType d : allowed)
    if (t.dtype == d) return;
  std::string list;
  for (DType d : allowed) list += (list.empty() ? "" : " or ") + std::string(dtype_name(d));
  fail(cat(name, ": expected ", list, ", got ", dtype_name(t.dtype)));
}

// The messages of the checks below are built only on failure: every op runs these on its hot
// path, where formatting a shape or a device name would allocate on each call.
void check_ndim(const TensorView& t, const char* name, int ndim) {
  if (t.ndim != ndim)
    fail(cat(name, ": expected ", ndim, "-D tensor, got ", t.ndim, "-D with shape ", detail::shape_of(t)));
}

void check_shape(const TensorView& t, const char* name, std::initializer_list<int64_t> shape) {
  bool ok = t.ndim == static_cast<int>(shape.size());
  int d = 0;
  for (int64_t s : shape) {
    if (ok && s >= 0 && t.shape[d] != s) ok = false;
    ++d;
  }
  if (ok) return;
  std::string want = "[";
  d = 0;
  for (int64_t s : shape) want += (d++ ? ", " : "") + (s < 0 ? std::string("*") : std::to_string(s));
  fail(cat(name, ": expected shape ", want, "], got ", detail::shape_of(t)));
}

void check_contiguous(const TensorView& t, const char* name) {
  if (!t.is_contiguous())
    fail(cat(name, ": expected a contiguous tensor, got strides that are not row-major for shape ",
             detail::shape_of(t)));
}

void check_device(const TensorView& t, const char* name, Device expected) {
  if (t.device != expected)
    fail(cat(name, ": expected a tensor on ", device_name(expected), ", got ", device_name(t.device)));
}

void check_same_dtype(const TensorView& t, const char* name, const TensorView& ref,
                      const char* ref_name) {
  require(t.dtype == ref.dtype, name, ": expected the dtype of ", ref_name, " (",
          dtype_name(ref.dtype), "), got ", dtype_name(t.dtype));
}

void check_range(const char* name, int64_t value, int64_t lo, int64_t hi) {
  require(value >= lo && value <= hi, name, ": expected a value in [", lo, ", ", hi, "], got ",
          value);
}

void check_tensor(const TensorView& t, const char* name, DType dtype, Device device) {
  check_defined(t, name);
  check_device(t, name, device);
  check_dtype(t, name, dtype);
  check_contiguous(t, name);
}

}  // namespace moekit::detail
