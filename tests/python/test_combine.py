"""Combine ops (moekit/combine.h) through moekit.ops, on every backend, against numpy and the
oracle."""

import numpy as np
import pytest

import moekit
from conftest import fresh_rng, round_to

TOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,k,H", [(0, 2, 8), (1, 2, 128), (7, 6, 511), (33, 1, 24), (61, 9, 7)])
def test_moe_sum(backend, dtype, M, k, H):
    rng = fresh_rng()
    x = round_to(rng.standard_normal((M, k, H)).astype(np.float32), dtype)
    inp = backend.tensor(x, dtype)
    out = backend.empty((M, H), dtype)
    moekit.ops.moe_sum(inp, out)
    backend.synchronize()
    expected = round_to(x.astype(np.float64).sum(1), dtype)
    np.testing.assert_allclose(backend.numpy(out), expected, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_moe_sum_every_isa_matches_reference(cpu_backend, every_cpu_isa, dtype):
    rng = fresh_rng()
    x = rng.standard_normal((13, 3, 40)).astype(np.float32)
    got, expected = cpu_backend.empty((13, 40), dtype), cpu_backend.empty((13, 40), dtype)
    moekit.ops.moe_sum(cpu_backend.tensor(x, dtype), got)
    moekit.reference.moe_sum(cpu_backend.tensor(x, dtype), expected)
    # The fast path accumulates in fp32, the oracle in fp64: equal within the last fp32 bits.
    tol = 1e-6 if dtype == "float32" else 2**-8
    np.testing.assert_allclose(cpu_backend.numpy(got), cpu_backend.numpy(expected), rtol=tol, atol=tol)


def test_moe_sum_errors(backend):
    x = backend.tensor(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="output"):
        moekit.ops.moe_sum(x, backend.empty((2, 5), "float32"))
    with pytest.raises(ValueError, match="input"):
        moekit.ops.moe_sum(backend.tensor(np.zeros((2, 4), np.float32)), backend.empty((2, 4), "float32"))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,k,H", [(0, 2, 8), (1, 2, 512), (7, 9, 7), (64, 4, 1032)])
@pytest.mark.parametrize("rsf", [1.0, 0.125, 2.5])
def test_moe_sum_reduce(backend, dtype, M, k, H, rsf):
    rng = fresh_rng()
    x = round_to(rng.standard_normal((M, k, H)).astype(np.float32), dtype)
    out = backend.empty((M, H), dtype)
    moekit.ops.moe_sum_reduce(backend.tensor(x, dtype), out, rsf)
    backend.synchronize()
    expected = round_to(rsf * x.astype(np.float64).sum(1), dtype)
    np.testing.assert_allclose(backend.numpy(out), expected, rtol=TOL[dtype], atol=TOL[dtype])


def test_moe_sum_reduce_default_scale_is_one(cpu_backend):
    x = np.ones((2, 3, 4), np.float32)
    out = np.zeros((2, 4), np.float32)
    moekit.ops.moe_sum_reduce(x, out)
    np.testing.assert_array_equal(out, 3.0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,k,H", [(0, 2, 8), (32, 2, 256), (5, 8, 7)])
@pytest.mark.parametrize("factors", ["none", "same", "float32"])
def test_apply_shuffle_mul_sum(backend, dtype, M, k, H, factors):
    rng = fresh_rng()
    x = round_to(rng.standard_normal((M * k, H)).astype(np.float32), dtype)
    perm = rng.permutation(M * k).astype(np.int32)
    if M:
        perm[1] = -1  # contributes nothing
    f = rng.random(M * k).astype(np.float32)
    if factors == "same":
        f = round_to(f, dtype)
    out = backend.empty((M, H), dtype)
    f_arg = None if factors == "none" else backend.tensor(f, dtype if factors == "same" else "float32")
    moekit.ops.apply_shuffle_mul_sum(backend.tensor(x, dtype), out, backend.tensor(perm), f_arg)
    backend.synchronize()
    weights = np.ones(M * k) if factors == "none" else f.astype(np.float64)
    gathered = np.where((perm >= 0)[:, None], x[np.maximum(perm, 0)], 0) * weights[:, None]
    expected = round_to(gathered.reshape(M, k, H).sum(1), dtype)
    tol = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}[dtype]
    np.testing.assert_allclose(backend.numpy(out), expected, rtol=tol, atol=tol)
