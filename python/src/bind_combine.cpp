// moekit/combine.h: summing the k expert outputs of each token.
#include "bindings.h"
#include "moekit/combine.h"

namespace moekit::python {

using namespace nb::literals;

namespace {

constexpr const char* kMoeSumDoc =
    "out[m, h] = sum_j input[m, j, h], accumulated in fp32 (fp64 for fp64), rounded once.\n\n"
    "input  [M, k, H] float32 / float16 / bfloat16, contiguous\n"
    "output [M, H]    same dtype, contiguous, written\n"
    "stream: cudaStream_t as int for CUDA tensors (ignored on CPU).";

constexpr const char* kMoeSumReduceDoc =
    "out[m, h] = round(routed_scaling_factor * sum_j input[m, j, h]), fp32 accumulation (fp64 for "
    "fp64), one rounding. Default routed_scaling_factor 1.0 (sgl-kernel's Python default 0 zeroes "
    "the output).\n\n"
    "input  [M, k, H] float32/float16/bfloat16/float64, contiguous\n"
    "output [M, H]    same dtype, contiguous, written";

constexpr const char* kApplyShuffleMulSumDoc =
    "out[m, :] = sum_j factors[m*k + j] * input[permutation[m*k + j], :] with k = "
    "len(permutation) / M; a permutation entry of -1 contributes nothing; factors None = 1.\n\n"
    "input       [M*k, H] float32/float16/bfloat16\n"
    "output      [M, H]   same dtype, written\n"
    "permutation [M*k] int32\n"
    "factors     [M*k] or [M, k], dtype of output or float32, or None";

}  // namespace

void bind_combine(nb::module_& m) {
  m.def(
      "moe_sum",
      [](Tensor input, Tensor output, uintptr_t stream) {
        TensorView in = input.input("input"), out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::moe_sum(in, out, stream_from(stream));
      },
      "input"_a, "output"_a, "stream"_a = 0, kMoeSumDoc);
  m.def(
      "reference_moe_sum",
      [](Tensor input, Tensor output) {
        TensorView in = input.input("input"), out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::reference::moe_sum(in, out);
      },
      "input"_a, "output"_a, kMoeSumDoc);
  m.def(
      "moe_sum_reduce",
      [](Tensor input, Tensor output, double routed_scaling_factor, uintptr_t stream) {
        TensorView in = input.input("input"), out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::moe_sum_reduce(in, out, routed_scaling_factor, stream_from(stream));
      },
      "input"_a, "output"_a, "routed_scaling_factor"_a = 1.0, "stream"_a = 0, kMoeSumReduceDoc);
  m.def(
      "reference_moe_sum_reduce",
      [](Tensor input, Tensor output, double routed_scaling_factor) {
        TensorView in = input.input("input"), out = output.output("output");
        nb::gil_scoped_release nogil;
        moekit::reference::moe_sum_reduce(in, out, routed_scaling_factor);
      },
      "input"_a, "output"_a, "routed_scaling_factor"_a = 1.0, kMoeSumReduceDoc);

  m.def(
      "apply_shuffle_mul_sum",
      [](Tensor input, Tensor output, Tensor permutation, OptionalTensor factors,
         uintptr_t stream) {
        TensorView in = input.input("input"), out = output.output("output"),
                   perm = permutation.input("permutation"), f = python::input(factors, "factors");
        nb::gil_scoped_release nogil;
        moekit::apply_shuffle_mul_sum(in, out, perm, f, stream_from(stream));
      },
      "input"_a, "output"_a, "permutation"_a, "factors"_a = nb::none(), "stream"_a = 0,
      kApplyShuffleMulSumDoc);
  m.def(
      "reference_apply_shuffle_mul_sum",
      [](Tensor input, Tensor output, Tensor permutation, OptionalTensor factors) {
        TensorView in = input.input("input"), out = output.output("output"),
                   perm = permutation.input("permutation"), f = python::input(factors, "factors");
        nb::gil_scoped_release nogil;
        moekit::reference::apply_shuffle_mul_sum(in, out, perm, f);
      },
      "input"_a, "output"_a, "permutation"_a, "factors"_a = nb::none(), kApplyShuffleMulSumDoc);
}

}  // namespace moekit::python
