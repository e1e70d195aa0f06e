// CPU moe_sum: one fp32 accumulator row per token, threads over tokens.
#include <vector>

#include "combine/cpu/kernels.h"
#include "common/numeric.h"
#include "common/parallel.h"

namespace moekit::cpu {
namespace {

template <typename T, float (*Load)(T), T (*Store)(float)>
void sum_rows(const T* in, T* out, int64_t M, int64_t k, int64_t H) {
  detail::parallel_for(M, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(H);
    for (int64_t m = begin; m < end; ++m) {
      const T* row = in + m * k * H;
      for (int64_t h = 0; h < H; ++h) acc[h] = Load(row[h]);
      for (int64_t j = 1; j < k; ++j)
        for (int64_t h = 0; h < H; ++h) acc[h] += Load(row[j * H + h]);
      for (int64_t h = 0; h < H; ++h) out[m * H + h] = Store(acc[h]);
    }
  });
}

float load_f32(float v) { return v; }
float store_f32(float v) { return v; }

}  // namespace

void moe_sum(const TensorView& input, const TensorView& output) {
  const int64_t M = input.size(0), k = input.size(1), H = input.size(2);
  switch (input.dtype) {
    case DType::kFloat32:
      sum_rows<float, load_f32, store_f32>(input.ptr<float>(), output.ptr<float>(), M, k, H);
      break;
    case DType::kFloat16:
      sum_rows<uint16_t, numeric::half_to_float, numeric::float_to_half>(
          input.ptr<uint16_t>(), output.ptr<uint16_t>(), M, k, H);
      break;
    default:
      sum_rows<uint16_t, numeric::bf16_to_float, numeric::float_to_bf16>(
          input.ptr<uint16_t>(), output.ptr<uint16_t>(), M, k, H);
  }
}

}  // namespace moekit::cpu
