#include <type_traits>

#include "combine/cuda/launcher.h"
#include "combine/cuda/moe_sum.cuh"
#include "combine/cuda/shuffle_mul_sum.cuh"
#include "common/cuda_check.h"
#include "common/dependent_launch.cuh"

namespace moekit::cuda {
namespace {

constexpr int kThreads = 256;
// Calls launch(std::integral_constant<int, V>) for the pack width `vec` (only widths of at most
// 16 bytes are instantiated).
template <typename T, typename Launch>
void with_pack_width(int vec, const Launch& launch) {
  constexpr int kMax = 16 / static_cast<int>(sizeof(T));
  if constexpr (kMax >= 8)
    if (vec == 8) return launch(std::integral_constant<int, 8>{});
  if constexpr (kMax >= 4)
    if (vec == 4) return launch(std::integral_constant<int, 4>{});
  if (vec == 2) return launch(std::integral_constant<int, 2>{});
  launch(std::integral_constant<int, 1>{});
}

template <typename T>
void launch_moe_sum(const TensorView& input, const TensorView& output, double scale,
                    cudaStream_t stream) {
  const int64_t M = input.size(0), H = input.size(2);
  const int k = static_cast<int>(input.size(1));
  using Acc = typename Accumulator<T>::type;
  const int vec = pack_elements<T>(H, {input.data, output.data});
  const unsigned grid = grid_for(M * (H / vec), kThreads);
  const T* in = static_cast<const T*>(input.data);
  T* out = static_cast<T*>(output.data);
  const Acc s = static_cast<Acc>(scale);
  // All k <= 8 input packs of a thread in flight at once, at every size: at decode sizes one round
  // trip instead of two; at 16384 x top-8 x 2048 (bf16) 202 vs 220 us with 4 at a time (H100
  // 2026-11-26 08:30 UTC, bench/RESULTS.md: 91% -> 99% of copy, torch's sum takes 213).
  with_pack_width<T>(vec, [&](auto width) {
    constexpr int kVec = decltype(width)::value;
    if (k > 4)
      launch_dependent(moe_sum_kernel<T, kVec, 8>, dim3(grid), dim3(kThreads), 0, stream, true, in, out, M, k, H, s);
    else
      launch_dependent(moe_sum_kernel<T, kVec, 4>, dim3(grid), dim3(kThreads), 0, stream, true, in, out, M, k, H, s);
  });
}

void sum_scaled(const TensorView& input, const TensorView& output, double scale, Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  switch (input.dtype) {
    case DType::kFloat64: launch_moe_sum<double>(input, output, scale, s); break;
    case DType::kFloat32: launch_moe_sum<float>(input, output, scale, s); break;
    case DType::kFloat16: launch_moe_sum<__half>(input, output, scale, s); break;
    default: launch_moe_sum<__nv_bfloat16>(input, output, scale, s); break;
  }
}

template <typename T, typename F>
void launch_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                            const TensorView& permutation, const F* factors, cudaStream_t stream) {
  const int64_t M = output.size(0), H = output.size(1), R = input.size(0);
  const int k = static_cast<int>(permutation.numel() / M);
  const int vec = pack_elements<T>(H, {input.data, output.data});
  const T* in = static_cast<const T*>(input.data);
  T* out = static_cast<T*>(output.data);
  const int32_t* perm = permutation.ptr<int32_t>();
  // Four gathered packs in flight per thread (rows per thread x permutation entries per batch),
  // eight for k > 4: one round of gathers per output pack for top-8 (with four, a second round of
  // permutation loads and gathers followed the first; 72 -> 79% of copy at 16384 tokens on an H200).
  // bf16 x 8 on sm_90a: k = 1 about 100 registers (2 blocks per SM, 2x the bytes in flight of one
  // row per thread), k = 2 about 80 (3 blocks), k >= 3 about 64 (4 blocks); capping the
  // registers lower spills.
  auto run = [&](auto items, auto batch) {
    constexpr int kItems = decltype(items)::value, kBatch = decltype(batch)::value;
    const unsigned grid = grid_for((M + kItems - 1) / kItems * (H / vec), kThreads);
    with_pack_width<T>(vec, [&](auto width) {
      launch_dependent(apply_shuffle_mul_sum_kernel<T, F, decltype(width)::value, kItems, kBatch>,
                       dim3(grid), dim3(kThreads), 0, stream, true, in, R, out, M, H, perm, k, factors);
    });
  };
  using std::integral_constant;
  if (k == 1) run(integral_constant<int, 4>{}, integral_constant<int, 1>{});
  else if (k == 2) run(integral_constant<int, 2>{}, integral_constant<int, 2>{});
  else if (k <= 4) run(integral_constant<int, 1>{}, integral_constant<int, 4>{});
  else run(integral_constant<int, 1>{}, integral_constant<int, 8>{});
}

template <typename T>
void shuffle_mul_sum_for(const TensorView& input, const TensorView& output,
                         const TensorView& permutation, const TensorView& factors,
                         cudaStream_t stream) {
  if (factors.defined() && factors.dtype == DType::kFloat32)
    launch_shuffle_mul_sum<T, float>(input, output, permutation, factors.ptr<float>(), stream);
  else
    launch_shuffle_mul_sum<T, T>(input, output, permutation,
                                 factors.defined() ? factors.ptr<T>() : nullptr, stream);
}

}  // namespace

void moe_sum(const TensorView& input, const TensorView& output, Stream stream) {
  sum_scaled(input, output, 1.0, stream);
}

void moe_sum_reduce(const TensorView& input, const TensorView& output, double routed_scaling_factor,
                    Stream stream) {
  sum_scaled(input, output, routed_scaling_factor, stream);
}

void apply_shuffle_mul_sum(const TensorView& input, const TensorView& output,
                           const TensorView& permutation, const TensorView& factors,
                           Stream stream) {
  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  switch (output.dtype) {
    case DType::kFloat32: shuffle_mul_sum_for<float>(input, output, permutation, factors, s); break;
    case DType::kFloat16: shuffle_mul_sum_for<__half>(input, output, permutation, factors, s); break;
    default: shuffle_mul_sum_for<__nv_bfloat16>(input, output, permutation, factors, s); break;
  }
}

}  // namespace moekit::cuda
