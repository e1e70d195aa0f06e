"""The binding's plumbing: tensor conversion (dtypes, strides, devices), error translation, the CPU
controls, and that importing moekit does not import torch."""

import subprocess
import sys

import numpy as np
import pytest

import moekit


def test_import_does_not_import_torch():
    code = "import sys, moekit, moekit.ops, moekit.reference; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cpu_controls():
    supported = moekit.supported_cpu_isas()
    assert supported[0] == "scalar"
    assert moekit.best_cpu_isa() == supported[-1]
    assert moekit.cpu_isa() in supported
    previous = moekit.cpu_isa()
    try:
        for isa in supported:
            moekit.set_cpu_isa(isa)
            assert moekit.cpu_isa() == isa
    finally:
        moekit.set_cpu_isa(previous)
    threads = moekit.cpu_threads()
    assert threads >= 1
    moekit.set_cpu_threads(1)
    assert moekit.cpu_threads() == 1
    moekit.set_cpu_threads(threads)
    assert isinstance(moekit.cpu_features(), str)
    assert isinstance(moekit.built_with_cuda(), bool)


def test_unknown_cpu_isa_is_a_value_error():
    with pytest.raises(ValueError, match="isa"):
        moekit.set_cpu_isa("sse9")


def test_unsupported_cpu_isa_is_a_runtime_error():
    missing = [i for i in ("avx2", "avx512", "avx512bf16", "amx") if i not in moekit.supported_cpu_isas()]
    if not missing:
        pytest.skip("this CPU supports every path")
    with pytest.raises(RuntimeError, match=missing[-1]):
        moekit.set_cpu_isa(missing[-1])


def test_bad_threads():
    with pytest.raises(ValueError):
        moekit.set_cpu_threads(0)


def test_invalid_argument_is_value_error_naming_the_argument():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"output: expected shape \[2, 4\], got \[2, 3\]"):
        moekit.ops.moe_sum(x, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"output: expected the dtype of input \(float32\), got float16"):
        moekit.ops.moe_sum(x, np.zeros((2, 4), np.float16))


def test_non_tensor_argument_names_it():
    with pytest.raises(ValueError, match="input: expected a tensor that exports DLPack.*got list"):
        moekit.ops.moe_sum([[[1.0]]], np.zeros((1, 1), np.float32))
    with pytest.raises(TypeError):
        moekit.ops.moe_sum(None, np.zeros((1, 1), np.float32))


def test_unsupported_element_type():
    with pytest.raises(ValueError, match="input: unsupported element type"):
        moekit.ops.moe_sum(np.zeros((1, 2, 3), np.int16), np.zeros((1, 3), np.float32))


def test_read_only_output_is_rejected():
    out = np.zeros((1, 3), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="output: expected a writable tensor"):
        moekit.ops.moe_sum(np.zeros((1, 2, 3), np.float32), out)


def test_read_only_input_is_accepted():
    x = np.ones((1, 2, 3), np.float32)
    x.setflags(write=False)
    out = np.zeros((1, 3), np.float32)
    moekit.ops.moe_sum(x, out)
    np.testing.assert_array_equal(out, 2.0)


def test_strides_travel():
    # A transposed view is not contiguous: the op's contiguity check must see the real strides.
    x = np.zeros((4, 2, 3), np.float32).transpose(2, 1, 0)
    with pytest.raises(ValueError, match="input: expected a contiguous tensor"):
        moekit.ops.moe_sum(x, np.zeros((3, 4), np.float32))


def test_typed_bfloat16():
    from conftest import bf16_bits, bf16_to_f32

    x = np.random.default_rng(0).standard_normal((3, 2, 5)).astype(np.float32)
    bits = bf16_bits(x)
    out = np.zeros((3, 5), np.uint16)
    moekit.ops.moe_sum(moekit.typed(bits, "bfloat16"), moekit.typed(out, "bfloat16"))
    expected = bf16_bits(bf16_to_f32(bits).sum(1))
    np.testing.assert_array_equal(out, expected)


def test_typed_checks_element_size():
    with pytest.raises(ValueError, match="16-bit element view"):
        moekit.ops.moe_sum(moekit.typed(np.zeros((1, 2, 3), np.uint8), "bfloat16"),
                           np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="dtype: expected one of"):
        moekit.typed(np.zeros(3, np.uint8), "float4")
    t = moekit.typed(np.zeros(3, np.uint8), "float8_e4m3fn")
    assert t.dtype == "float8_e4m3fn"


def test_ml_dtypes_arrays_are_recognised():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(1).standard_normal((2, 3, 4)).astype(ml_dtypes.bfloat16)
    out = np.zeros((2, 4), ml_dtypes.bfloat16)
    moekit.ops.moe_sum(x, out)
    expected = x.astype(np.float32).sum(1).astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))


def test_stubs_and_docstrings():
    assert "[M, k, H]" in moekit.ops.moe_sum.__doc__
    assert "[M, k, H]" in moekit._C.moe_sum.__doc__
    import pathlib

    assert (pathlib.Path(moekit.__file__).parent / "_C.pyi").exists()


class _Float8Array:
    """Stands in for an array whose dtype DLPack cannot carry (ml_dtypes, older torch fp8): it has
    a dtype name and a view() of its bytes, but no __dlpack__."""

    def __init__(self, data):
        self.data = data
        self.dtype = "float8_e4m3fn"

    def view(self, dtype):
        return self.data.view(dtype)


def test_arrays_without_dlpack_dtype_go_through_a_byte_view():
    # moekit.quant.dequantize_fp8_per_token_group reads e4m3 codes: 0x38 = 1.0, 0x40 = 2.0.
    codes = np.array([[0x38, 0x40, 0x00, 0xB8]], np.uint8)
    out = np.zeros((1, 4), np.float32)
    moekit.quant.dequantize_fp8_per_token_group(_Float8Array(codes), np.ones((1, 1), np.float32),
                                                out, 4)
    np.testing.assert_array_equal(out, [[1.0, 2.0, 0.0, -1.0]])
