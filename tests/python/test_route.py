"""Routing ops (moekit/route.h) through moekit.ops on every backend: the sgl-kernel argument order
and defaults, returned tensors, agreement with numpy on plain cases and with the oracle (bit-exact,
the router's fp32 math is identical on every back end)."""

import numpy as np
import pytest

import moekit
from conftest import fresh_rng, round_to


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def run_topk(backend, op, logits, k, dtype, *args, **kwargs):
    M = logits.shape[0]
    w, ids = backend.empty((M, k), "float32"), backend.empty((M, k), "int32")
    op(w, ids, backend.tensor(logits, dtype), *args, **kwargs)
    backend.synchronize()
    return backend.numpy(w), backend.numpy(ids)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("M,E,k", [(0, 8, 2), (1, 4, 1), (7, 48, 4), (33, 256, 8), (5, 384, 16)])
@pytest.mark.parametrize("renormalize", [False, True])
def test_topk_softmax_matches_numpy(backend, dtype, M, E, k, renormalize):
    rng = fresh_rng()
    logits = round_to(rng.standard_normal((M, E)).astype(np.float32), dtype)
    w, ids = run_topk(backend, moekit.ops.topk_softmax, logits, k, dtype, renormalize)
    p = softmax(logits.astype(np.float64))
    expected_ids = np.argsort(-p, axis=1, kind="stable")[:, :k]
    expected_w = np.take_along_axis(p, expected_ids, 1)
    if renormalize:
        expected_w /= expected_w.sum(1, keepdims=True)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(w, expected_w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("softcap,use_bias,mode", [(0.0, True, "logit"), (30.0, False, "logit"),
                                                   (30.0, True, "selection_only")])
def test_topk_softmax_options_match_the_oracle(backend, softcap, use_bias, mode):
    rng = fresh_rng()
    M, E, k = 19, 96, 6
    logits = (rng.standard_normal((M, E)) * 20).astype(np.float32)
    bias = rng.standard_normal(E).astype(np.float32) if use_bias else None
    w, ids = run_topk(backend, moekit.ops.topk_softmax, logits, k, "float32", True, softcap,
                      None if bias is None else backend.tensor(bias), bias_mode=mode)
    rw, rids = np.full((M, k), np.nan, np.float32), np.full((M, k), -2, np.int32)
    moekit.reference.topk_softmax(rw, rids, logits, True, softcap, bias, mode)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_array_equal(w, rw)


def test_topk_softmax_bias_mode_is_checked(cpu_backend):
    with pytest.raises(ValueError, match="bias_mode"):
        run_topk(cpu_backend, moekit.ops.topk_softmax, np.zeros((1, 4), np.float32), 2,
                 "float32", False, 0.0, None, bias_mode="weights")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("renormalize", [False, True])
def test_topk_sigmoid_with_bias_matches_numpy(backend, dtype, renormalize):
    rng = fresh_rng()
    M, E, k = 23, 64, 4
    logits = round_to(rng.standard_normal((M, E)).astype(np.float32), dtype)
    bias = rng.standard_normal(E).astype(np.float32)
    w, ids = run_topk(backend, moekit.ops.topk_sigmoid, logits, k, dtype, renormalize,
                      backend.tensor(bias))
    s = sigmoid(logits.astype(np.float64))
    expected_ids = np.argsort(-(s + bias), axis=1, kind="stable")[:, :k]
    expected_w = np.take_along_axis(s, expected_ids, 1)
    if renormalize:
        expected_w /= expected_w.sum(1, keepdims=True)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(w, expected_w, rtol=1e-5, atol=1e-6)


def biased_grouped_topk_numpy(logits, bias, G, topk_group, routed, renormalize):
    """The DeepSeek-V3 convention (gpu-ops.md 1.5), fp64, no shared slots."""
    s = sigmoid(logits.astype(np.float64))
    t = s + bias
    M, E = t.shape
    grouped = np.sort(t.reshape(M, G, E // G), axis=-1)
    group_score = grouped[..., -1] + grouped[..., -2]
    keep = np.argsort(-group_score, axis=1, kind="stable")[:, :topk_group]
    mask = np.zeros((M, G), bool)
    np.put_along_axis(mask, keep, True, 1)
    t = np.where(np.repeat(mask, E // G, axis=1), t, -np.inf)
    ids = np.argsort(-t, axis=1, kind="stable")[:, :routed]
    w = np.take_along_axis(s, ids, 1)
    if renormalize:
        w /= w.sum(1, keepdims=True)
    return w, ids


@pytest.mark.parametrize("E,G,topk_group,topk", [(256, 8, 4, 8), (128, 4, 2, 4), (160, 8, 3, 6)])
def test_moe_fused_gate_returns_new_tensors_matching_numpy(backend, E, G, topk_group, topk):
    rng = fresh_rng()
    M = 37
    logits = rng.random((M, E), dtype=np.float32)
    bias = rng.random(E, dtype=np.float32)
    w, ids = moekit.ops.moe_fused_gate(backend.tensor(logits), backend.tensor(bias), G, topk_group,
                                       topk)
    backend.synchronize()
    w, ids = backend.numpy(w), backend.numpy(ids)
    assert w.shape == (M, topk) and w.dtype == np.float32
    assert ids.shape == (M, topk) and ids.dtype == np.int32
    ew, eids = biased_grouped_topk_numpy(logits, bias, G, topk_group, topk, True)
    np.testing.assert_array_equal(ids, eids)
    np.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shared,apply,renormalize", [(0, False, True), (2, True, True),
                                                      (1, False, False)])
def test_moe_fused_gate_options_match_the_oracle(backend, shared, apply, renormalize):
    rng = fresh_rng()
    M, E, G, topk_group, topk = 11, 64, 4, 2, 6
    logits = rng.standard_normal((M, E)).astype(np.float32)
    bias = rng.standard_normal(E).astype(np.float32)
    w, ids = moekit.ops.moe_fused_gate(backend.tensor(logits), backend.tensor(bias), G, topk_group,
                                       topk, shared, 2.5, apply, renormalize=renormalize)
    backend.synchronize()
    rw, rids = np.full((M, topk), np.nan, np.float32), np.full((M, topk), -2, np.int32)
    moekit.reference.moe_fused_gate(logits, bias, rw, rids, G, topk_group, topk, shared, 2.5, apply,
                                    renormalize)
    np.testing.assert_array_equal(backend.numpy(ids), rids)
    np.testing.assert_array_equal(backend.numpy(w), rw)
    if shared:
        assert (rids[:, topk - shared:] == np.arange(E, E + shared)).all()


def test_moe_fused_gate_rejects_zero_scaling_with_shared_experts(backend):
    x = backend.tensor(np.zeros((2, 16), np.float32))
    with pytest.raises(ValueError):
        moekit.ops.moe_fused_gate(x, backend.tensor(np.zeros(16, np.float32)), 2, 1, 3, 1)


@pytest.mark.parametrize("renormalize,apply", [(True, False), (True, True), (False, True)])
def test_kimi_k2_gate(backend, renormalize, apply):
    rng = fresh_rng()
    M, E, topk, rsf = 9, 384, 6, 2.872
    logits = rng.random((M, E), dtype=np.float32)
    bias = rng.random(E, dtype=np.float32)
    w, ids = moekit.ops.kimi_k2_moe_fused_gate(backend.tensor(logits), backend.tensor(bias), topk,
                                               renormalize, rsf, apply)
    backend.synchronize()
    w, ids = backend.numpy(w), backend.numpy(ids)
    ew, eids = biased_grouped_topk_numpy(logits, bias, 1, 1, topk, renormalize)
    if renormalize and apply:
        ew *= rsf
    np.testing.assert_array_equal(ids, eids)
    np.testing.assert_allclose(w, ew, rtol=1e-5, atol=1e-6)


def test_cpu_routers_match_the_oracle(cpu_backend, every_cpu_isa):
    rng = fresh_rng()
    M, E, G, topk_group, topk = 13, 160, 8, 3, 8
    logits = rng.standard_normal((M, E)).astype(np.float32)
    bias = rng.standard_normal(E).astype(np.float32)
    hidden = np.zeros((M, 4), np.float32)

    w, ids = moekit.ops.grouped_topk_cpu(hidden, logits, topk, True, G, topk_group, 0, 2.0)
    rw, rids = np.empty((M, topk), np.float32), np.empty((M, topk), np.int32)
    moekit.reference.grouped_topk(rw, rids, logits, topk, True, G, topk_group, 0, 2.0)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_array_equal(w, rw)

    w, ids = moekit.ops.biased_grouped_topk_cpu(hidden, logits, bias, topk, True, G, topk_group)
    moekit.reference.biased_grouped_topk(rw, rids, logits, bias, topk, True, G, topk_group)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_array_equal(w, rw)

    w, ids = moekit.ops.topk_softmax_cpu(hidden, logits, 3, True)
    assert w.shape == (M, 3) and ids.dtype == np.int32
    w, ids = moekit.ops.topk_sigmoid_cpu(hidden, logits, 1, False)
    np.testing.assert_array_equal(ids[:, 0], logits.argmax(1))

    with pytest.raises(ValueError, match="num_token_non_padded"):
        moekit.ops.grouped_topk_cpu(hidden, logits, topk, True, G, topk_group,
                                    num_token_non_padded=3)


def test_router_errors_name_the_argument(backend):
    w, ids = backend.empty((3, 2), "float32"), backend.empty((3, 2), "int64")
    with pytest.raises(ValueError, match="topk_indices: expected int32, got int64"):
        moekit.ops.topk_softmax(w, ids, backend.tensor(np.zeros((3, 8), np.float32)))


@pytest.mark.parametrize("router", ["topk_softmax", "topk_sigmoid", "moe_fused_gate"])
@pytest.mark.parametrize("M", [0, 1, 37, 600])
def test_route_and_align_block_size_equals_the_two_ops(backend, router, M):
    rng = fresh_rng()
    E, k, bs, shared = 64, 8, 16, (1 if router == "moe_fused_gate" else 0)
    logits = rng.standard_normal((M, E)).astype(np.float32)
    bias = rng.standard_normal(E).astype(np.float32) * 0.1
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E + shared, bs)
    out = [backend.empty((M, k), "float32"), backend.empty((M, k), "int32"),
           backend.empty((P,), "int32", fill=-7), backend.empty((B,), "int32", fill=-7),
           backend.empty((1,), "int32")]
    gate = dict(num_expert_group=8, topk_group=4, num_fused_shared_experts=shared,
                routed_scaling_factor=2.5) if router == "moe_fused_gate" else {}
    moekit.ops.route_and_align_block_size(backend.tensor(logits), backend.tensor(bias), *out,
                                          router=router, block_size=bs,
                                          pad_sorted_token_ids=True, **gate)
    backend.synchronize()
    got = [backend.numpy(t) for t in out]

    w, ids = np.full((M, k), np.nan, np.float32), np.full((M, k), -2, np.int32)
    if router == "topk_softmax":
        moekit.reference.topk_softmax(w, ids, logits, False, 0.0, bias)
    elif router == "topk_sigmoid":
        moekit.reference.topk_sigmoid(w, ids, logits, False, bias)
    else:
        moekit.reference.moe_fused_gate(logits, bias, w, ids, 8, 4, k, shared, 2.5)
    np.testing.assert_array_equal(got[0], w)
    np.testing.assert_array_equal(got[1], ids)
    sorted_ids, experts, post_pad = (np.full(P, -7, np.int32), np.full(B, -7, np.int32),
                                     np.zeros(1, np.int32))
    moekit.reference.moe_align_block_size_experts(ids, E + shared, bs, sorted_ids, experts,
                                                  post_pad, True, True)
    np.testing.assert_array_equal(got[4], post_pad)
    np.testing.assert_array_equal(got[2], sorted_ids)
    np.testing.assert_array_equal(got[3], experts)
