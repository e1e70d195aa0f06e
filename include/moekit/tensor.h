// Core types: dtypes, devices, streams and a non-owning tensor view.
//
// A TensorView is a pointer plus dtype, shape, strides (in elements) and the device it lives on.
// It owns nothing; the caller keeps the memory alive for the duration of the call. An "absent"
// optional tensor is a default-constructed view (data == nullptr, ndim == 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "moekit/status.h"

namespace moekit {

enum class DType : uint8_t {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kFloat8E4M3,  // e4m3fn: no infinities, max 448, S.1111.111 = NaN; also the NVFP4 block-scale type
  kFloat8E5M2,
  kFloat8E8M0,  // unsigned power-of-two scale 2^(u-127), 0xFF = NaN (MX formats)
  kInt8,
  kUInt8,       // bytes; packed 4-bit data (two values per byte, element 2j in the low nibble)
  kInt32,
  kInt64,
};

MOEKIT_API const char* dtype_name(DType dtype);
MOEKIT_API size_t dtype_size(DType dtype);

enum class DeviceKind : uint8_t { kCPU, kCUDA };

struct Device {
  DeviceKind kind = DeviceKind::kCPU;
  int index = 0;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

MOEKIT_API std::string device_name(Device device);

// The stream an op runs on: a cudaStream_t for CUDA tensors (nullptr = legacy default stream);
// ignored for CPU tensors.
struct Stream {
  void* handle = nullptr;
};

struct MOEKIT_API TensorView {
  static constexpr int kMaxDims = 6;

  void* data = nullptr;
  DType dtype = DType::kFloat32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements
  Device device = {};

  TensorView() = default;
  // Contiguous (row-major) view.
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device = {});
  TensorView(void* data, DType dtype, int ndim, const int64_t* shape, const int64_t* strides,
             Device device = {});

  bool defined() const { return data != nullptr || ndim > 0; }
  int64_t numel() const;
  int64_t size(int dim) const { return shape[dim < 0 ? dim + ndim : dim]; }
  int64_t stride(int dim) const { return strides[dim < 0 ? dim + ndim : dim]; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  std::string shape_string() const;  // "[3, 4]"

  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

}  // namespace moekit
