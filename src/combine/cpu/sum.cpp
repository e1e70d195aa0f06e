// CPU moe_sum / moe_sum_reduce: one accumulator row per token (fp32, fp64 for fp64), threads over
// tokens; the scale multiplies the finished sum (exact identity for a scale of 1).
#include <vector>

#include "combine/cpu/kernels.h"
#include "combine/cpu/rows.h"
#include "common/numeric.h"
#include "common/parallel.h"
#include "moekit/cpu.h"

namespace moekit::cpu {
namespace {

template <typename T, typename Acc, Acc (*Load)(T), T (*Store)(Acc)>
void sum_rows(const T* in, T* out, int64_t M, int64_t k, int64_t H, Acc scale) {
  detail::parallel_for(M, 1, [&](int64_t begin, int64_t end) {
    std::vector<Acc> acc(H);
    for (int64_t m = begin; m < end; ++m) {
      const T* row = in + m * k * H;
      for (int64_t h = 0; h < H; ++h) acc[h] = Acc(0);
      for (int64_t j = 0; j < k; ++j)
        for (int64_t h = 0; h < H; ++h) acc[h] += Load(row[j * H + h]);
      for (int64_t h = 0; h < H; ++h) out[m * H + h] = Store(acc[h] * scale);
    }
  });
}

void sum_rows_avx2(const TensorView& input, const TensorView& output, float scale) {
  const int64_t M = input.size(0), k = input.size(1), H = input.size(2);
  const size_t elem = dtype_size(input.dtype);
  const char* in = static_cast<const char*>(input.data);
  char* out = static_cast<char*>(output.data);
  const bool streamed = input.nbytes() + output.nbytes() >= detail::kStreamingMinBytes;
  auto token_rows = [&](int64_t m, const void** rows, float*) {
    for (int64_t j = 0; j < k; ++j) rows[j] = in + (m * k + j) * H * elem;
    return k;
  };
  detail::parallel_for(M, 1, [&](int64_t begin, int64_t end) {
    avx2::sum_tokens(begin, end, k, false, streamed, input.dtype, scale, out, H, token_rows);
  });
}

template <typename T>
T identity(T v) { return v; }

void sum_scaled(const TensorView& input, const TensorView& output, double scale) {
  const int64_t M = input.size(0), k = input.size(1), H = input.size(2);
  const float scale32 = static_cast<float>(scale);
  if (input.dtype != DType::kFloat64 && cpu_isa() >= CpuIsa::kAvx2) {
    sum_rows_avx2(input, output, scale32);
    return;
  }
  switch (input.dtype) {
    case DType::kFloat64:
      sum_rows<double, double, identity<double>, identity<double>>(
          input.ptr<double>(), output.ptr<double>(), M, k, H, scale);
      break;
    case DType::kFloat32:
      sum_rows<float, float, identity<float>, identity<float>>(input.ptr<float>(),
                                                               output.ptr<float>(), M, k, H, scale32);
      break;
    case DType::kFloat16:
      sum_rows<uint16_t, float, numeric::half_to_float, numeric::float_to_half>(
          input.ptr<uint16_t>(), output.ptr<uint16_t>(), M, k, H, scale32);
      break;
    default:
      sum_rows<uint16_t, float, numeric::bf16_to_float, numeric::float_to_bf16>(
          input.ptr<uint16_t>(), output.ptr<uint16_t>(), M, k, H, scale32);
  }
}

}  // namespace

void moe_sum(const TensorView& input, const TensorView& output) { sum_scaled(input, output, 1.0); }

void moe_sum_reduce(const TensorView& input, const TensorView& output, double routed_scaling_factor) {
  sum_scaled(input, output, routed_scaling_factor);
}

}  // namespace moekit::cpu
