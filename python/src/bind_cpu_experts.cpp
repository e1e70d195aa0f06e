// moekit/cpu_experts.h: CPU weight packing (MKCPU v1) and the fused expert ops reading it.
#include <string>

#include "experts_arg.h"
#include "moekit/cpu_experts.h"
#include "moekit/status.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

PackedRole parse_role(const std::string& role) {
  if (role == "w13") return PackedRole::kW13;
  if (role == "w2") return PackedRole::kW2;
  if (role == "dense") return PackedRole::kDense;
  throw Error(ErrorKind::InvalidArgument,
              "role: expected \"w13\", \"w2\" or \"dense\", got \"" + role + "\"");
}

const char* role_name(PackedRole role) {
  switch (role) {
    case PackedRole::kW13: return "w13";
    case PackedRole::kW2: return "w2";
    case PackedRole::kDense: return "dense";
  }
  return "unknown";
}

W13Source parse_source(const std::string& source) {
  if (source == "halves") return W13Source::kHalves;
  if (source == "interleaved") return W13Source::kInterleaved;
  throw Error(ErrorKind::InvalidArgument,
              "source: expected \"halves\" or \"interleaved\", got \"" + source + "\"");
}

constexpr const char* kPackDoc =
    "Pack weight (contiguous CPU bfloat16/float16 [E, R, C] or [R, C]) into packed (contiguous "
    "uint8 of exactly packed_weight_bytes(weight, role) bytes) in moekit's CPU format (MKCPU v1): "
    "role \"w13\" ([E, 2I, H], gate/up as \"halves\" or \"interleaved\" rows), \"w2\" ([E, H, "
    "I]) or \"dense\". Done once at load time.";

constexpr const char* kFusedExpertsCpuDoc =
    "Routed experts on the CPU: out[m] = round(rsf * sum_t round(topk_weights[m, t] * W2[e] . "
    "round(act(gate) * up))), e = topk_ids[m, t] (-1 = dropped).\n\n"
    "hidden_states [M, K] bfloat16/float16, contiguous\n"
    "w13_packed    pack_moe_weights(w13 [E, 2I, K], \"w13\") (or \"dense\" with I % 32 == 0)\n"
    "w2_packed     pack_moe_weights(w2 [E, K, I], \"w2\" or \"dense\")\n"
    "topk_weights  [M, k] float32/bfloat16/float16; topk_ids [M, k] int32/int64\n"
    "output        [M, K] dtype of hidden_states, written (may be hidden_states)\n"
    "threads: 0 = moekit.cpu_threads(); workspace: optional uint8 scratch (64-byte aligned, >= "
    "fused_experts_cpu_workspace_bytes), else an internal per-thread arena.";

constexpr const char* kSharedExpertCpuDoc =
    "Shared expert on the CPU: out[m] = round(D[m] + rsf * fused_experts_out[m]), D the dense "
    "gated MLP of the packed single expert; fused_experts_out optional; output may alias "
    "hidden_states or fused_experts_out.";

}  // namespace

void bind_cpu_experts(nb::module_& m) {
  m.def(
      "packed_weight_bytes",
      [](Tensor weight, const std::string& role) {
        return moekit::packed_weight_bytes(weight.input("weight"), parse_role(role));
      },
      "weight"_a, "role"_a, "Exact byte size of the packed form of weight in role.");
  m.def(
      "pack_moe_weights",
      [](Tensor weight, const std::string& role, Tensor packed, const std::string& source) {
        TensorView w = weight.input("weight"), p = packed.output("packed");
        PackedRole r = parse_role(role);
        W13Source s = parse_source(source);
        nb::gil_scoped_release nogil;
        moekit::pack_moe_weights(w, r, p, s);
      },
      "weight"_a, "role"_a, "packed"_a, "source"_a = "halves", kPackDoc);
  m.def(
      "unpack_moe_weights",
      [](Tensor packed, Tensor weight) {
        TensorView p = packed.input("packed"), w = weight.output("weight");
        nb::gil_scoped_release nogil;
        moekit::unpack_moe_weights(p, w);
      },
      "packed"_a, "weight"_a,
      "The inverse of pack_moe_weights: writes the logical weight (shape and dtype it was packed "
      "from).");
  m.def(
      "packed_weight_info",
      [](Tensor packed) {
        PackedWeightInfo i = moekit::packed_weight_info(packed.input("packed"));
        nb::dict d;
        d["version"] = i.version;
        d["scheme"] = weight_scheme_name(i.scheme);
        d["dtype"] = dtype_name(i.dtype);
        d["role"] = role_name(i.role);
        d["w13_source"] = i.w13_source == W13Source::kHalves ? "halves" : "interleaved";
        d["experts"] = i.experts;
        d["rows"] = i.rows;
        d["cols"] = i.cols;
        d["rows_padded"] = i.rows_padded;
        d["cols_padded"] = i.cols_padded;
        d["data_offset"] = i.data_offset;
        d["data_bytes"] = i.data_bytes;
        d["total_bytes"] = i.total_bytes;
        return d;
      },
      "packed"_a, "The descriptor of a packed buffer as a dict (error if it is not MKCPU v1).");
  m.def(
      "convert_weight_packed_bytes",
      [](Tensor weight) { return moekit::convert_weight_packed_bytes(weight.input("weight")); },
      "weight"_a, "Bytes of convert_weight_packed's output for weight.");
  m.def(
      "convert_weight_packed",
      [](Tensor weight, Tensor packed) {
        TensorView w = weight.input("weight"), p = packed.output("packed");
        nb::gil_scoped_release nogil;
        moekit::convert_weight_packed(w, p);
      },
      "weight"_a, "packed"_a,
      "sgl-kernel compatible packing (role \"dense\", row blocks in logical order) into packed "
      "(uint8, convert_weight_packed_bytes(weight) long).");

  m.def(
      "fused_experts_cpu",
      [](Tensor hidden_states, Tensor w13_packed, Tensor w2_packed, Tensor topk_weights,
         Tensor topk_ids, Tensor output, const FusedExpertsOptions& options, int threads,
         OptionalTensor workspace) {
        CpuRunConfig run;
        run.threads = threads;
        run.workspace = python::output(workspace, "workspace");
        TensorView x = hidden_states.input("hidden_states"), w13 = w13_packed.input("w13_packed"),
                   w2 = w2_packed.input("w2_packed"), tw = topk_weights.input("topk_weights"),
                   ids = topk_ids.input("topk_ids"), out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::fused_experts_cpu(x, w13, w2, tw, ids, out, options, run);
      },
      "hidden_states"_a, "w13_packed"_a, "w2_packed"_a, "topk_weights"_a, "topk_ids"_a,
      "output"_a, "options"_a = FusedExpertsOptions(), "threads"_a = 0,
      "workspace"_a = nb::none(), kFusedExpertsCpuDoc);
  m.def(
      "shared_expert_cpu",
      [](Tensor hidden_states, Tensor w13_packed, Tensor w2_packed,
         OptionalTensor fused_experts_out, Tensor output, const FusedExpertsOptions& options,
         int threads, OptionalTensor workspace) {
        CpuRunConfig run;
        run.threads = threads;
        run.workspace = python::output(workspace, "workspace");
        TensorView x = hidden_states.input("hidden_states"), w13 = w13_packed.input("w13_packed"),
                   w2 = w2_packed.input("w2_packed"),
                   routed = input(fused_experts_out, "fused_experts_out"),
                   out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::shared_expert_cpu(x, w13, w2, routed, out, options, run);
      },
      "hidden_states"_a, "w13_packed"_a, "w2_packed"_a, "fused_experts_out"_a.none(), "output"_a,
      "options"_a = FusedExpertsOptions(), "threads"_a = 0, "workspace"_a = nb::none(),
      kSharedExpertCpuDoc);
  m.def("fused_experts_cpu_workspace_bytes", &moekit::fused_experts_cpu_workspace_bytes, "M"_a,
        "topk"_a, "E"_a, "N"_a, "K"_a, "threads"_a = 0,
        "Exact scratch bytes of one fused_experts_cpu call (N = intermediate I, K = hidden).");
  m.def("shared_expert_cpu_workspace_bytes", &moekit::shared_expert_cpu_workspace_bytes, "M"_a,
        "N"_a, "K"_a, "threads"_a = 0, "Exact scratch bytes of one shared_expert_cpu call.");
}

}  // namespace moekit::python
