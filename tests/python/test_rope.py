"""fused_qk_norm_rope (moekit/qk_norm_rope.h) through moekit.ops on every backend, against a numpy
RMSNorm + RoPE and the oracle."""

import numpy as np
import pytest

import moekit
from conftest import fresh_rng, round_to

pytestmark = pytest.mark.skipif(not hasattr(moekit._C, "fused_qk_norm_rope"),
                                reason="fused_qk_norm_rope not in this build")


def numpy_qk_norm_rope(qkv, hq, hk, hv, d, eps, qw, kw, base, neox, pos, rotary_dim):
    T = qkv.shape[0]
    out = qkv.astype(np.float64).reshape(T, hq + hk + hv, d).copy()
    r = rotary_dim
    inv_freq = base ** (-np.arange(0, r, 2, dtype=np.float64) / r)
    angle = pos.astype(np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    for heads, w in ((slice(0, hq), qw), (slice(hq, hq + hk), kw)):
        x = out[:, heads, :]
        x = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w.astype(np.float64)
        if neox:
            a, b = x[..., : r // 2].copy(), x[..., r // 2: r].copy()
            x[..., : r // 2], x[..., r // 2: r] = a * cos - b * sin, b * cos + a * sin
        else:
            a, b = x[..., 0:r:2].copy(), x[..., 1:r:2].copy()
            x[..., 0:r:2], x[..., 1:r:2] = a * cos - b * sin, b * cos + a * sin
        out[:, heads, :] = x
    return out.reshape(T, (hq + hk + hv) * d)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("T,hq,hk,hv,d", [(0, 4, 2, 2, 64), (1, 16, 8, 8, 128), (7, 12, 1, 1, 128),
                                          (3, 4, 2, 2, 256)])
@pytest.mark.parametrize("neox,partial", [(True, False), (False, False), (True, True)])
def test_fused_qk_norm_rope_matches_numpy(backend, dtype, T, hq, hk, hv, d, neox, partial):
    rng = fresh_rng()
    qkv = round_to(rng.standard_normal((T, (hq + hk + hv) * d)).astype(np.float32), dtype)
    qw = round_to((rng.random(d) + 0.5).astype(np.float32), dtype)
    kw = round_to((rng.random(d) + 0.5).astype(np.float32), dtype)
    pos = (np.arange(T) + 100).astype(np.int32)
    rotary_dim = d // 2 if partial else None
    x = backend.tensor(qkv, dtype)
    moekit.ops.fused_qk_norm_rope(x, hq, hk, hv, d, 1e-6, backend.tensor(qw, dtype),
                                  backend.tensor(kw, dtype), 1e4, neox, backend.tensor(pos), 1.0,
                                  0.0, 0.0, 1.0, rotary_dim)
    backend.synchronize()
    expected = numpy_qk_norm_rope(qkv, hq, hk, hv, d, 1e-6, qw, kw, 1e4, neox, pos,
                                  rotary_dim or d)
    got = backend.numpy(x)
    np.testing.assert_allclose(got, expected, rtol=2e-2, atol=2e-2)
    np.testing.assert_array_equal(got[:, (hq + hk) * d:], qkv[:, (hq + hk) * d:])  # V untouched


def test_fused_qk_norm_rope_every_isa_matches_the_oracle(cpu_backend, every_cpu_isa):
    rng = fresh_rng()
    T, hq, hk, hv, d = 9, 8, 2, 2, 128
    qkv = rng.standard_normal((T, (hq + hk + hv) * d)).astype(np.float32)
    qw, kw = rng.random(d) + 0.5, rng.random(d) + 0.5
    pos = rng.integers(0, 1 << 20, T).astype(np.int64)
    args = (hq, hk, hv, d, 1e-6, cpu_backend.tensor(qw, "bfloat16"),
            cpu_backend.tensor(kw, "bfloat16"), 1e6, True, pos, 4.0, 2.0, 40.0, 0.8)
    fast, oracle = cpu_backend.tensor(qkv, "bfloat16"), cpu_backend.tensor(qkv, "bfloat16")
    moekit.ops.fused_qk_norm_rope(fast, *args)
    moekit.reference.fused_qk_norm_rope(oracle, *args, -1)
    np.testing.assert_allclose(cpu_backend.numpy(fast), cpu_backend.numpy(oracle), rtol=8e-3,
                               atol=8e-3)


def test_fused_qk_norm_rope_errors(backend):
    x = backend.tensor(np.zeros((2, 3 * 64), np.float32), "bfloat16")
    w = backend.tensor(np.ones(64, np.float32), "bfloat16")
    with pytest.raises(ValueError, match="head_dim"):
        moekit.ops.fused_qk_norm_rope(x, 1, 1, 1, 48, 1e-6, w, w, 1e4, True,
                                      backend.tensor(np.zeros(2, np.int32)), 1.0, 0.0, 0.0, 1.0)
