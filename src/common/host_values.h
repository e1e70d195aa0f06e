// Element access by run-time dtype for host code that is not speed-critical (the oracle, packing,
// tests): values come out as double and are stored rounded to the tensor's dtype (RNE).
#pragma once

#include <cstdint>

#include "common/numeric.h"
#include "moekit/tensor.h"

namespace moekit::detail {

inline double load_value(const TensorView& t, int64_t flat_index) {
  const unsigned char* p = static_cast<const unsigned char*>(t.data);
  switch (t.dtype) {
    case DType::kFloat32: return reinterpret_cast<const float*>(p)[flat_index];
    case DType::kFloat64: return reinterpret_cast<const double*>(p)[flat_index];
    case DType::kFloat16: return numeric::half_to_float(reinterpret_cast<const uint16_t*>(p)[flat_index]);
    case DType::kBFloat16: return numeric::bf16_to_float(reinterpret_cast<const uint16_t*>(p)[flat_index]);
    case DType::kFloat8E4M3: return numeric::e4m3_to_float(p[flat_index]);
    case DType::kFloat8E5M2: return numeric::e5m2_to_float(p[flat_index]);
    case DType::kFloat8E8M0: return numeric::e8m0_to_float(p[flat_index]);
    case DType::kInt8: return reinterpret_cast<const int8_t*>(p)[flat_index];
    case DType::kUInt8: return p[flat_index];
    case DType::kInt32: return reinterpret_cast<const int32_t*>(p)[flat_index];
    case DType::kInt64: return static_cast<double>(reinterpret_cast<const int64_t*>(p)[flat_index]);
  }
  return 0;
}

inline void store_value(const TensorView& t, int64_t flat_index, double v) {
  unsigned char* p = static_cast<unsigned char*>(t.data);
  float f = static_cast<float>(v);
  switch (t.dtype) {
    case DType::kFloat32: reinterpret_cast<float*>(p)[flat_index] = f; break;
    case DType::kFloat64: reinterpret_cast<double*>(p)[flat_index] = v; break;
    case DType::kFloat16: reinterpret_cast<uint16_t*>(p)[flat_index] = numeric::float_to_half(f); break;
    case DType::kBFloat16: reinterpret_cast<uint16_t*>(p)[flat_index] = numeric::float_to_bf16(f); break;
    case DType::kFloat8E4M3: p[flat_index] = numeric::float_to_e4m3(f); break;
    case DType::kFloat8E5M2: p[flat_index] = numeric::float_to_e5m2(f); break;
    case DType::kFloat8E8M0: p[flat_index] = numeric::float_to_e8m0_ceil(f); break;
    case DType::kInt8: reinterpret_cast<int8_t*>(p)[flat_index] = static_cast<int8_t>(v); break;
    case DType::kUInt8: p[flat_index] = static_cast<uint8_t>(v); break;
    case DType::kInt32: reinterpret_cast<int32_t*>(p)[flat_index] = static_cast<int32_t>(v); break;
    case DType::kInt64: reinterpret_cast<int64_t*>(p)[flat_index] = static_cast<int64_t>(v); break;
  }
}

}  // namespace moekit::detail
