#include "tensor_arg.h"

#include <string>

#include <nanobind/stl/string.h>

#include "moekit/status.h"

namespace moekit::python {

namespace {

constexpr DType kAllDTypes[] = {
    DType::kFloat32,    DType::kFloat64,    DType::kFloat16, DType::kBFloat16,
    DType::kFloat8E4M3, DType::kFloat8E5M2, DType::kFloat8E8M0, DType::kInt8,
    DType::kUInt8,      DType::kInt32,      DType::kInt64,
};

[[noreturn]] void invalid(const std::string& message) {
  throw Error(ErrorKind::InvalidArgument, message);
}

std::string python_type_name(nb::handle h) { return nb::type_name(h.type()).c_str(); }

std::optional<DType> parse_dtype_or_none(std::string name) {
  if (name.rfind("torch.", 0) == 0) name = name.substr(6);
  for (DType d : kAllDTypes)
    if (name == dtype_name(d)) return d;
  return std::nullopt;
}

// DLPack (code, bits) -> moekit dtype. Codes per dlpack.h v1.1: 0 int, 1 uint, 2 float, 4 bfloat,
// 10 float8_e4m3fn, 12 float8_e5m2, 14 float8_e8m0fnu.
std::optional<DType> from_dlpack(nb::dlpack::dtype t) {
  using C = nb::dlpack::dtype_code;
  if (t.lanes != 1) return std::nullopt;
  switch (static_cast<C>(t.code)) {
    case C::Float:
      if (t.bits == 32) return DType::kFloat32;
      if (t.bits == 64) return DType::kFloat64;
      if (t.bits == 16) return DType::kFloat16;
      break;
    case C::Bfloat:
      if (t.bits == 16) return DType::kBFloat16;
      break;
    case C::Int:
      if (t.bits == 8) return DType::kInt8;
      if (t.bits == 32) return DType::kInt32;
      if (t.bits == 64) return DType::kInt64;
      break;
    case C::UInt:
      if (t.bits == 8) return DType::kUInt8;
      break;
    case C::Float8_E4M3FN: return DType::kFloat8E4M3;
    case C::Float8_E5M2: return DType::kFloat8E5M2;
    case C::Float8_E8M0FNU: return DType::kFloat8E8M0;
    default: break;
  }
  return std::nullopt;
}

std::string dlpack_dtype_string(nb::dlpack::dtype t) {
  return "DLPack (code " + std::to_string(t.code) + ", bits " + std::to_string(t.bits) +
         ", lanes " + std::to_string(t.lanes) + ")";
}

// An array whose dtype does not travel over DLPack (ml_dtypes' bfloat16 / float8 numpy arrays,
// fp8 torch tensors of torch versions without DLPack fp8): a same-size integer view of its bytes,
// and the dtype its `dtype` attribute names.
std::optional<std::pair<nb::object, DType>> byte_view(nb::handle obj) {
  if (!nb::hasattr(obj, "dtype") || !nb::hasattr(obj, "view")) return std::nullopt;
  nb::object dtype_attr = obj.attr("dtype");
  nb::object dtype_str = nb::steal(PyObject_Str(dtype_attr.ptr()));
  if (!dtype_str.is_valid()) return std::nullopt;
  std::optional<DType> dtype = parse_dtype_or_none(nb::cast<std::string>(dtype_str));
  if (!dtype || dtype_size(*dtype) > 2) return std::nullopt;
  const bool one_byte = dtype_size(*dtype) == 1;
  nb::object viewed;
  if (python_type_name(obj).rfind("torch.", 0) == 0) {
    nb::module_ torch = nb::module_::import_("torch");
    viewed = obj.attr("view")(torch.attr(one_byte ? "uint8" : "int16"));
  } else {
    viewed = obj.attr("view")(one_byte ? "uint8" : "uint16");
  }
  return std::make_pair(viewed, *dtype);
}

template <typename Array>
TensorView convert(Tensor& t, Array& array, const char* name, bool writable) {
  nb::handle src = t.obj;
  std::optional<DType> override_dtype;
  if (nb::isinstance<TypedArray>(src)) {
    TypedArray& typed = nb::cast<TypedArray&>(src);
    src = typed.array;
    override_dtype = typed.dtype;
  }
  nb::object holder;  // a byte view made here lives as long as the export that reads it
  if (!nb::try_cast(src, array, /*convert=*/false)) {
    PyErr_Clear();
    auto view = override_dtype ? std::nullopt : byte_view(src);
    if (view) {
      holder = view->first;
      override_dtype = view->second;
    }
    if (!view || !nb::try_cast(holder, array, false)) {
      PyErr_Clear();
      const std::string got = python_type_name(src);
      invalid(std::string(name) + ": expected a " + (writable ? "writable " : "") +
              "tensor that exports DLPack (numpy, torch, cupy, jax, ...), got " + got);
    }
  }

  DType dtype;
  const nb::dlpack::dtype dl = array.dtype();
  if (override_dtype) {
    if (dl.lanes != 1 || dl.bits != 8 * dtype_size(*override_dtype))
      invalid(std::string(name) + ": moekit.typed(..., \"" + dtype_name(*override_dtype) +
              "\") needs a " + std::to_string(8 * dtype_size(*override_dtype)) +
              "-bit element view, got " + dlpack_dtype_string(dl));
    dtype = *override_dtype;
  } else if (auto d = from_dlpack(dl)) {
    dtype = *d;
  } else {
    invalid(std::string(name) + ": unsupported element type " + dlpack_dtype_string(dl) +
            "; moekit takes float32/64, float16, bfloat16, float8_e4m3fn/e5m2/e8m0fnu, int8, "
            "uint8, int32, int64 (moekit.typed() reinterprets a same-size view)");
  }

  if (array.ndim() > TensorView::kMaxDims)
    invalid(std::string(name) + ": expected at most 6 dimensions, got " +
            std::to_string(array.ndim()));

  Device device;
  switch (array.device_type()) {
    case nb::device::cpu::value:
    case nb::device::cuda_host::value: device = {DeviceKind::kCPU, 0}; break;
    case nb::device::cuda::value:
    case nb::device::cuda_managed::value: device = {DeviceKind::kCUDA, array.device_id()}; break;
    default:
      invalid(std::string(name) + ": expected a CPU or CUDA tensor, got DLPack device type " +
              std::to_string(array.device_type()));
  }

  int64_t shape[TensorView::kMaxDims], strides[TensorView::kMaxDims];
  const int ndim = static_cast<int>(array.ndim());
  bool empty = false;
  // DLPack allows a null strides field for row-major data (newer numpy exports it that way), and
  // older nanobind versions pass it through: derive the row-major strides then.
  const int64_t* dl_strides = array.stride_ptr();
  int64_t row_major = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    shape[d] = array.shape(d);
    strides[d] = dl_strides ? dl_strides[d] : row_major;
    row_major *= shape[d];
    empty |= shape[d] == 0;
  }
  // An empty array has no layout; frameworks report arbitrary strides for it (numpy: all 0).
  return TensorView(const_cast<void*>(static_cast<const void*>(array.data())), dtype, ndim, shape,
                    empty ? nullptr : strides, device);
}

}  // namespace

DType parse_dtype(const std::string& name) {
  if (auto d = parse_dtype_or_none(name)) return *d;
  std::string known;
  for (DType d : kAllDTypes) known += std::string(known.empty() ? "" : ", ") + dtype_name(d);
  invalid("dtype: expected one of " + known + ", got \"" + name + "\"");
}

TensorView Tensor::input(const char* name) { return convert(*this, read_only, name, false); }
TensorView Tensor::output(const char* name) { return convert(*this, writable, name, true); }

TensorView input(OptionalTensor& t, const char* name) {
  return t ? t->input(name) : TensorView();
}
TensorView output(OptionalTensor& t, const char* name) {
  return t ? t->output(name) : TensorView();
}

void bind_tensor_types(nb::module_& m) {
  nb::class_<TypedArray>(m, "TypedArray",
                         "An array reinterpreted as another element type of the same size "
                         "(made by moekit.typed).")
      .def_ro("array", &TypedArray::array)
      .def_prop_ro("dtype", [](const TypedArray& t) { return std::string(dtype_name(t.dtype)); });

  m.def(
      "typed",
      [](nb::object array, const std::string& dtype) { return TypedArray{array, parse_dtype(dtype)}; },
      nb::arg("array"), nb::arg("dtype"),
      "Reinterpret ``array``'s elements as ``dtype`` (\"bfloat16\", \"float8_e4m3fn\", "
      "\"float8_e5m2\", \"float8_e8m0fnu\", ...) without copying.\n\n"
      "For dtypes that a framework cannot carry over DLPack: numpy has no bfloat16 or fp8, so pass "
      "``moekit.typed(x_uint16, \"bfloat16\")`` or ``moekit.typed(x_uint8, \"float8_e4m3fn\")``. "
      "The element size of ``array`` must equal that of ``dtype``. Arrays of ml_dtypes' bfloat16 "
      "/ float8 types and fp8 torch tensors are recognised without this wrapper.");
}

}  // namespace moekit::python
