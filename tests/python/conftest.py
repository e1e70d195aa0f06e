"""Shared fixtures of the Python suite. Every op test runs once per backend: numpy on the CPU
(always), torch on the CPU and torch on CUDA (each skipped where torch / a GPU is absent). Tensors
are made in numpy and moved to the backend, results come back as numpy arrays."""

import importlib.util

import numpy as np
import pytest

import moekit

HAS_TORCH = importlib.util.find_spec("torch") is not None
if HAS_TORCH:
    import torch

    HAS_CUDA = torch.cuda.is_available() and moekit.built_with_cuda()
else:
    torch = None
    HAS_CUDA = False

requires_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs torch with a CUDA GPU and moekit built with CUDA")


def fresh_rng():
    seed = np.random.SeedSequence().entropy % (2**32)
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even (NaN kept NaN)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FC0), rounded)


def bf16_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to(x, dtype):
    """The values of x after rounding to dtype ("float32", "float16", "bfloat16"), as float32."""
    if dtype == "bfloat16":
        return bf16_to_f32(bf16_bits(x))
    return np.asarray(x).astype(dtype).astype(np.float32)


class Backend:
    """Moves numpy data to one framework/device and back. bfloat16 / fp8 travel as bit patterns
    (uint16 / uint8 numpy arrays) on the numpy side."""

    def __init__(self, name):
        self.name = name
        self.is_torch = name.startswith("torch")
        self.device = "cuda" if name == "torch-cuda" else "cpu"

    def __repr__(self):
        return self.name

    def tensor(self, x, dtype=None):
        """numpy values -> backend tensor of moekit dtype `dtype` (default: x's dtype)."""
        x = np.asarray(x)
        dtype = dtype or str(x.dtype)
        if dtype == "bfloat16":
            bits = bf16_bits(x.astype(np.float32))
            if not self.is_torch:
                return moekit.typed(bits, "bfloat16")
            return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).to(self.device)
        x = np.ascontiguousarray(x.astype(dtype))
        if not self.is_torch:
            return x
        return torch.from_numpy(x).to(self.device)

    def empty(self, shape, dtype, fill=None):
        """A poisoned output: NaN for floats, `fill` or 0x7F7F7F7F-like bytes for integers."""
        if dtype in ("float32", "float16", "float64", "bfloat16"):
            value = np.full(shape, np.nan if fill is None else fill, dtype=np.float32)
        else:
            value = np.full(shape, 0x7F7F7F7F if fill is None else fill, dtype=np.int64)
            value = value.astype(dtype)
        return self.tensor(value, dtype)

    def numpy(self, t):
        """backend tensor -> numpy (bfloat16 -> float32 values)."""
        if isinstance(t, moekit.TypedArray):
            if t.dtype == "bfloat16":
                return bf16_to_f32(t.array)
            return np.asarray(t.array)
        if self.is_torch:
            if t.dtype == torch.bfloat16:
                return bf16_to_f32(t.view(torch.int16).cpu().numpy().view(np.uint16))
            return t.cpu().numpy()
        return np.asarray(t)

    def synchronize(self):
        if self.device == "cuda":
            torch.cuda.synchronize()


BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("torch-cpu", id="torch-cpu", marks=requires_torch),
    pytest.param("torch-cuda", id="torch-cuda", marks=requires_cuda),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return Backend(request.param)


@pytest.fixture
def cpu_backend():
    return Backend("numpy")


@pytest.fixture(params=moekit.supported_cpu_isas())
def every_cpu_isa(request):
    """Runs the test once per CPU path this machine supports, restoring the previous path."""
    previous = moekit.cpu_isa()
    moekit.set_cpu_isa(request.param)
    yield request.param
    moekit.set_cpu_isa(previous)
