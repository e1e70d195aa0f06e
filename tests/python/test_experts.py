"""Expert types, the oracle MoE layer and the quantisers through the binding (CPU, numpy)."""

import numpy as np
import pytest

import moekit
from conftest import bf16_bits, bf16_to_f32, fresh_rng, round_to


def bf16(x):
    return moekit.typed(bf16_bits(np.asarray(x, np.float32)), "bfloat16")


def silu(x):
    return x / (1 + np.exp(-x))


def numpy_moe(x, w13, w2, topk_weights, topk_ids, rsf=1.0):
    """fp64 MoE layer with the intermediate activation rounded to bf16 (SGLang's rounding)."""
    I = w2.shape[2]
    out = np.zeros((x.shape[0], x.shape[1]))
    for m in range(x.shape[0]):
        for t in range(topk_ids.shape[1]):
            e = topk_ids[m, t]
            if e < 0:
                continue
            h = w13[e].astype(np.float64) @ x[m]
            a = round_to(silu(h[:I]) * h[I:], "bfloat16").astype(np.float64)
            out[m] += topk_weights[m, t] * (w2[e].astype(np.float64) @ a)
    return rsf * out


def test_options_round_trip_and_validate():
    o = moekit.FusedExpertsOptions(scheme="fp8_block_w8a8", activation="swiglu_oai",
                                   swiglu_alpha=1.702, swiglu_limit=7.0, routed_scaling_factor=2.5)
    assert o.scheme == "fp8_block_w8a8" and o.activation == "swiglu_oai"
    assert o.block_n == 128 and o.routed_scaling_factor == 2.5
    o.scheme = "bf16"
    assert o.scheme == "bf16"
    with pytest.raises(ValueError, match="scheme: expected one of bf16"):
        moekit.FusedExpertsOptions(scheme="fp7")
    with pytest.raises(ValueError, match="activation"):
        moekit.FusedExpertsOptions(activation="relu")
    w = moekit.ExpertWeights(np.zeros((1, 2, 3), np.float32))
    assert w.scale is None and w.weight.shape == (1, 2, 3)


@pytest.mark.parametrize("M,E,k,H,I", [(0, 4, 2, 16, 8), (5, 6, 2, 32, 16), (3, 3, 3, 24, 8)])
def test_reference_fused_experts_bf16(M, E, k, H, I):
    rng = fresh_rng()
    x = round_to(rng.standard_normal((M, H)).astype(np.float32), "bfloat16")
    w13 = round_to((rng.standard_normal((E, 2 * I, H)) * 0.2).astype(np.float32), "bfloat16")
    w2 = round_to((rng.standard_normal((E, H, I)) * 0.2).astype(np.float32), "bfloat16")
    ids = np.array([rng.permutation(E)[:k] for _ in range(M)], np.int32).reshape(M, k)
    if M:
        ids[0, -1] = -1  # a dropped slot contributes nothing
    weights = rng.random((M, k)).astype(np.float32)
    out = np.full((M, H), 0x7FC0, np.uint16)
    moekit.reference.fused_experts(bf16(x), moekit.ExpertWeights(bf16(w13)),
                                   moekit.ExpertWeights(bf16(w2)), weights, ids,
                                   moekit.typed(out, "bfloat16"),
                                   moekit.FusedExpertsOptions(routed_scaling_factor=1.5))
    expected = numpy_moe(x, w13, w2, weights, ids, 1.5)
    np.testing.assert_allclose(bf16_to_f32(out), expected, rtol=1e-2, atol=1e-2)


def test_reference_fused_experts_names_bad_weights():
    x = bf16(np.zeros((2, 16)))
    w13 = moekit.ExpertWeights(bf16(np.zeros((3, 8, 16))), scale=np.ones(3, np.float32))
    w2 = moekit.ExpertWeights(bf16(np.zeros((3, 16, 4))))
    out = moekit.typed(np.zeros((2, 16), np.uint16), "bfloat16")
    with pytest.raises(ValueError, match="w13.scale"):
        moekit.reference.fused_experts(x, w13, w2, np.ones((2, 1), np.float32),
                                       np.zeros((2, 1), np.int32), out)


def test_quantizers_round_trip():
    rng = fresh_rng()
    w = rng.standard_normal((2, 256, 256)).astype(np.float32)
    q = np.empty(w.shape, np.uint8)
    s = np.empty((2, 2, 2), np.float32)
    moekit.quant.quantize_fp8_block(w, moekit.typed(q, "float8_e4m3fn"), s, 128, 128)
    back = np.empty_like(w)
    moekit.quant.dequantize_fp8_block(moekit.typed(q, "float8_e4m3fn"), s, back, 128, 128)
    np.testing.assert_allclose(back, w, rtol=0.07, atol=np.abs(w).max() / 448 * 2)

    x = rng.standard_normal((7, 100)).astype(np.float32)
    q8 = np.empty((7, 100), np.int8)
    s8 = np.empty(7, np.float32)
    moekit.quant.quantize_int8_per_row(x, q8, s8)
    np.testing.assert_allclose(s8, np.abs(x).max(1) / 127, rtol=1e-6)
    back = np.empty_like(x)
    moekit.quant.dequantize_int8_per_row(q8, s8, back)
    np.testing.assert_allclose(back, x, atol=s8.max())


def _moe_problem(rng, M, E, k, H, I):
    x = round_to(rng.standard_normal((M, H)).astype(np.float32), "bfloat16")
    w13 = round_to((rng.standard_normal((E, 2 * I, H)) * 0.1).astype(np.float32), "bfloat16")
    w2 = round_to((rng.standard_normal((E, H, I)) * 0.1).astype(np.float32), "bfloat16")
    ids = np.array([rng.permutation(E)[:k] for _ in range(M)], np.int32).reshape(M, k)
    weights = rng.random((M, k)).astype(np.float32)
    return x, w13, w2, weights, ids


def _reference_output(x, w13, w2, weights, ids, rsf=1.0):
    out = np.zeros(x.shape, np.uint16)
    moekit.reference.fused_experts(bf16(x), moekit.ExpertWeights(bf16(w13)),
                                   moekit.ExpertWeights(bf16(w2)), weights, ids,
                                   moekit.typed(out, "bfloat16"),
                                   moekit.FusedExpertsOptions(routed_scaling_factor=rsf))
    return bf16_to_f32(out)


needs_cpu_experts = pytest.mark.skipif(not hasattr(moekit._C, "fused_experts_cpu"),
                                       reason="CPU experts not in this build")
needs_gpu_experts = pytest.mark.skipif(not hasattr(moekit._C, "fused_experts"),
                                       reason="GPU experts not in this build")


@needs_cpu_experts
def test_pack_round_trip(cpu_backend):
    rng = fresh_rng()
    w = round_to(rng.standard_normal((3, 40, 48)).astype(np.float32), "bfloat16")
    packed = moekit.ops.pack_moe_weights(bf16(w), "w13")
    assert packed.ndim == 1 and packed.dtype == np.uint8
    info = moekit._C.packed_weight_info(packed)
    assert info["role"] == "w13" and info["experts"] == 3 and info["rows"] == 40
    back = np.zeros(w.shape, np.uint16)
    moekit._C.unpack_moe_weights(packed, moekit.typed(back, "bfloat16"))
    np.testing.assert_array_equal(bf16_to_f32(back), w)


@needs_cpu_experts
@pytest.mark.parametrize("M,E,k,H,I", [(0, 4, 2, 32, 32), (3, 8, 2, 64, 32), (17, 6, 3, 40, 24)])
def test_fused_experts_cpu_matches_the_oracle(backend, every_cpu_isa, M, E, k, H, I):
    if backend.device != "cpu":
        pytest.skip("CPU op")
    rng = fresh_rng()
    x, w13, w2, weights, ids = _moe_problem(rng, M, E, k, H, I)
    w13p = moekit.ops.pack_moe_weights(backend.tensor(w13, "bfloat16"), "w13")
    w2p = moekit.ops.pack_moe_weights(backend.tensor(w2, "bfloat16"), "w2")
    out = moekit.ops.fused_experts(backend.tensor(x, "bfloat16"), w13p, w2p,
                                   backend.tensor(weights), backend.tensor(ids),
                                   routed_scaling_factor=2.0)
    np.testing.assert_allclose(backend.numpy(out), _reference_output(x, w13, w2, weights, ids, 2.0),
                               rtol=2e-2, atol=2e-2)
    sgl = moekit.ops.fused_experts_cpu(backend.tensor(x, "bfloat16"), w13p, w2p,
                                       backend.tensor(weights), backend.tensor(ids), False, 0)
    np.testing.assert_allclose(backend.numpy(sgl), _reference_output(x, w13, w2, weights, ids),
                               rtol=2e-2, atol=2e-2)


@needs_gpu_experts
@pytest.mark.parametrize("M,E,k,H,I", [(0, 4, 2, 64, 32), (1, 8, 2, 128, 64), (37, 16, 4, 256, 128)])
def test_fused_experts_gpu_matches_the_oracle(backend, M, E, k, H, I):
    if backend.device != "cuda":
        pytest.skip("CUDA op")
    rng = fresh_rng()
    x, w13, w2, weights, ids = _moe_problem(rng, M, E, k, H, I)
    out = moekit.ops.fused_experts(backend.tensor(x, "bfloat16"), backend.tensor(w13, "bfloat16"),
                                   backend.tensor(w2, "bfloat16"), backend.tensor(weights),
                                   backend.tensor(ids), routed_scaling_factor=2.0)
    backend.synchronize()
    np.testing.assert_allclose(backend.numpy(out), _reference_output(x, w13, w2, weights, ids, 2.0),
                               rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("M,E,k,H,I", [(5, 8, 2, 64, 32)])
def test_fused_moe_routes_then_computes(backend, M, E, k, H, I):
    gpu = backend.device == "cuda"
    if not hasattr(moekit._C, "fused_experts" if gpu else "fused_experts_cpu"):
        pytest.skip("experts not in this build")
    rng = fresh_rng()
    x, w13, w2, _, _ = _moe_problem(rng, M, E, k, H, I)
    logits = rng.standard_normal((M, E)).astype(np.float32)
    out = moekit.fused_moe(backend.tensor(x, "bfloat16"), backend.tensor(w13, "bfloat16"),
                           backend.tensor(w2, "bfloat16"), backend.tensor(logits), k)
    backend.synchronize()
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ids = np.argsort(-p, axis=1, kind="stable")[:, :k].astype(np.int32)
    weights = np.take_along_axis(p, ids, 1)
    weights = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
    np.testing.assert_allclose(backend.numpy(out), _reference_output(x, w13, w2, weights, ids),
                               rtol=2e-2, atol=2e-2)
@pytest.mark.skipif(not hasattr(moekit._C, "fused_experts"), reason="GPU experts not in this build")
def test_gpu_fused_experts_rejects_cpu_tensors():
    x = bf16(np.zeros((2, 64)))
    w13 = moekit.ExpertWeights(bf16(np.zeros((4, 64, 64))))
    w2 = moekit.ExpertWeights(bf16(np.zeros((4, 64, 32))))
    ids, weights = np.zeros((2, 2), np.int32), np.ones((2, 2), np.float32)
    size = moekit._C.fused_experts_workspace_size(x, w13, w2, ids)
    assert size > 0
    with pytest.raises(RuntimeError, match="hidden: expected a CUDA tensor"):
        moekit._C.fused_experts(x, w13, w2, weights, ids, bf16(np.zeros((2, 64))),
                                np.zeros(size, np.uint8))


@needs_cpu_experts
@pytest.mark.parametrize("with_routed", [False, True])
def test_shared_expert_cpu_matches_the_oracle(cpu_backend, every_cpu_isa, with_routed):
    rng = fresh_rng()
    M, H, I = 9, 64, 32
    x = round_to(rng.standard_normal((M, H)).astype(np.float32), "bfloat16")
    w13 = round_to((rng.standard_normal((2 * I, H)) * 0.1).astype(np.float32), "bfloat16")
    w2 = round_to((rng.standard_normal((H, I)) * 0.1).astype(np.float32), "bfloat16")
    routed = round_to(rng.standard_normal((M, H)).astype(np.float32), "bfloat16") if with_routed else None
    w13p = moekit.ops.pack_moe_weights(bf16(w13), "w13")
    w2p = moekit.ops.pack_moe_weights(bf16(w2), "w2")
    got = moekit.ops.shared_expert_cpu(bf16(x), w13p, w2p, None if routed is None else bf16(routed),
                                       2.5)
    expected = np.zeros((M, H), np.uint16)
    moekit.reference.shared_expert(bf16(x), moekit.ExpertWeights(bf16(w13)),
                                   moekit.ExpertWeights(bf16(w2)),
                                   None if routed is None else bf16(routed),
                                   moekit.typed(expected, "bfloat16"),
                                   moekit.FusedExpertsOptions(routed_scaling_factor=2.5))
    np.testing.assert_allclose(bf16_to_f32(got.array), bf16_to_f32(expected), rtol=2e-2, atol=2e-2)
