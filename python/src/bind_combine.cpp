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
}

}  // namespace moekit::python
