"""The reference quantisers and dequantisers of every expert weight scheme (CPU tensors, outputs
passed in). Tests and benchmarks build quantised weights and activations with these; the oracle
quantises activations with the same math. See each function's docstring for shapes."""

from . import _C

quantize_fp8_per_token_group = _C.quantize_fp8_per_token_group
dequantize_fp8_per_token_group = _C.dequantize_fp8_per_token_group
quantize_fp8_block = _C.quantize_fp8_block
dequantize_fp8_block = _C.dequantize_fp8_block
quantize_int8_per_row = _C.quantize_int8_per_row
dequantize_int8_per_row = _C.dequantize_int8_per_row
quantize_int4_group = _C.quantize_int4_group
dequantize_int4_group = _C.dequantize_int4_group
nvfp4_global_scale = _C.nvfp4_global_scale
quantize_nvfp4 = _C.quantize_nvfp4
dequantize_nvfp4 = _C.dequantize_nvfp4
quantize_mxfp8 = _C.quantize_mxfp8
dequantize_mxfp8 = _C.dequantize_mxfp8
quantize_mxfp4 = _C.quantize_mxfp4
dequantize_mxfp4 = _C.dequantize_mxfp4

__all__ = [name for name in dir() if name.startswith(("quantize", "dequantize", "nvfp4"))]
