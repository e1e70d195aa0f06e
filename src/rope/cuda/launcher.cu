#include <algorithm>
#include <climits>

#include "common/cuda_check.h"
#include "rope/cuda/launcher.h"
#include "rope/cuda/qk_norm_rope_kernel.cuh"

namespace moekit::cuda {
namespace {

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <typename T, typename Pos, int kHeadDim>
void launch(const QkNormRopeParams& p, cudaStream_t stream) {
  // Threads: the token's slices in two equal passes (both loaded up front) of at most
  // kRopeMaxThreads, more passes only past 1024 slices; rounded up to whole warps (a warp boundary
  // is always a head boundary: D/8 divides 32).
  const int64_t items = int64_t(p.num_heads_q + p.num_heads_k) * (kHeadDim / kRopeValuesPerLane);
  const int64_t passes = std::max<int64_t>(2, (items + kRopeMaxThreads - 1) / kRopeMaxThreads);
  const int64_t per_pass = (items + passes - 1) / passes;
  const int threads = static_cast<int>((per_pass + 31) / 32 * 32);
  const int blocks = static_cast<int>(std::min<int64_t>(p.num_tokens, INT_MAX));
  fused_qk_norm_rope_kernel<T, Pos, kHeadDim><<<blocks, threads, 0, stream>>>(p);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

template <typename T, typename Pos>
void launch_for_head_dim(const QkNormRopeParams& p, int64_t head_dim, cudaStream_t stream) {
  switch (head_dim) {
    case 64: launch<T, Pos, 64>(p, stream); break;
    case 128: launch<T, Pos, 128>(p, stream); break;
    default: launch<T, Pos, 256>(p, stream); break;
  }
}

template <typename T>
void launch_for_positions(const QkNormRopeParams& p, const detail::QkNormRopeArgs& a,
                          cudaStream_t stream) {
  if (a.position_ids.dtype == DType::kInt64)
    launch_for_head_dim<T, int64_t>(p, a.head_dim, stream);
  else
    launch_for_head_dim<T, int32_t>(p, a.head_dim, stream);
}

}  // namespace

void fused_qk_norm_rope(const detail::QkNormRopeArgs& a, const detail::RotaryFrequencies& freqs,
                        Stream stream) {
  QkNormRopeParams p{};
  p.qkv = a.qkv.data;
  p.q_weight = a.num_heads_q > 0 ? a.q_weight.data : nullptr;
  p.k_weight = a.num_heads_k > 0 ? a.k_weight.data : nullptr;
  p.positions = a.position_ids.data;
  p.num_tokens = a.num_tokens;
  p.row_elements = (a.num_heads_q + a.num_heads_k + a.num_heads_v) * a.head_dim;
  p.num_heads_q = static_cast<int>(a.num_heads_q);
  p.num_heads_k = static_cast<int>(a.num_heads_k);
  p.rotary_dim = static_cast<int>(a.rotary_dim);
  p.half = p.rotary_dim / 2;
  p.eps = static_cast<float>(a.eps);
  p.attention_factor = static_cast<float>(a.attention_factor);
  p.is_neox = a.is_neox;
  p.vector_io = aligned16(p.qkv) && aligned16(p.q_weight) && aligned16(p.k_weight);
  for (int i = 0; i < freqs.pairs; ++i) p.freq[i] = freqs.freq[i];

  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  if (a.qkv.dtype == DType::kFloat16)
    launch_for_positions<__half>(p, a, s);
  else
    launch_for_positions<__nv_bfloat16>(p, a, s);
}

}  // namespace moekit::cuda
