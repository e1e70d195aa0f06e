// moekit/quant.h: the reference quantisers / dequantisers of every expert weight scheme (CPU).
#include "bindings.h"
#include "moekit/quant.h"

namespace moekit::python {

using namespace nb::literals;

void bind_quant(nb::module_& m) {
  m.def(
      "quantize_fp8_per_token_group",
      [](Tensor input_, Tensor output_, Tensor scale, int group_size, float eps) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_fp8_per_token_group(in, out, s, group_size, eps);
      },
      "input"_a, "output"_a, "scale"_a, "group_size"_a, "eps"_a = 1e-10f,
      "Per row and group of group_size columns: s = max(amax, eps) / 448, q = e4m3(x / s).\n"
      "input [..., C] float; output [..., C] float8_e4m3fn; scale float32 [..., ceil(C / "
      "group_size)]. CPU.");
  m.def(
      "dequantize_fp8_per_token_group",
      [](Tensor input_, Tensor scale, Tensor output_, int group_size) {
        TensorView in = input_.input("input"), s = scale.input("scale"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_fp8_per_token_group(in, s, out, group_size);
      },
      "input"_a, "scale"_a, "output"_a, "group_size"_a, "x = e4m3(q) * s. CPU.");
  m.def(
      "quantize_fp8_block",
      [](Tensor input_, Tensor output_, Tensor scale, int block_n, int block_k, float eps) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_fp8_block(in, out, s, block_n, block_k, eps);
      },
      "input"_a, "output"_a, "scale"_a, "block_n"_a = 128, "block_k"_a = 128, "eps"_a = 1e-10f,
      "Per block_n x block_k block: s = max(amax, eps) / 448, q = e4m3(w / s).\n"
      "input [R, C] or [E, R, C] float; output same shape float8_e4m3fn; scale float32 "
      "[(E,) ceil(R / block_n), ceil(C / block_k)]. CPU.");
  m.def(
      "dequantize_fp8_block",
      [](Tensor input_, Tensor scale, Tensor output_, int block_n, int block_k) {
        TensorView in = input_.input("input"), s = scale.input("scale"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_fp8_block(in, s, out, block_n, block_k);
      },
      "input"_a, "scale"_a, "output"_a, "block_n"_a = 128, "block_k"_a = 128, "CPU.");
  m.def(
      "quantize_int8_per_row",
      [](Tensor input_, Tensor output_, Tensor scale) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_int8_per_row(in, out, s);
      },
      "input"_a, "output"_a, "scale"_a,
      "Symmetric int8, one scale per row: s = max(amax, 1e-7) / 127, q = RNE(x * 127 / amax).\n"
      "input [..., C] float; output [..., C] int8; scale float32 [...]. CPU.");
  m.def(
      "dequantize_int8_per_row",
      [](Tensor input_, Tensor scale, Tensor output_) {
        TensorView in = input_.input("input"), s = scale.input("scale"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_int8_per_row(in, s, out);
      },
      "input"_a, "scale"_a, "output"_a, "x = q * s. CPU.");
  m.def(
      "quantize_int4_group",
      [](Tensor input_, Tensor output_, Tensor scale, Tensor zero, int group_size) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale"), z = zero.output("zero");
        nb::gil_scoped_release nogil;
        moekit::quantize_int4_group(in, out, s, z, group_size);
      },
      "input"_a, "output"_a, "scale"_a, "zero"_a, "group_size"_a,
      "Asymmetric int4 groups with zero points (AWQ): s = max(max - min, 1e-5) / 15, z = "
      "clamp(RNE(-min / s), 0, 15), q = clamp(RNE(w / s) + z, 0, 15).\n"
      "input [..., C] float; output uint8 [..., ceil(C / 2)]; scale float32 [..., C / group]; "
      "zero uint8 [..., C / group]. CPU.");
  m.def(
      "dequantize_int4_group",
      [](Tensor input_, Tensor scale, Tensor zero, Tensor output_, int group_size) {
        TensorView in = input_.input("input"), s = scale.input("scale"), z = zero.input("zero"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_int4_group(in, s, z, out, group_size);
      },
      "input"_a, "scale"_a, "zero"_a, "output"_a, "group_size"_a, "w = (q - z) * s. CPU.");
  m.def(
      "nvfp4_global_scale",
      [](Tensor input_, Tensor global_scale) {
        TensorView in = input_.input("input"), gs = global_scale.output("global_scale");
        nb::gil_scoped_release nogil;
        moekit::nvfp4_global_scale(in, gs);
      },
      "input"_a, "global_scale"_a,
      "gs = 448 * 6 / amax per matrix: input [R, C] -> float32 [1]; [E, R, C] -> float32 [E]. "
      "CPU.");
  m.def(
      "quantize_nvfp4",
      [](Tensor input_, Tensor global_scale, Tensor output_, Tensor block_scale) {
        TensorView in = input_.input("input"), gs = global_scale.input("global_scale"),
                   out = output_.output("output"), bs = block_scale.output("block_scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_nvfp4(in, gs, out, bs);
      },
      "input"_a, "global_scale"_a, "output"_a, "block_scale"_a,
      "NVFP4: per 16 values sf = e4m3(gs * amax / 6), q = e2m1(x * gs / sf).\n"
      "output uint8 [..., ceil(C / 2)]; block_scale float8_e4m3fn [..., ceil(C / 16)] "
      "(row-major, unswizzled). CPU.");
  m.def(
      "dequantize_nvfp4",
      [](Tensor input_, Tensor block_scale, Tensor global_scale, Tensor output_) {
        TensorView in = input_.input("input"), bs = block_scale.input("block_scale"),
                   gs = global_scale.input("global_scale"), out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_nvfp4(in, bs, gs, out);
      },
      "input"_a, "block_scale"_a, "global_scale"_a, "output"_a, "x = e2m1(q) * sf / gs. CPU.");
  m.def(
      "quantize_mxfp8",
      [](Tensor input_, Tensor output_, Tensor scale) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_mxfp8(in, out, s);
      },
      "input"_a, "output"_a, "scale"_a,
      "MXFP8: per 32 values u = e8m0_ceil(amax / 448), q = e4m3(x / 2^(u - 127)).\n"
      "output float8_e4m3fn [..., C]; scale float8_e8m0fnu [..., ceil(C / 32)]. CPU.");
  m.def(
      "dequantize_mxfp8",
      [](Tensor input_, Tensor scale, Tensor output_) {
        TensorView in = input_.input("input"), s = scale.input("scale"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_mxfp8(in, s, out);
      },
      "input"_a, "scale"_a, "output"_a, "CPU.");
  m.def(
      "quantize_mxfp4",
      [](Tensor input_, Tensor output_, Tensor scale) {
        TensorView in = input_.input("input"), out = output_.output("output"),
                   s = scale.output("scale");
        nb::gil_scoped_release nogil;
        moekit::quantize_mxfp4(in, out, s);
      },
      "input"_a, "output"_a, "scale"_a,
      "MXFP4: per 32 values u = e8m0_ceil(amax / 6), q = e2m1(x / 2^(u - 127)).\n"
      "output uint8 [..., ceil(C / 2)]; scale float8_e8m0fnu [..., ceil(C / 32)]. CPU.");
  m.def(
      "dequantize_mxfp4",
      [](Tensor input_, Tensor scale, Tensor output_) {
        TensorView in = input_.input("input"), s = scale.input("scale"),
                   out = output_.output("output");
        nb::gil_scoped_release nogil;
        moekit::dequantize_mxfp4(in, s, out);
      },
      "input"_a, "scale"_a, "output"_a, "CPU.");
}

}  // namespace moekit::python
