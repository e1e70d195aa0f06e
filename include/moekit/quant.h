// Quantise / dequantise every weight and activation format of the expert schemes (experts.h), on
// the CPU. These are the reference producers: tests and benchmarks build quantised weights and
// activations with them, and the oracle (reference::fused_experts) quantises activations with the
// same per-group math, so a fast kernel that quantises on the fly can be compared bit-for-bit.
//
// Common rules:
// - All tensors are contiguous host (CPU) tensors; the last dimension C is the quantised (K)
//   dimension and every leading dimension is independent (rows, or experts x rows for weights).
// - Float inputs are fp32, bf16 or fp16; dequantised outputs are fp32, bf16 or fp16 (RNE).
// - Scales have one entry per group along C; a last partial group gets its own scale
//   (ceil(C / group) entries per row). Packed 4-bit outputs hold ceil(C / 2) bytes per row, element
//   2j in the low nibble; an odd C leaves the last high nibble 0.
// - Arithmetic is fp32 in the order written below; rounding is RNE unless stated.
// - A group whose amax is not finite (NaN or Inf inside) gets a NaN scale marker (fp32 NaN, e4m3
//   0x7F or e8m0 0xFF) and zero codes, so it dequantises to NaN: non-finite values stay in their row.
// Sizes of 0 are no-ops. Bad arguments throw moekit::Error naming the argument.
#pragma once

#include "moekit/tensor.h"

namespace moekit {

// ---- FP8 e4m3, per token group (activations, DeepSeek 1 x group_size) ----
// Per row and group of `group_size` columns: s = max(amax, eps) / 448, q = e4m3_satfinite(x / s).
//   input  [..., C] float;  output [..., C] e4m3;  scale fp32 [..., ceil(C / group_size)]
MOEKIT_API void quantize_fp8_per_token_group(TensorView input, TensorView output, TensorView scale,
                                             int group_size, float eps = 1e-10f);
// x = e4m3(q) * s.
MOEKIT_API void dequantize_fp8_per_token_group(TensorView input, TensorView scale,
                                               TensorView output, int group_size);

// ---- FP8 e4m3, 2-D blocks (weights, block_n rows x block_k cols) ----
// Per block: s = max(amax, eps) / 448, q = e4m3_satfinite(w / s).
//   input  [R, C] or [E, R, C] float;  output same shape e4m3;
//   scale  fp32 [ceil(R / block_n), ceil(C / block_k)] (with a leading E for 3-D input)
MOEKIT_API void quantize_fp8_block(TensorView input, TensorView output, TensorView scale,
                                   int block_n, int block_k, float eps = 1e-10f);
MOEKIT_API void dequantize_fp8_block(TensorView input, TensorView scale, TensorView output,
                                     int block_n, int block_k);

// ---- INT8, symmetric, one scale per row (activations per token: cpu-moe.md 1.3; weights per
// output channel: [E, R, C] -> scale [E, R]) ----
// amax = max(max |x|, 1e-7); s = amax / 127 (returned); inv = 127 / amax (computed separately);
// q = RNE(x * inv) clamped to [-127, 127]. Non-finite amax -> s = NaN, q = 0.
//   input  [..., C] float;  output [..., C] int8;  scale fp32 [...] (the input shape without C)
MOEKIT_API void quantize_int8_per_row(TensorView input, TensorView output, TensorView scale);
// x = q * s.
MOEKIT_API void dequantize_int8_per_row(TensorView input, TensorView scale, TensorView output);

// ---- INT4, asymmetric groups with zero points (weights; AWQ convention) ----
// Per row and group of `group_size` columns (C % group_size == 0):
//   s = max(max - min, 1e-5) / 15, z = clamp(RNE(-min / s), 0, 15), q = clamp(RNE(w / s) + z, 0, 15).
//   input  [..., C] float;  output uint8 [..., ceil(C / 2)] (codes 0..15, two per byte);
//   scale  fp32 [..., C / group_size];  zero uint8 [..., C / group_size] (0..15)
MOEKIT_API void quantize_int4_group(TensorView input, TensorView output, TensorView scale,
                                    TensorView zero, int group_size);
// w = (q - z) * s.
MOEKIT_API void dequantize_int4_group(TensorView input, TensorView scale, TensorView zero,
                                      TensorView output, int group_size);

// ---- NVFP4: e2m1 values, e4m3 scale per 16, fp32 global scale per matrix (gpu-ops.md 4.3) ----
// One global scale per matrix: gs = 448 * 6 / amax(matrix) (1 when amax = 0, NaN when not finite).
//   input [R, C] -> global_scale fp32 [1];  input [E, R, C] -> global_scale fp32 [E]
MOEKIT_API void nvfp4_global_scale(TensorView input, TensorView global_scale);
// Per block of 16: sf = e4m3(gs * amax / 6); q = e2m1_satfinite(x * (gs / sf)) (q = 0 if sf = 0).
//   input  [R, C] or [E, R, C] float;  global_scale as above;
//   output uint8 [..., ceil(C / 2)];  block_scale e4m3 [..., ceil(C / 16)] (row-major, unswizzled)
MOEKIT_API void quantize_nvfp4(TensorView input, TensorView global_scale, TensorView output,
                               TensorView block_scale);
// x = e2m1(q) * sf / gs.
MOEKIT_API void dequantize_nvfp4(TensorView input, TensorView block_scale, TensorView global_scale,
                                 TensorView output);

// ---- MXFP8: e4m3 values, e8m0 scale per 32 (OCP MX; gpu-ops.md 4.4) ----
// Per block of 32: u = e8m0_ceil(amax / 448) (smallest power of two >= amax / 448; 0x00 for an
// all-zero block), q = e4m3_satfinite(x / 2^(u - 127)).
//   input  [..., C] float;  output e4m3 [..., C];  scale e8m0 [..., ceil(C / 32)]
MOEKIT_API void quantize_mxfp8(TensorView input, TensorView output, TensorView scale);
MOEKIT_API void dequantize_mxfp8(TensorView input, TensorView scale, TensorView output);

// ---- MXFP4: e2m1 values, e8m0 scale per 32 ----
// Per block of 32: u = e8m0_ceil(amax / 6) (round-up scale: no clipping, as triton_kernels'
// default), q = e2m1(x / 2^(u - 127)).
//   input  [..., C] float;  output uint8 [..., ceil(C / 2)];  scale e8m0 [..., ceil(C / 32)]
MOEKIT_API void quantize_mxfp4(TensorView input, TensorView output, TensorView scale);
MOEKIT_API void dequantize_mxfp4(TensorView input, TensorView scale, TensorView output);

}  // namespace moekit
