// Python tensor arguments -> moekit::TensorView, for any framework that exports DLPack (numpy,
// torch CPU/CUDA, cupy, jax, ...). Conversion happens inside the bound function (not in the type
// caster) so that an error can name the argument, as the C++ checks do.
#pragma once

#include <cstdint>
#include <optional>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include "moekit/tensor.h"

namespace moekit::python {

namespace nb = nanobind;

// moekit.typed(array, dtype): `array` holds the bytes, `dtype` says what they are. For element types
// a framework cannot export over DLPack (numpy has no bfloat16 or fp8; older torch cannot export
// fp8): pass a uint8 / int16 / uint16 view of the same memory.
struct TypedArray {
  nb::object array;
  DType dtype;
};

// A tensor argument as it came from Python.
struct Tensor {
  nb::handle obj;
  nb::ndarray<nb::ro> read_only;  // keeps the DLPack export alive for the duration of the call
  nb::ndarray<> writable;

  TensorView input(const char* name);   // read by the op
  TensorView output(const char* name);  // written by the op (must be a writable export)
};

using OptionalTensor = std::optional<Tensor>;

// Absent optional tensors become default (undefined) views.
TensorView input(OptionalTensor& t, const char* name);
TensorView output(OptionalTensor& t, const char* name);

inline Stream stream_from(uintptr_t handle) { return Stream{reinterpret_cast<void*>(handle)}; }

DType parse_dtype(const std::string& name);  // moekit dtype names ("bfloat16", "float8_e4m3fn", ...)

void bind_tensor_types(nb::module_& m);

}  // namespace moekit::python

namespace nanobind::detail {

// Accepts any object except None; what it is gets checked when the binding converts it.
template <>
struct type_caster<moekit::python::Tensor> {
  NB_TYPE_CASTER(moekit::python::Tensor, const_name("moekit.Array"))

  template <typename Flags>
  bool from_python(handle src, Flags, cleanup_list*) noexcept {
    if (src.is_none()) return false;
    value.obj = src;
    return true;
  }
};

}  // namespace nanobind::detail
