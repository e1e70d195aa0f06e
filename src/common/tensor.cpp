#include "moekit/tensor.h"

#include "common/checks.h"

namespace moekit {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat8E4M3: return "float8_e4m3fn";
    case DType::kFloat8E5M2: return "float8_e5m2";
    case DType::kFloat8E8M0: return "float8_e8m0fnu";
    case DType::kInt8: return "int8";
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
  }
  return "unknown";
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kFloat64:
    case DType::kInt64: return 8;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    default: return 1;
  }
}

std::string device_name(Device device) {
  if (device.kind == DeviceKind::kCPU) return "cpu";
  return "cuda:" + std::to_string(device.index);
}

TensorView::TensorView(void* data_, DType dtype_, std::initializer_list<int64_t> shape_,
                       Device device_)
    : data(data_), dtype(dtype_), ndim(static_cast<int>(shape_.size())), device(device_) {
  if (ndim > kMaxDims) throw Error(ErrorKind::InvalidArgument, "TensorView: more than 6 dims");
  int i = 0;
  for (int64_t s : shape_) shape[i++] = s;
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
}

TensorView::TensorView(void* data_, DType dtype_, int ndim_, const int64_t* shape_,
                       const int64_t* strides_, Device device_)
    : data(data_), dtype(dtype_), ndim(ndim_), device(device_) {
  if (ndim < 0 || ndim > kMaxDims) throw Error(ErrorKind::InvalidArgument, "TensorView: ndim out of [0, 6]");
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    shape[d] = shape_[d];
    strides[d] = strides_ ? strides_[d] : stride;
    stride *= shape[d];
  }
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  int64_t expected = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

std::string TensorView::shape_string() const { return detail::cat(detail::shape_of(*this)); }

}  // namespace moekit
