// Public fused_qk_norm_rope: validate on the host, then run on the device of qkv.
#include "common/backend.h"
#include "moekit/qk_norm_rope.h"
#include "rope/cpu/kernels.h"
#include "rope/cuda/launcher.h"
#include "rope/rotary_frequencies.h"
#include "rope/validate.h"

namespace moekit {

void fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q, int64_t num_heads_k,
                        int64_t num_heads_v, int64_t head_dim, double eps, TensorView q_weight,
                        TensorView k_weight, double base, bool is_neox, TensorView position_ids,
                        double factor, double low, double high, double attention_factor,
                        int64_t rotary_dim, Stream stream) {
  const detail::QkNormRopeArgs args = detail::validate_fused_qk_norm_rope(
      qkv, num_heads_q, num_heads_k, num_heads_v, head_dim, eps, q_weight, k_weight, base, is_neox,
      position_ids, factor, low, high, attention_factor, rotary_dim, qkv.device);
  if (args.num_tokens == 0 || args.num_heads_q + args.num_heads_k == 0) return;
  const detail::RotaryFrequencies& freqs =
      detail::rotary_frequencies(args.base, args.rotary_dim, args.factor, args.low, args.high);
  if (qkv.device.kind == DeviceKind::kCUDA) {
    MOEKIT_CUDA_ONLY(cuda::fused_qk_norm_rope(args, freqs, stream), "fused_qk_norm_rope");
  } else {
    cpu::fused_qk_norm_rope(args, freqs);
  }
}

}  // namespace moekit
