// CPU apply_shuffle_mul_sum: gather the k rows of each token through the permutation, weight them
// and sum in fp32; threads over tokens.
#include <algorithm>
#include <vector>

#include "combine/cpu/kernels.h"
#include "combine/cpu/rows.h"
#include "common/numeric.h"
#include "common/parallel.h"
#include "moekit/cpu.h"

namespace moekit::cpu {
namespace {

float load_f32(float v) { return v; }
float store_f32(float v) { return v; }

template <typename T, float (*Load)(T), T (*Store)(float), typename F, float (*LoadFactor)(F)>
void shuffle_mul_sum(const T* in, int64_t R, T* out, int64_t M, int64_t H, const int32_t* perm,
                     int64_t k, const F* factors) {
  detail::parallel_for(M, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(H);
    for (int64_t m = begin; m < end; ++m) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t src = perm[m * k + j];
        if (src < 0 || src >= R) continue;
        const float f = factors ? LoadFactor(factors[m * k + j]) : 1.f;
        const T* row = in + src * H;
        for (int64_t h = 0; h < H; ++h) acc[h] += f * Load(row[h]);
      }
      for (int64_t h = 0; h < H; ++h) out[m * H + h] = Store(acc[h]);
    }
  });
}

template <typename T, float (*Load)(T), T (*Store)(float)>
void dispatch_factors(const TensorView& input, const TensorView& output,
                      const TensorView& permutation, const TensorView& factors) {
  const int64_t M = output.size(0), H = output.size(1), R = input.size(0);
  const int64_t k = permutation.numel() / M;
  const T* in = input.ptr<T>();
  T* out = output.ptr<T>();
  const int32_t* perm = permutation.ptr<int32_t>();
  if (factors.defined() && factors.dtype == DType::kFloat32 && input.dtype != DType::kFloat32) {
    shuffle_mul_sum<T, Load, Store, float, load_f32>(in, R, out, M, H, perm, k, factors.ptr<float>());
  } else {
    shuffle_mul_sum<T, Load, Store, T, Load>(in, R, out, M, H, perm, k,
                                             factors.defined() ? factors.ptr<T>() : nullptr);
  }
}

void shuffle_mul_sum_avx2(const TensorView& input, const TensorView& output,
                          const TensorView& permutation, const TensorView& factors) {
  const int64_t M = output.size(0), H = output.size(1), R = input.size(0);
  const int64_t k = permutation.numel() / M;
  const size_t elem = dtype_size(output.dtype);
  const char* in = static_cast<const char*>(input.data);
  char* out = static_cast<char*>(output.data);
  const int32_t* perm = permutation.ptr<int32_t>();
  const bool streamed =
      M * k * H * static_cast<int64_t>(elem) + output.nbytes() >= detail::kStreamingMinBytes;
  // Token m's valid source rows and their weights; returns how many.
  auto gather = [&](int64_t m, const void** rows, float* weights) {
    int64_t n = 0;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t src = perm[m * k + j];
      if (src < 0 || src >= R) continue;
      float f = 1.f;
      if (factors.defined()) {
        const int64_t pair = m * k + j;
        switch (factors.dtype) {
          case DType::kFloat16: f = numeric::half_to_float(factors.ptr<uint16_t>()[pair]); break;
          case DType::kBFloat16: f = numeric::bf16_to_float(factors.ptr<uint16_t>()[pair]); break;
          default: f = factors.ptr<float>()[pair];
        }
      }
      rows[n] = in + src * H * elem;
      weights[n++] = f;
    }
    return n;
  };
  detail::parallel_for(M, 1, [&](int64_t begin, int64_t end) {
    avx2::sum_tokens(begin, end, k, true, streamed, output.dtype, 1.f, out, H, gather);
  });
}

}  // namespace

void apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                           const TensorView& permutation, const TensorView& factors) {
  if (cpu_isa() >= CpuIsa::kAvx2) {
    shuffle_mul_sum_avx2(input, output, permutation, factors);
    return;
  }
  switch (output.dtype) {
    case DType::kFloat32:
      dispatch_factors<float, load_f32, store_f32>(input, output, permutation, factors);
      break;
    case DType::kFloat16:
      dispatch_factors<uint16_t, numeric::half_to_float, numeric::float_to_half>(
          input, output, permutation, factors);
      break;
    default:
      dispatch_factors<uint16_t, numeric::bf16_to_float, numeric::float_to_bf16>(
          input, output, permutation, factors);
  }
}

}  // namespace moekit::cpu
