// Host-side validation helpers shared by every op. Each throws moekit::Error with a message of the
// form "<argument>: expected <what>, got <what came>".
#pragma once

#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include "moekit/status.h"
#include "moekit/tensor.h"

namespace moekit::detail {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void fail(const std::string& message,
                              ErrorKind kind = ErrorKind::InvalidArgument) {
  throw Error(kind, message);
}

// A tensor's shape for a message, formatted only when the message is built: require()'s
// arguments are evaluated on every call, success included.
struct ShapeOf {
  const TensorView& t;
};
inline ShapeOf shape_of(const TensorView& t) { return {t}; }
inline std::ostream& operator<<(std::ostream& os, ShapeOf s) {
  os << '[';
  for (int d = 0; d < s.t.ndim; ++d) os << (d ? ", " : "") << s.t.shape[d];
  return os << ']';
}

template <typename... Args>
inline void require(bool ok, const Args&... message) {
  if (!ok) fail(cat(message...));
}

void check_defined(const TensorView& t, const char* name);
void check_dtype(const TensorView& t, const char* name, DType expected);
void check_dtype_in(const TensorView& t, const char* name, std::initializer_list<DType> allowed);
void check_ndim(const TensorView& t, const char* name, int ndim);
// Exact shape; an expected extent of -1 matches anything.
void check_shape(const TensorView& t, const char* name, std::initializer_list<int64_t> shape);
void check_contiguous(const TensorView& t, const char* name);
void check_device(const TensorView& t, const char* name, Device expected);
void check_same_dtype(const TensorView& t, const char* name, const TensorView& ref,
                      const char* ref_name);
void check_range(const char* name, int64_t value, int64_t lo, int64_t hi);  // lo <= value <= hi
// Contiguous and on `device` and of `dtype`, the common trio.
void check_tensor(const TensorView& t, const char* name, DType dtype, Device device);

}  // namespace moekit::detail
