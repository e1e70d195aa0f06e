#include "rope/validate.h"

#include <cmath>

#include "common/checks.h"

namespace moekit::detail {
namespace {

void check_finite(const char* name, double value) {
  require(std::isfinite(value), name, ": expected a finite value, got ", value);
}

void check_weight(const TensorView& w, const char* name, int64_t heads, const char* heads_name,
                  const TensorView& qkv, int64_t head_dim, Device device) {
  if (heads == 0 && !w.defined()) return;
  require(w.defined(), name, ": expected a tensor (", heads_name, " = ", heads, "), got none");
  check_device(w, name, device);
  check_same_dtype(w, name, qkv, "qkv");
  check_shape(w, name, {head_dim});
  check_contiguous(w, name);
}

}  // namespace

QkNormRopeArgs validate_fused_qk_norm_rope(TensorView qkv, int64_t num_heads_q,
                                           int64_t num_heads_k, int64_t num_heads_v,
                                           int64_t head_dim, double eps, TensorView q_weight,
                                           TensorView k_weight, double base, bool is_neox,
                                           TensorView position_ids, double factor, double low,
                                           double high, double attention_factor,
                                           int64_t rotary_dim, Device device) {
  check_defined(qkv, "qkv");
  check_device(qkv, "qkv", device);
  check_dtype_in(qkv, "qkv", {DType::kBFloat16, DType::kFloat16});
  check_ndim(qkv, "qkv", 2);
  check_contiguous(qkv, "qkv");
  require(head_dim == 64 || head_dim == 128 || head_dim == 256,
          "head_dim: expected 64, 128 or 256, got ", head_dim);
  require(num_heads_q >= 0, "num_heads_q: expected a value >= 0, got ", num_heads_q);
  require(num_heads_k >= 0, "num_heads_k: expected a value >= 0, got ", num_heads_k);
  require(num_heads_v >= 0, "num_heads_v: expected a value >= 0, got ", num_heads_v);
  const int64_t heads = num_heads_q + num_heads_k + num_heads_v;
  require(heads <= (int64_t{1} << 40),
          "num_heads_q + num_heads_k + num_heads_v: expected at most 2^40, got ", heads);
  const int64_t width = heads * head_dim;
  require(qkv.size(1) == width, "qkv: expected shape [*, ", width,
          "] ((num_heads_q + num_heads_k + num_heads_v) * head_dim = (", num_heads_q, " + ",
          num_heads_k, " + ", num_heads_v, ") * ", head_dim, "), got ", detail::shape_of(qkv));
  const int64_t T = qkv.size(0);

  check_weight(q_weight, "q_weight", num_heads_q, "num_heads_q", qkv, head_dim, device);
  check_weight(k_weight, "k_weight", num_heads_k, "num_heads_k", qkv, head_dim, device);

  check_defined(position_ids, "position_ids");
  check_device(position_ids, "position_ids", device);
  check_dtype_in(position_ids, "position_ids", {DType::kInt32, DType::kInt64});
  check_shape(position_ids, "position_ids", {T});
  check_contiguous(position_ids, "position_ids");

  check_finite("eps", eps);
  require(eps >= 0, "eps: expected a value >= 0, got ", eps);
  check_finite("base", base);
  require(base > 0, "base: expected a value > 0, got ", base);
  check_finite("factor", factor);
  require(factor > 0, "factor: expected a value > 0, got ", factor);
  check_finite("low", low);
  check_finite("high", high);
  check_finite("attention_factor", attention_factor);

  const int64_t R = rotary_dim == -1 ? head_dim : rotary_dim;
  const int64_t per_lane = head_dim / 32;
  require(R > 0 && R <= head_dim, "rotary_dim: expected a value in [1, head_dim = ", head_dim,
          "] (or -1 for head_dim), got ", rotary_dim);
  require(R % per_lane == 0, "rotary_dim: expected a multiple of head_dim / 32 = ", per_lane,
          ", got ", R);
  if (is_neox) {
    const int64_t q = R / per_lane / 2;
    require(R % (2 * per_lane) == 0 && q >= 1 && (q & (q - 1)) == 0,
            "rotary_dim: expected rotary_dim / (head_dim / 32) / 2 to be a power of two for NeoX "
            "(rotary_dim = ",
            per_lane * 2, " * 2^k), got ", R);
  }

  QkNormRopeArgs a;
  a.qkv = qkv;
  a.q_weight = q_weight;
  a.k_weight = k_weight;
  a.position_ids = position_ids;
  a.num_tokens = T;
  a.num_heads_q = num_heads_q;
  a.num_heads_k = num_heads_k;
  a.num_heads_v = num_heads_v;
  a.head_dim = head_dim;
  a.rotary_dim = R;
  a.eps = eps;
  a.base = base;
  a.factor = factor;
  a.low = low;
  a.high = high;
  a.attention_factor = attention_factor;
  a.is_neox = is_neox;
  return a;
}

}  // namespace moekit::detail
