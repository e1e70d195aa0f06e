// moekit/experts.h: the expert weights and options types, and the oracle MoE layer.
#include "experts_arg.h"

#include "moekit/status.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

template <typename Enum, size_t N>
Enum parse_enum(const std::string& value, const Enum (&all)[N], const char* (*name)(Enum),
                const char* what) {
  std::string known;
  for (Enum e : all) {
    if (value == name(e)) return e;
    known += std::string(known.empty() ? "" : ", ") + name(e);
  }
  throw Error(ErrorKind::InvalidArgument,
              std::string(what) + ": expected one of " + known + ", got \"" + value + "\"");
}

constexpr WeightScheme kSchemes[] = {
    WeightScheme::kBF16,     WeightScheme::kFP8BlockW8A8, WeightScheme::kFP8BlockW8A16,
    WeightScheme::kInt8W8A8, WeightScheme::kInt4W4A8,     WeightScheme::kNVFP4,
    WeightScheme::kMXFP8,    WeightScheme::kMXFP4,
};
constexpr Activation kActivations[] = {
    Activation::kSiluAndMul, Activation::kGeluAndMul, Activation::kGeluTanhAndMul,
    Activation::kSwigluOai,  Activation::kSilu,       Activation::kGelu,
};

constexpr const char* kWeightsDoc =
    "One projection's weights for every expert, in moekit's logical layout (no packing):\n"
    "  w13: [E, 2I, H] (rows 0..I-1 gate, I..2I-1 up; [E, I, H] for \"silu\" / \"gelu\")\n"
    "  w2:  [E, H, I]   (a shared expert: E = 1 or 2-D)\n"
    "Per scheme (R x C = one expert's matrix):\n"
    "  bf16            weight bf16/fp16 (the activation dtype)\n"
    "  fp8_block_w8a8 / fp8_block_w8a16  weight float8_e4m3fn; scale float32 [E, ceil(R/block_n), "
    "ceil(C/block_k)]\n"
    "  int8_w8a8       weight int8; scale float32 [E, R]\n"
    "  int4_w4a8       weight uint8 [E, R, ceil(C/2)] (codes 0..15, even k low nibble); zero "
    "uint8 [E, R, C/group]; scale float32 [E, R, C/group]\n"
    "  nvfp4           weight uint8 e2m1 [E, R, ceil(C/2)]; scale float8_e4m3fn [E, R, "
    "ceil(C/16)]; global_scale float32 [E]; input_global_scale float32 [E]\n"
    "  mxfp8           weight float8_e4m3fn; scale float8_e8m0fnu [E, R, ceil(C/32)]\n"
    "  mxfp4           weight uint8 e2m1 [E, R, ceil(C/2)]; scale float8_e8m0fnu [E, R, "
    "ceil(C/32)]\n"
    "bias: optional float32 [E, R], added to the fp32 GEMM result. Tensors a scheme does not use "
    "must be None.";

constexpr const char* kOptionsDoc =
    "Options of the expert ops. scheme: bf16 | fp8_block_w8a8 | fp8_block_w8a16 | int8_w8a8 | "
    "int4_w4a8 | nvfp4 | mxfp8 | mxfp4. activation: silu_and_mul | gelu_and_mul | "
    "gelu_tanh_and_mul | swiglu_oai (needs swiglu_alpha, swiglu_limit; gpt-oss 1.702, 7.0) | silu | "
    "gelu (no-mul: w13 has I rows). routed_scaling_factor multiplies the combined routed output "
    "once (fp32). block_n / block_k: FP8 block-scale sizes; group_size: INT4 K-group. "
    "gate_up_interleaved: w13 (and its bias) rows interleaved, 2j = gate_j, 2j+1 = up_j (gpt-oss) "
    "instead of gate rows then up rows; gated activations and bf16 only.";

constexpr const char* kInterleaveGateUpDoc =
    "out = w13 with the gate/up rows along `dim` interleaved: out[.., 2j, ..] = w13[.., j, ..] "
    "(gate), out[.., 2j+1, ..] = w13[.., I+j, ..] (up), w13.size(dim) = 2I. dim = 1 for w13 "
    "[E, 2I, H] and its bias [E, 2I], 0 for a shared expert's [2I, H] / [2I]. Any dtype; both "
    "contiguous, same shape, dtype and device; out must not overlap w13. CPU or CUDA (on "
    "`stream`).";

constexpr const char* kReferenceFusedExpertsDoc =
    "The oracle MoE layer (expert part): out[m] = rsf * sum_t topk_weights[m, t] * "
    "W2[e] . act(W13[e] . hidden[m]), e = topk_ids[m, t] (-1 = slot dropped), with the scheme's "
    "rounding points; fp64 accumulation. CPU tensors.\n\n"
    "hidden       [M, H] bfloat16/float16\n"
    "topk_weights [M, k] float32; topk_ids [M, k] int32\n"
    "output       [M, H] dtype of hidden, written (may alias hidden)\n"
    "rows         optional int32 [R]: compute only these token rows (others untouched)";

constexpr const char* kReferenceSharedExpertDoc =
    "The oracle shared expert: out[m] = round(D[m] + rsf * fused_experts_out[m]), D the dense "
    "gated MLP of the single expert (w13 [2I, H] or [1, 2I, H]); fused_experts_out optional. CPU "
    "tensors.";

}  // namespace

ExpertWeights ExpertWeightsArg::view(const PyExpertWeights& w, const std::string& name) {
  ExpertWeights v;
  const nb::object* fields[] = {&w.weight, &w.scale, &w.zero,
                                &w.global_scale, &w.input_global_scale, &w.bias};
  TensorView* views[] = {&v.weight, &v.scale, &v.zero,
                         &v.global_scale, &v.input_global_scale, &v.bias};
  const char* names[] = {"weight", "scale", "zero", "global_scale", "input_global_scale", "bias"};
  for (int i = 0; i < 6; ++i) {
    if (!fields[i]->is_valid() || fields[i]->is_none()) continue;
    parts[i].obj = *fields[i];
    *views[i] = parts[i].input((name + "." + names[i]).c_str());
  }
  return v;
}

void bind_expert_types(nb::module_& m) {
  nb::class_<PyExpertWeights>(m, "ExpertWeights", kWeightsDoc)
      .def(
          "__init__",
          [](PyExpertWeights* self, nb::object weight, nb::object scale, nb::object zero,
             nb::object global_scale, nb::object input_global_scale, nb::object bias) {
            new (self) PyExpertWeights{weight, scale, zero, global_scale, input_global_scale, bias};
          },
          "weight"_a, "scale"_a = nb::none(), "zero"_a = nb::none(),
          "global_scale"_a = nb::none(), "input_global_scale"_a = nb::none(),
          "bias"_a = nb::none())
      .def_rw("weight", &PyExpertWeights::weight)
      .def_rw("scale", &PyExpertWeights::scale)
      .def_rw("zero", &PyExpertWeights::zero)
      .def_rw("global_scale", &PyExpertWeights::global_scale)
      .def_rw("input_global_scale", &PyExpertWeights::input_global_scale)
      .def_rw("bias", &PyExpertWeights::bias);

  nb::class_<FusedExpertsOptions>(m, "FusedExpertsOptions", kOptionsDoc)
      .def(
          "__init__",
          [](FusedExpertsOptions* self, const std::string& scheme, const std::string& activation,
             float swiglu_alpha, float swiglu_limit, int block_n, int block_k, int group_size,
             double routed_scaling_factor, bool fp8_round_dequantized_weights,
             bool gate_up_interleaved) {
            FusedExpertsOptions o;
            o.scheme = parse_enum(scheme, kSchemes, &weight_scheme_name, "scheme");
            o.activation = parse_enum(activation, kActivations, &activation_name, "activation");
            o.swiglu_alpha = swiglu_alpha;
            o.swiglu_limit = swiglu_limit;
            o.block_n = block_n;
            o.block_k = block_k;
            o.group_size = group_size;
            o.routed_scaling_factor = routed_scaling_factor;
            o.fp8_round_dequantized_weights = fp8_round_dequantized_weights;
            o.gate_up_interleaved = gate_up_interleaved;
            new (self) FusedExpertsOptions(o);
          },
          "scheme"_a = "bf16", "activation"_a = "silu_and_mul", "swiglu_alpha"_a = 0.f,
          "swiglu_limit"_a = 0.f, "block_n"_a = 128, "block_k"_a = 128, "group_size"_a = 128,
          "routed_scaling_factor"_a = 1.0, "fp8_round_dequantized_weights"_a = false,
          "gate_up_interleaved"_a = false)
      .def_prop_rw(
          "scheme", [](const FusedExpertsOptions& o) { return std::string(weight_scheme_name(o.scheme)); },
          [](FusedExpertsOptions& o, const std::string& s) {
            o.scheme = parse_enum(s, kSchemes, &weight_scheme_name, "scheme");
          })
      .def_prop_rw(
          "activation", [](const FusedExpertsOptions& o) { return std::string(activation_name(o.activation)); },
          [](FusedExpertsOptions& o, const std::string& s) {
            o.activation = parse_enum(s, kActivations, &activation_name, "activation");
          })
      .def_rw("swiglu_alpha", &FusedExpertsOptions::swiglu_alpha)
      .def_rw("swiglu_limit", &FusedExpertsOptions::swiglu_limit)
      .def_rw("block_n", &FusedExpertsOptions::block_n)
      .def_rw("block_k", &FusedExpertsOptions::block_k)
      .def_rw("group_size", &FusedExpertsOptions::group_size)
      .def_rw("routed_scaling_factor", &FusedExpertsOptions::routed_scaling_factor)
      .def_rw("fp8_round_dequantized_weights", &FusedExpertsOptions::fp8_round_dequantized_weights)
      .def_rw("gate_up_interleaved", &FusedExpertsOptions::gate_up_interleaved);
}

void bind_experts(nb::module_& m) {
  bind_expert_types(m);

  m.def(
      "interleave_gate_up",
      [](Tensor w13, Tensor out, int dim, uintptr_t stream) {
        TensorView in = w13.input("w13"), o = out.output("out");
        nb::gil_scoped_release nogil;
        moekit::interleave_gate_up(in, o, dim, stream_from(stream));
      },
      "w13"_a, "out"_a, "dim"_a, "stream"_a = 0, kInterleaveGateUpDoc);

  m.def(
      "reference_fused_experts",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2,
         Tensor topk_weights, Tensor topk_ids, Tensor output, const FusedExpertsOptions& options,
         OptionalTensor rows) {
        ExpertWeightsArg w13_arg, w2_arg;
        TensorView x = hidden.input("hidden"), tw = topk_weights.input("topk_weights"),
                   ids = topk_ids.input("topk_ids"), out = output.output("output"),
                   r = input(rows, "rows");
        ExpertWeights w13_view = w13_arg.view(w13, "w13"), w2_view = w2_arg.view(w2, "w2");
        nb::gil_scoped_release nogil;
        moekit::reference::fused_experts(x, w13_view, w2_view, tw, ids, out, options, r);
      },
      "hidden"_a, "w13"_a, "w2"_a, "topk_weights"_a, "topk_ids"_a, "output"_a,
      "options"_a = FusedExpertsOptions(), "rows"_a = nb::none(), kReferenceFusedExpertsDoc);

  m.def(
      "reference_shared_expert",
      [](Tensor hidden, const PyExpertWeights& w13, const PyExpertWeights& w2,
         OptionalTensor fused_experts_out, Tensor output, const FusedExpertsOptions& options) {
        ExpertWeightsArg w13_arg, w2_arg;
        TensorView x = hidden.input("hidden"),
                   routed = input(fused_experts_out, "fused_experts_out"),
                   out = output.output("output");
        ExpertWeights w13_view = w13_arg.view(w13, "w13"), w2_view = w2_arg.view(w2, "w2");
        nb::gil_scoped_release nogil;
        moekit::reference::shared_expert(x, w13_view, w2_view, routed, out, options);
      },
      "hidden"_a, "w13"_a, "w2"_a, "fused_experts_out"_a.none(), "output"_a,
      "options"_a = FusedExpertsOptions(), kReferenceSharedExpertDoc);
}

}  // namespace moekit::python
