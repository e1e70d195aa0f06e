// moekit/qk_norm_rope.h: fused per-head QK-RMSNorm + rotary embedding on the packed QKV output.
#include "bindings.h"
#include "moekit/qk_norm_rope.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

constexpr const char* kDoc =
    "In place on qkv: for every token, every Q head then K head (V untouched): RMSNorm over the "
    "head (weight q_weight / k_weight, eps), then RoPE on the first rotary_dim dims (NeoX pairs "
    "(i, i + R/2) or interleaved (2i, 2i+1); inv freq base^(-2i/R), YaRN ramp between low and high "
    "when factor != 1; result * attention_factor); rounded once to the qkv dtype.\n\n"
    "qkv          [T, (Hq + Hk + Hv) * head_dim] bfloat16/float16, contiguous, modified\n"
    "q_weight     [head_dim] dtype of qkv; k_weight [head_dim] dtype of qkv\n"
    "position_ids [T] int32/int64\n"
    "head_dim in {64, 128, 256}; rotary_dim -1 = head_dim.";

}  // namespace

void bind_rope(nb::module_& m) {
  m.def(
      "fused_qk_norm_rope",
      [](Tensor qkv, int64_t num_heads_q, int64_t num_heads_k, int64_t num_heads_v,
         int64_t head_dim, double eps, OptionalTensor q_weight, OptionalTensor k_weight,
         double base, bool is_neox, Tensor position_ids, double factor, double low, double high,
         double attention_factor, int64_t rotary_dim, uintptr_t stream) {
        TensorView x = qkv.output("qkv"), qw = input(q_weight, "q_weight"),
                   kw = input(k_weight, "k_weight"), pos = position_ids.input("position_ids");
        nb::gil_scoped_release nogil;
        moekit::fused_qk_norm_rope(x, num_heads_q, num_heads_k, num_heads_v, head_dim, eps, qw,
                                   kw, base, is_neox, pos, factor, low, high, attention_factor,
                                   rotary_dim, stream_from(stream));
      },
      "qkv"_a, "num_heads_q"_a, "num_heads_k"_a, "num_heads_v"_a, "head_dim"_a, "eps"_a,
      "q_weight"_a.none(), "k_weight"_a.none(), "base"_a, "is_neox"_a, "position_ids"_a,
      "factor"_a, "low"_a, "high"_a, "attention_factor"_a, "rotary_dim"_a = -1, "stream"_a = 0,
      kDoc);
  m.def(
      "reference_fused_qk_norm_rope",
      [](Tensor qkv, int64_t num_heads_q, int64_t num_heads_k, int64_t num_heads_v,
         int64_t head_dim, double eps, OptionalTensor q_weight, OptionalTensor k_weight,
         double base, bool is_neox, Tensor position_ids, double factor, double low, double high,
         double attention_factor, int64_t rotary_dim) {
        TensorView x = qkv.output("qkv"), qw = input(q_weight, "q_weight"),
                   kw = input(k_weight, "k_weight"), pos = position_ids.input("position_ids");
        nb::gil_scoped_release nogil;
        moekit::reference::fused_qk_norm_rope(x, num_heads_q, num_heads_k, num_heads_v, head_dim,
                                              eps, qw, kw, base, is_neox, pos, factor, low, high,
                                              attention_factor, rotary_dim);
      },
      "qkv"_a, "num_heads_q"_a, "num_heads_k"_a, "num_heads_v"_a, "head_dim"_a, "eps"_a,
      "q_weight"_a.none(), "k_weight"_a.none(), "base"_a, "is_neox"_a, "position_ids"_a,
      "factor"_a, "low"_a, "high"_a, "attention_factor"_a, "rotary_dim"_a = -1, kDoc);
}

}  // namespace moekit::python
