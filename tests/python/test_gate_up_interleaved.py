"""gate_up_interleaved (w13 rows 2j = gate_j, 2j+1 = up_j) through the Python API: the
interleave_gate_up op, the option, and every expert entry point giving the halves result."""

import numpy as np
import pytest

import moekit
import moekit.ops
from conftest import bf16_bits, bf16_to_f32, fresh_rng, round_to


def bf16(x):
    return moekit.typed(bf16_bits(np.asarray(x, np.float32)), "bfloat16")


def by_hand(w, dim):
    """Interleave along dim with numpy slicing (independent of the op)."""
    w = np.moveaxis(np.asarray(w), dim, 0)
    half = w.shape[0] // 2
    out = np.empty_like(w)
    out[0::2], out[1::2] = w[:half], w[half:]
    return np.moveaxis(out, 0, dim)


def test_option_round_trip():
    o = moekit.FusedExpertsOptions(activation="swiglu_oai", swiglu_alpha=1.702, swiglu_limit=7.0,
                                   gate_up_interleaved=True)
    assert o.gate_up_interleaved
    o.gate_up_interleaved = False
    assert not moekit.FusedExpertsOptions().gate_up_interleaved and not o.gate_up_interleaved


@pytest.mark.parametrize("shape,dim,dtype", [((3, 26, 40), 1, "bfloat16"), ((3, 26), 1, "float32"),
                                             ((18, 7), 0, "float16"), ((2, 10, 5), -2, "uint8")])
def test_interleave_gate_up_matches_numpy(backend, shape, dim, dtype):
    rng = fresh_rng()
    values = rng.integers(0, 200, size=shape) if dtype == "uint8" else rng.standard_normal(shape)
    w = round_to(values.astype(np.float32), dtype) if dtype != "uint8" else values.astype(np.uint8)
    got = moekit.ops.interleave_gate_up(backend.tensor(w, dtype), dim=dim)
    backend.synchronize()
    np.testing.assert_array_equal(backend.numpy(got), by_hand(w, dim))
    out = backend.empty(shape, dtype)
    assert moekit.ops.interleave_gate_up(backend.tensor(w, dtype), out, dim) is out
    backend.synchronize()
    np.testing.assert_array_equal(backend.numpy(out), by_hand(w, dim))


def test_interleave_gate_up_errors():
    w = np.zeros((2, 6, 8), np.float32)
    with pytest.raises(ValueError, match="out: expected memory that does not overlap w13"):
        moekit.ops.interleave_gate_up(w, w, 1)
    with pytest.raises(ValueError, match="w13: expected an even size"):
        moekit.ops.interleave_gate_up(np.zeros((2, 5, 8), np.float32), dim=1)
    with pytest.raises(ValueError, match="dim: expected a dimension of w13"):
        moekit.ops.interleave_gate_up(w, dim=3)


def _problem(rng, M, E, k, H, I):
    x = round_to(rng.standard_normal((M, H)).astype(np.float32), "bfloat16")
    w13 = round_to((rng.standard_normal((E, 2 * I, H)) * 0.1).astype(np.float32), "bfloat16")
    w2 = round_to((rng.standard_normal((E, H, I)) * 0.1).astype(np.float32), "bfloat16")
    b13 = (rng.standard_normal((E, 2 * I)) * 0.1).astype(np.float32)
    ids = np.array([rng.permutation(E)[:k] for _ in range(M)], np.int32).reshape(M, k)
    weights = rng.random((M, k)).astype(np.float32)
    return x, w13, w2, b13, weights, ids


SWIGLU = dict(activation="swiglu_oai", swiglu_alpha=1.702, swiglu_limit=7.0)


def test_reference_interleaved_equals_halves():
    rng = fresh_rng()
    x, w13, w2, b13, weights, ids = _problem(rng, 6, 5, 2, 32, 24)
    outs = []
    for interleaved in (False, True):
        a, b = (by_hand(w13, 1), by_hand(b13, 1)) if interleaved else (w13, b13)
        out = np.zeros(x.shape, np.uint16)
        moekit.reference.fused_experts(bf16(x), moekit.ExpertWeights(bf16(a), bias=b),
                                       moekit.ExpertWeights(bf16(w2)), weights, ids,
                                       moekit.typed(out, "bfloat16"),
                                       moekit.FusedExpertsOptions(gate_up_interleaved=interleaved, **SWIGLU))
        outs.append(out)
    np.testing.assert_array_equal(outs[1], outs[0])
    with pytest.raises(ValueError, match="gate_up_interleaved: expected false for the no-mul"):
        moekit.reference.fused_experts(bf16(x), moekit.ExpertWeights(bf16(w13[:, :24])),
                                       moekit.ExpertWeights(bf16(w2)), weights, ids,
                                       moekit.typed(np.zeros(x.shape, np.uint16), "bfloat16"),
                                       moekit.FusedExpertsOptions(activation="silu",
                                                                  gate_up_interleaved=True))


def _has_experts(backend):
    return hasattr(moekit._C, "fused_experts" if backend.device == "cuda" else "fused_experts_cpu")


@pytest.mark.parametrize("M,E,k,H,I", [(5, 8, 2, 64, 32), (9, 6, 3, 128, 72)])
def test_fused_moe_and_fused_experts_interleaved_equal_halves(backend, M, E, k, H, I):
    if not _has_experts(backend):
        pytest.skip("experts not in this build")
    rng = fresh_rng()
    x, w13, w2, _, weights, ids = _problem(rng, M, E, k, H, I)
    w13i = by_hand(w13, 1)
    logits = rng.standard_normal((M, E)).astype(np.float32)
    t = backend.tensor
    moe = [moekit.fused_moe(t(x, "bfloat16"), t(a, "bfloat16"), t(w2, "bfloat16"), t(logits), k,
                            gate_up_interleaved=flag, **SWIGLU)
           for a, flag in ((w13, False), (w13i, True))]
    if backend.device == "cpu":  # CPU fused_experts reads packed weights
        w13p = moekit.ops.pack_moe_weights(t(w13, "bfloat16"), "w13")
        w13ip = moekit.ops.pack_moe_weights(t(w13i, "bfloat16"), "w13", "interleaved")
        w2p = moekit.ops.pack_moe_weights(t(w2, "bfloat16"), "w2")
        pairs = ((w13p, w2p, False), (w13ip, w2p, True))
        with pytest.raises(ValueError, match="gate_up_interleaved"):
            moekit.ops.fused_experts(t(x, "bfloat16"), w13p, w2p, t(weights), t(ids),
                                     gate_up_interleaved=True, **SWIGLU)
    else:
        pairs = ((t(w13, "bfloat16"), t(w2, "bfloat16"), False),
                 (t(w13i, "bfloat16"), t(w2, "bfloat16"), True))
    experts = [moekit.ops.fused_experts(t(x, "bfloat16"), a, b, t(weights), t(ids),
                                        gate_up_interleaved=flag, **SWIGLU)
               for a, b, flag in pairs]
    backend.synchronize()
    np.testing.assert_array_equal(backend.numpy(moe[1]), backend.numpy(moe[0]))
    np.testing.assert_array_equal(backend.numpy(experts[1]), backend.numpy(experts[0]))
    assert np.isfinite(backend.numpy(experts[0])).all()
