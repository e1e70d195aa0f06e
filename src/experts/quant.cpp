// CPU quantise / dequantise ops of every expert format (include/moekit/quant.h). Plain loops over
// rows and groups; the per-group math lives in quant_math.h, shared with the oracle.
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/host_values.h"
#include "experts/quant_math.h"
#include "moekit/quant.h"

namespace moekit {
namespace {

using detail::cat;
using detail::require;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_shape_exact(const TensorView& t, const char* name, const std::vector<int64_t>& shape) {
  bool ok = t.ndim == static_cast<int>(shape.size());
  for (int d = 0; ok && d < t.ndim; ++d) ok = t.shape[d] == shape[d];
  require(ok, name, ": expected shape ", shape_text(shape), ", got ", detail::shape_of(t));
}

void check_float_tensor(const TensorView& t, const char* name) {
  detail::check_defined(t, name);
  detail::check_device(t, name, Device{});
  detail::check_contiguous(t, name);
  detail::check_dtype_in(t, name, {DType::kFloat32, DType::kBFloat16, DType::kFloat16});
}

// The input shape with its last dimension replaced (or dropped when last < 0).
std::vector<int64_t> with_last(const TensorView& t, int64_t last) {
  std::vector<int64_t> s(t.shape, t.shape + t.ndim);
  if (last < 0)
    s.pop_back();
  else
    s.back() = last;
  return s;
}

// Rows (all leading dims flattened) and columns of a tensor of rank >= 1.
struct RowsCols {
  int64_t rows, cols;
};

RowsCols rows_cols(const TensorView& t, const char* name) {
  require(t.ndim >= 1, name, ": expected a tensor of rank >= 1, got a 0-D tensor");
  int64_t rows = 1;
  for (int d = 0; d + 1 < t.ndim; ++d) rows *= t.shape[d];
  return {rows, t.shape[t.ndim - 1]};
}

void load_row(const TensorView& t, int64_t offset, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(detail::load_value(t, offset + i));
}

uint8_t* bytes(const TensorView& t) { return static_cast<uint8_t*>(t.data); }

void check_group(const char* name, int64_t group) {
  require(group >= 1, name, ": expected a value >= 1, got ", group);
}

// For [R, C] -> 1 matrix, [E, R, C] -> E matrices.
int64_t matrix_count(const TensorView& t, const char* name) {
  require(t.ndim == 2 || t.ndim == 3, name, ": expected a 2-D [R, C] or 3-D [E, R, C] tensor, got ",
          t.ndim, "-D with shape ", detail::shape_of(t));
  return t.ndim == 3 ? t.shape[0] : 1;
}

}  // namespace

// ---- FP8 per token group ----

void quantize_fp8_per_token_group(TensorView input, TensorView output, TensorView scale,
                                  int group_size, float eps) {
  check_float_tensor(input, "input");
  check_group("group_size", group_size);
  require(eps > 0.f, "eps: expected a value > 0, got ", eps);
  auto [rows, cols] = rows_cols(input, "input");
  detail::check_tensor(output, "output", DType::kFloat8E4M3, Device{});
  check_shape_exact(output, "output", with_last(input, cols));
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  const int64_t groups = ceil_div(cols, group_size);
  check_shape_exact(scale, "scale", with_last(input, groups));
  std::vector<float> x(cols);
  for (int64_t r = 0; r < rows; ++r) {
    load_row(input, r * cols, cols, x.data());
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * group_size, n = std::min<int64_t>(group_size, cols - k0);
      scale.ptr<float>()[r * groups + g] =
          detail::quantize_fp8_group(x.data() + k0, n, eps, bytes(output) + r * cols + k0);
    }
  }
}

void dequantize_fp8_per_token_group(TensorView input, TensorView scale, TensorView output,
                                    int group_size) {
  detail::check_tensor(input, "input", DType::kFloat8E4M3, Device{});
  check_group("group_size", group_size);
  auto [rows, cols] = rows_cols(input, "input");
  const int64_t groups = ceil_div(cols, group_size);
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", with_last(input, groups));
  check_float_tensor(output, "output");
  check_shape_exact(output, "output", with_last(input, cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      detail::store_value(output, r * cols + k,
                          static_cast<double>(numeric::e4m3_to_float(bytes(input)[r * cols + k]) *
                                              scale.ptr<float>()[r * groups + k / group_size]));
}

// ---- FP8 2-D blocks ----

namespace {
std::vector<int64_t> fp8_block_scale_shape(const TensorView& t, int block_n, int block_k) {
  std::vector<int64_t> s;
  if (t.ndim == 3) s.push_back(t.shape[0]);
  s.push_back(ceil_div(t.size(-2), block_n));
  s.push_back(ceil_div(t.size(-1), block_k));
  return s;
}
}  // namespace

void quantize_fp8_block(TensorView input, TensorView output, TensorView scale, int block_n,
                        int block_k, float eps) {
  check_float_tensor(input, "input");
  const int64_t E = matrix_count(input, "input");
  check_group("block_n", block_n);
  check_group("block_k", block_k);
  require(eps > 0.f, "eps: expected a value > 0, got ", eps);
  detail::check_tensor(output, "output", DType::kFloat8E4M3, Device{});
  check_shape_exact(output, "output", with_last(input, input.size(-1)));
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", fp8_block_scale_shape(input, block_n, block_k));
  const int64_t R = input.size(-2), C = input.size(-1);
  const int64_t nb = ceil_div(R, block_n), kb = ceil_div(C, block_k);
  std::vector<float> block, x(C);
  std::vector<uint8_t> q;
  for (int64_t e = 0; e < E; ++e)
    for (int64_t bi = 0; bi < nb; ++bi)
      for (int64_t bj = 0; bj < kb; ++bj) {
        const int64_t r0 = bi * block_n, rn = std::min<int64_t>(block_n, R - r0);
        const int64_t k0 = bj * block_k, kn = std::min<int64_t>(block_k, C - k0);
        block.resize(rn * kn);
        q.resize(rn * kn);
        for (int64_t i = 0; i < rn; ++i) load_row(input, (e * R + r0 + i) * C + k0, kn, &block[i * kn]);
        scale.ptr<float>()[(e * nb + bi) * kb + bj] =
            detail::quantize_fp8_group(block.data(), rn * kn, eps, q.data());
        for (int64_t i = 0; i < rn; ++i)
          std::copy(&q[i * kn], &q[i * kn] + kn, bytes(output) + (e * R + r0 + i) * C + k0);
      }
}

void dequantize_fp8_block(TensorView input, TensorView scale, TensorView output, int block_n,
                          int block_k) {
  detail::check_tensor(input, "input", DType::kFloat8E4M3, Device{});
  const int64_t E = matrix_count(input, "input");
  check_group("block_n", block_n);
  check_group("block_k", block_k);
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", fp8_block_scale_shape(input, block_n, block_k));
  check_float_tensor(output, "output");
  check_shape_exact(output, "output", with_last(input, input.size(-1)));
  const int64_t R = input.size(-2), C = input.size(-1);
  const int64_t nb = ceil_div(R, block_n), kb = ceil_div(C, block_k);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k = 0; k < C; ++k) {
        const int64_t i = (e * R + r) * C + k;
        const float s = scale.ptr<float>()[(e * nb + r / block_n) * kb + k / block_k];
        detail::store_value(output, i, static_cast<double>(numeric::e4m3_to_float(bytes(input)[i]) * s));
      }
}

// ---- INT8 per row ----

void quantize_int8_per_row(TensorView input, TensorView output, TensorView scale) {
  check_float_tensor(input, "input");
  auto [rows, cols] = rows_cols(input, "input");
  detail::check_tensor(output, "output", DType::kInt8, Device{});
  check_shape_exact(output, "output", with_last(input, cols));
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", with_last(input, -1));
  std::vector<float> x(cols);
  for (int64_t r = 0; r < rows; ++r) {
    load_row(input, r * cols, cols, x.data());
    scale.ptr<float>()[r] =
        detail::quantize_int8_row(x.data(), cols, output.ptr<int8_t>() + r * cols);
  }
}

void dequantize_int8_per_row(TensorView input, TensorView scale, TensorView output) {
  detail::check_tensor(input, "input", DType::kInt8, Device{});
  auto [rows, cols] = rows_cols(input, "input");
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", with_last(input, -1));
  check_float_tensor(output, "output");
  check_shape_exact(output, "output", with_last(input, cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k)
      detail::store_value(output, r * cols + k,
                          static_cast<double>(input.ptr<int8_t>()[r * cols + k] * scale.ptr<float>()[r]));
}

// ---- INT4 groups with zero points ----

namespace {
void check_int4_group(const TensorView& t, int group_size, int64_t cols) {
  check_group("group_size", group_size);
  require(cols % group_size == 0, "group_size: expected a divisor of the last dimension (", cols,
          ") of ", detail::shape_of(t), ", got ", group_size);
}
}  // namespace

void quantize_int4_group(TensorView input, TensorView output, TensorView scale, TensorView zero,
                         int group_size) {
  check_float_tensor(input, "input");
  auto [rows, cols] = rows_cols(input, "input");
  check_int4_group(input, group_size, cols);
  const int64_t groups = cols / group_size, packed = ceil_div(cols, 2);
  detail::check_tensor(output, "output", DType::kUInt8, Device{});
  check_shape_exact(output, "output", with_last(input, packed));
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", with_last(input, groups));
  detail::check_tensor(zero, "zero", DType::kUInt8, Device{});
  check_shape_exact(zero, "zero", with_last(input, groups));
  std::vector<float> x(cols);
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    load_row(input, r * cols, cols, x.data());
    for (int64_t g = 0; g < groups; ++g)
      detail::quantize_int4_group(x.data() + g * group_size, group_size, codes.data() + g * group_size,
                                  scale.ptr<float>() + r * groups + g, bytes(zero) + r * groups + g);
    detail::pack_nibbles(codes.data(), cols, bytes(output) + r * packed);
  }
}

void dequantize_int4_group(TensorView input, TensorView scale, TensorView zero, TensorView output,
                           int group_size) {
  detail::check_tensor(input, "input", DType::kUInt8, Device{});
  check_float_tensor(output, "output");
  auto [rows, cols] = rows_cols(output, "output");
  check_int4_group(output, group_size, cols);
  const int64_t groups = cols / group_size, packed = ceil_div(cols, 2);
  check_shape_exact(input, "input", with_last(output, packed));
  detail::check_tensor(scale, "scale", DType::kFloat32, Device{});
  check_shape_exact(scale, "scale", with_last(output, groups));
  detail::check_tensor(zero, "zero", DType::kUInt8, Device{});
  check_shape_exact(zero, "zero", with_last(output, groups));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) {
      const int64_t g = r * groups + k / group_size;
      const int q = detail::nibble(bytes(input) + r * packed, k);
      const float z = bytes(zero)[g];
      detail::store_value(output, r * cols + k, static_cast<double>((q - z) * scale.ptr<float>()[g]));
    }
}

// ---- NVFP4 ----

namespace {
void check_global_scale(const TensorView& gs, const char* name, int64_t E) {
  detail::check_tensor(gs, name, DType::kFloat32, Device{});
  check_shape_exact(gs, name, {E});
}
}  // namespace

void nvfp4_global_scale(TensorView input, TensorView global_scale) {
  check_float_tensor(input, "input");
  const int64_t E = matrix_count(input, "input");
  check_global_scale(global_scale, "global_scale", E);
  const int64_t per = input.size(-2) * input.size(-1);
  std::vector<float> x(per);
  for (int64_t e = 0; e < E; ++e) {
    load_row(input, e * per, per, x.data());
    float amax;
    float gs;
    if (!detail::finite_amax(x.data(), per, &amax))
      gs = detail::quiet_nan();
    else
      gs = amax == 0.f ? 1.f : detail::kE4m3Max * detail::kE2m1Max / amax;
    global_scale.ptr<float>()[e] = gs;
  }
}

void quantize_nvfp4(TensorView input, TensorView global_scale, TensorView output,
                    TensorView block_scale) {
  check_float_tensor(input, "input");
  const int64_t E = matrix_count(input, "input");
  check_global_scale(global_scale, "global_scale", E);
  const int64_t R = input.size(-2), C = input.size(-1);
  const int64_t groups = ceil_div(C, detail::kNvfp4Group), packed = ceil_div(C, 2);
  detail::check_tensor(output, "output", DType::kUInt8, Device{});
  check_shape_exact(output, "output", with_last(input, packed));
  detail::check_tensor(block_scale, "block_scale", DType::kFloat8E4M3, Device{});
  check_shape_exact(block_scale, "block_scale", with_last(input, groups));
  std::vector<float> x(C);
  std::vector<uint8_t> codes(C);
  for (int64_t e = 0; e < E; ++e) {
    const float gs = global_scale.ptr<float>()[e];
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = e * R + r;
      load_row(input, row * C, C, x.data());
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * detail::kNvfp4Group;
        const int64_t n = std::min<int64_t>(detail::kNvfp4Group, C - k0);
        bytes(block_scale)[row * groups + g] =
            detail::quantize_nvfp4_group(x.data() + k0, n, gs, codes.data() + k0);
      }
      detail::pack_nibbles(codes.data(), C, bytes(output) + row * packed);
    }
  }
}

void dequantize_nvfp4(TensorView input, TensorView block_scale, TensorView global_scale,
                      TensorView output) {
  detail::check_tensor(input, "input", DType::kUInt8, Device{});
  check_float_tensor(output, "output");
  const int64_t E = matrix_count(output, "output");
  const int64_t R = output.size(-2), C = output.size(-1);
  const int64_t groups = ceil_div(C, detail::kNvfp4Group), packed = ceil_div(C, 2);
  check_shape_exact(input, "input", with_last(output, packed));
  detail::check_tensor(block_scale, "block_scale", DType::kFloat8E4M3, Device{});
  check_shape_exact(block_scale, "block_scale", with_last(output, groups));
  check_global_scale(global_scale, "global_scale", E);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = e * R + r;
      for (int64_t k = 0; k < C; ++k) {
        const double q = numeric::e2m1_to_float(detail::nibble(bytes(input) + row * packed, k));
        const double sf = numeric::e4m3_to_float(bytes(block_scale)[row * groups + k / detail::kNvfp4Group]);
        detail::store_value(output, row * C + k, q * sf / global_scale.ptr<float>()[e]);
      }
    }
}

// ---- MXFP8 / MXFP4 ----

namespace {

template <bool kFp4>
void quantize_mx(TensorView input, TensorView output, TensorView scale) {
  check_float_tensor(input, "input");
  auto [rows, cols] = rows_cols(input, "input");
  const int64_t groups = ceil_div(cols, detail::kMxGroup);
  const int64_t width = kFp4 ? ceil_div(cols, 2) : cols;
  detail::check_tensor(output, "output", kFp4 ? DType::kUInt8 : DType::kFloat8E4M3, Device{});
  check_shape_exact(output, "output", with_last(input, width));
  detail::check_tensor(scale, "scale", DType::kFloat8E8M0, Device{});
  check_shape_exact(scale, "scale", with_last(input, groups));
  std::vector<float> x(cols);
  std::vector<uint8_t> codes(cols);
  for (int64_t r = 0; r < rows; ++r) {
    load_row(input, r * cols, cols, x.data());
    uint8_t* q = kFp4 ? codes.data() : bytes(output) + r * cols;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t k0 = g * detail::kMxGroup, n = std::min<int64_t>(detail::kMxGroup, cols - k0);
      bytes(scale)[r * groups + g] = kFp4 ? detail::quantize_mxfp4_group(x.data() + k0, n, q + k0)
                                          : detail::quantize_mxfp8_group(x.data() + k0, n, q + k0);
    }
    if (kFp4) detail::pack_nibbles(codes.data(), cols, bytes(output) + r * width);
  }
}

template <bool kFp4>
void dequantize_mx(TensorView input, TensorView scale, TensorView output) {
  detail::check_tensor(input, "input", kFp4 ? DType::kUInt8 : DType::kFloat8E4M3, Device{});
  check_float_tensor(output, "output");
  auto [rows, cols] = rows_cols(output, "output");
  const int64_t groups = ceil_div(cols, detail::kMxGroup);
  const int64_t width = kFp4 ? ceil_div(cols, 2) : cols;
  check_shape_exact(input, "input", with_last(output, width));
  detail::check_tensor(scale, "scale", DType::kFloat8E8M0, Device{});
  check_shape_exact(scale, "scale", with_last(output, groups));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < cols; ++k) {
      const uint8_t* row = bytes(input) + r * width;
      const double v = kFp4 ? numeric::e2m1_to_float(detail::nibble(row, k)) : numeric::e4m3_to_float(row[k]);
      const double s = numeric::e8m0_to_float(bytes(scale)[r * groups + k / detail::kMxGroup]);
      detail::store_value(output, r * cols + k, v * s);
    }
}

}  // namespace

void quantize_mxfp8(TensorView input, TensorView output, TensorView scale) {
  quantize_mx<false>(input, output, scale);
}
void dequantize_mxfp8(TensorView input, TensorView scale, TensorView output) {
  dequantize_mx<false>(input, scale, output);
}
void quantize_mxfp4(TensorView input, TensorView output, TensorView scale) {
  quantize_mx<true>(input, output, scale);
}
void dequantize_mxfp4(TensorView input, TensorView scale, TensorView output) {
  dequantize_mx<true>(input, scale, output);
}

}  // namespace moekit
