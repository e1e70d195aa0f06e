#include <algorithm>
#include <climits>

#include "common/cuda_check.h"
#include "rope/cuda/launcher.h"
#include "rope/cuda/qk_norm_rope_kernel.cuh"

namespace moekit::cuda {
namespace {

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Below this many tokens a token's heads are split over several CTAs: one CTA per token would leave
// most of the GPU idle at decode sizes (132 SMs on an H100 SXM). At and above it, one CTA per token
// (the split kernel measured 38% of copy at 16384 tokens against 81% unsplit).
constexpr int64_t kRopeSplitBelowTokens = 132;
// Split CTAs wanted in all: about four per SM, so that a CTA holds few slices (its time grows with
// them: 96 + 8 heads at T = 64 took 7.1 us with ~132 CTAs of two passes each).
constexpr int64_t kRopeTargetCtas = 4 * 132;
// A split CTA keeps at least two warps of slices, so its R/2 <= 64 rotations take one round.
constexpr int64_t kRopeMinChunkSlices = 64;

struct RopeLaunchShape {
  bool split;
  int64_t chunk_slices;  // slices per CTA (a whole number of heads)
  int chunks;            // CTAs per token (gridDim.y)
  int threads;
};

// The one heuristic: below kRopeSplitBelowTokens split the heads so that tokens x chunks reaches
// about kRopeTargetCtas, each chunk at least kRopeMinChunkSlices slices; no split (the whole row per
// CTA) at large T.
// Threads: the chunk's slices in passes of at most kRopeMaxThreads, rounded up to whole warps (a
// warp boundary is always a head boundary: D/8 divides 32). Unsplit rows use two equal passes (both
// loaded up front, so blocks stay small enough for 3 per SM), split chunks as few as fit.
RopeLaunchShape rope_launch_shape(int64_t tokens, int64_t heads, int64_t lanes_per_head) {
  const int64_t items = heads * lanes_per_head;
  const int64_t wanted_chunks = tokens >= kRopeSplitBelowTokens
                                    ? 1
                                    : (kRopeTargetCtas + tokens - 1) / std::max<int64_t>(tokens, 1);
  const int64_t min_heads = (kRopeMinChunkSlices + lanes_per_head - 1) / lanes_per_head;
  const int64_t chunk_heads = std::max((heads + wanted_chunks - 1) / wanted_chunks, min_heads);
  RopeLaunchShape shape;
  shape.split = chunk_heads < heads;
  shape.chunk_slices = shape.split ? chunk_heads * lanes_per_head : items;
  const int64_t min_passes = shape.split ? 1 : 2;
  const int64_t passes =
      std::max(min_passes, (shape.chunk_slices + kRopeMaxThreads - 1) / kRopeMaxThreads);
  const int64_t per_pass = (shape.chunk_slices + passes - 1) / passes;
  shape.chunks = shape.split ? static_cast<int>((heads + chunk_heads - 1) / chunk_heads) : 1;
  shape.threads = static_cast<int>((per_pass + 31) / 32 * 32);
  return shape;
}

template <typename T, typename Pos, int kHeadDim>
void launch(QkNormRopeParams p, cudaStream_t stream) {
  const RopeLaunchShape shape = rope_launch_shape(p.num_tokens, p.num_heads_q + p.num_heads_k,
                                                  kHeadDim / kRopeValuesPerLane);
  p.chunk_slices = shape.chunk_slices;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(p.num_tokens, INT_MAX)), shape.chunks);
  if (shape.split)
    fused_qk_norm_rope_kernel<T, Pos, kHeadDim, true><<<grid, shape.threads, 0, stream>>>(p);
  else
    fused_qk_norm_rope_kernel<T, Pos, kHeadDim, false><<<grid, shape.threads, 0, stream>>>(p);
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
