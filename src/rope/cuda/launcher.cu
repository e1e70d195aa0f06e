#include <algorithm>

#include "common/cuda_check.h"
#include "common/device_info.h"
#include "rope/cuda/launcher.h"
#include "rope/cuda/qk_norm_rope_kernel.cuh"

namespace moekit::cuda {
namespace {

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Warps wanted in all before units grow past one warp row: about 16 per SM, so that decode sizes
// spread over the GPU; at large T each unit takes kMaxUnitRows rows (16-byte loads in flight per
// lane). H200, qwen3 shape at 16384 tokens, 1 / 2 / 3 / 4 rows a unit: 124 / 99 / 91 / 89 us
// (tests/rope perf test, 2026-11-26).
constexpr int64_t kRopeTargetWarpsPerSm = 16;

struct RopeLaunchShape {
  int unit_rows;        // warp rows per unit
  int units_per_token;
  int64_t units;
};

// The one heuristic: the largest unit (up to kMaxUnitRows warp rows) that still leaves about
// kRopeTargetWarpsPerSm units on each of `sms` SMs, evened out over the token's rows
// (unit_rows_override > 0: that many rows, for tests and timings).
RopeLaunchShape rope_launch_shape(int64_t tokens, int64_t heads, int64_t lanes_per_head, int sms,
                                  int unit_rows_override) {
  const int64_t rows = std::max<int64_t>((heads * lanes_per_head + 31) / 32, 1);
  const int64_t target_warps = kRopeTargetWarpsPerSm * sms;
  int64_t unit_rows = std::clamp<int64_t>(tokens * rows / target_warps, 1, kMaxUnitRows);
  if (unit_rows_override > 0) unit_rows = std::min<int64_t>(unit_rows_override, kMaxUnitRows);
  RopeLaunchShape shape;
  shape.units_per_token = static_cast<int>((rows + unit_rows - 1) / unit_rows);
  shape.unit_rows = static_cast<int>((rows + shape.units_per_token - 1) / shape.units_per_token);
  shape.units = tokens * shape.units_per_token;
  return shape;
}

template <typename T, typename Pos, int kHeadDim>
void launch(QkNormRopeParams p, int unit_rows_override, cudaStream_t stream) {
  const int sms = current_device_sm_count();
  const RopeLaunchShape shape = rope_launch_shape(p.num_tokens, p.num_heads_q + p.num_heads_k,
                                                  kHeadDim / kRopeValuesPerLane, sms, unit_rows_override);
  p.unit_rows = shape.unit_rows;
  p.units_per_token = shape.units_per_token;
  p.units = shape.units;
  // At most one wave of CTAs (kRopeMinCtasPerSm on each SM): warps then loop over a run of units
  // with the next unit's loads in flight instead of exiting and being relaunched.
  const int64_t max_ctas = int64_t{kRopeMinCtasPerSm} * sms;
  const int64_t ctas = std::min<int64_t>((shape.units + kRopeWarpsPerCta - 1) / kRopeWarpsPerCta, max_ctas);
  const int64_t warps = ctas * kRopeWarpsPerCta;
  p.units_per_warp = (shape.units + warps - 1) / warps;
  const dim3 grid(static_cast<unsigned>(ctas));
  // 16-byte loads and stores when qkv and both weights are 16-byte aligned (rows and slices are).
  const bool vector_io = aligned16(p.qkv) && aligned16(p.q_weight) && aligned16(p.k_weight);
  if (vector_io)
    fused_qk_norm_rope_kernel<T, Pos, kHeadDim, true><<<grid, kRopeWarpsPerCta * 32, 0, stream>>>(p);
  else
    fused_qk_norm_rope_kernel<T, Pos, kHeadDim, false><<<grid, kRopeWarpsPerCta * 32, 0, stream>>>(p);
  MOEKIT_CUDA_CHECK_LAUNCH();
}

template <typename T, typename Pos>
void launch_for_head_dim(const QkNormRopeParams& p, int64_t head_dim, int unit_rows, cudaStream_t stream) {
  switch (head_dim) {
    case 64: launch<T, Pos, 64>(p, unit_rows, stream); break;
    case 128: launch<T, Pos, 128>(p, unit_rows, stream); break;
    default: launch<T, Pos, 256>(p, unit_rows, stream); break;
  }
}

template <typename T>
void launch_for_positions(const QkNormRopeParams& p, const detail::QkNormRopeArgs& a, int unit_rows,
                          cudaStream_t stream) {
  if (a.position_ids.dtype == DType::kInt64)
    launch_for_head_dim<T, int64_t>(p, a.head_dim, unit_rows, stream);
  else
    launch_for_head_dim<T, int32_t>(p, a.head_dim, unit_rows, stream);
}

}  // namespace

void fused_qk_norm_rope(const detail::QkNormRopeArgs& a, const detail::RotaryFrequencies& freqs,
                        Stream stream, int unit_rows) {
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
  for (int i = 0; i < freqs.pairs; ++i) p.freq[i] = freqs.freq[i];

  cudaStream_t s = detail::as_cuda_stream(stream.handle);
  if (a.qkv.dtype == DType::kFloat16)
    launch_for_positions<__half>(p, a, unit_rows, s);
  else
    launch_for_positions<__nv_bfloat16>(p, a, unit_rows, s);
}

}  // namespace moekit::cuda
