"""Dispatch ops (moekit/dispatch.h) through moekit.ops on every backend, against numpy."""

import numpy as np
import pytest

import moekit
from conftest import fresh_rng


def distinct_ids(rng, M, E, k):
    return np.array([rng.permutation(E)[:k] for _ in range(M)], np.int32).reshape(M, k)


def numpy_align(ids, E, bs):
    """(sorted_token_ids used prefix, experts_ids used prefix, total): buckets -1, 0, .., E-1."""
    flat = ids.reshape(-1).astype(np.int64)
    flat = np.where((flat >= 0) & (flat < E), flat, -1)
    sorted_ids, experts = [], []
    for b in range(-1, E):
        members = np.nonzero(flat == b)[0]
        if len(members) == 0:
            continue
        padded = -(-len(members) // bs) * bs
        sorted_ids += list(members) + [flat.size] * (padded - len(members))
        experts += [b] * (padded // bs)
    return np.array(sorted_ids, np.int32), np.array(experts, np.int32), len(sorted_ids)


@pytest.mark.parametrize("M,E,k,bs", [(0, 8, 2, 16), (1, 64, 8, 64), (13, 257, 4, 32),
                                      (61, 16, 2, 48)])
@pytest.mark.parametrize("pad", [False, True])
def test_moe_align_block_size(backend, M, E, k, bs, pad):
    rng = fresh_rng()
    ids = distinct_ids(rng, M, E, k)
    if M:
        ids[0, 0] = -1
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E + 1, bs)
    sorted_ids = backend.empty((P,), "int32", fill=-7)
    experts = backend.empty((B,), "int32", fill=-7)
    post_pad = backend.empty((1,), "int32", fill=-7)
    cumsum = backend.empty((E + 2,), "int32", fill=0)
    moekit.ops.moe_align_block_size(backend.tensor(ids), E + 1, bs, sorted_ids, experts, post_pad,
                                    cumsum, pad)
    backend.synchronize()
    es, ee, total = numpy_align(ids, E, bs)
    got_sorted, got_experts = backend.numpy(sorted_ids), backend.numpy(experts)
    assert backend.numpy(post_pad)[0] == total
    np.testing.assert_array_equal(got_experts[:len(ee)], ee)
    assert (got_experts[len(ee):] == -7).all()  # untouched
    real = es < M * k
    np.testing.assert_array_equal(got_sorted[:total][real], es[real])
    tail = got_sorted[total:]
    np.testing.assert_array_equal(got_sorted[:total][~real], M * k if pad else -7)
    assert (tail == (M * k if pad else -7)).all()


def test_moe_align_block_size_capacity_is_checked(backend):
    ids = backend.tensor(np.zeros((4, 2), np.int32))
    with pytest.raises(ValueError, match="sorted_token_ids"):
        moekit.ops.moe_align_block_size(ids, 9, 16, backend.empty((8,), "int32"),
                                        backend.empty((64,), "int32"),
                                        backend.empty((1,), "int32"), backend.empty((10,), "int32"))


def test_moe_align_block_size_experts_with_map(backend):
    rng = fresh_rng()
    M, k, E_global, E, bs = 9, 2, 8, 4, 16
    ids = distinct_ids(rng, M, E_global, k)
    expert_map = np.array([0, -1, 1, -1, 2, -1, 3, -1], np.int32)
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E + 1, bs)
    out = [backend.empty((P,), "int32", fill=-7), backend.empty((B,), "int32", fill=-7),
           backend.empty((1,), "int32")]
    moekit.ops.moe_align_block_size_experts(backend.tensor(ids), E, bs, *out, True, False,
                                            backend.tensor(expert_map))
    backend.synchronize()
    es, ee, total = numpy_align(expert_map[ids], E, bs)
    assert backend.numpy(out[2])[0] == total
    np.testing.assert_array_equal(backend.numpy(out[0])[:total], es)
    np.testing.assert_array_equal(backend.numpy(out[1])[:len(ee)], ee)


@pytest.mark.parametrize("M,E,k", [(0, 8, 2), (1, 8, 1), (16, 16, 4), (128, 64, 8)])
@pytest.mark.parametrize("blockscale", [False, True])
def test_prepare_moe_input(backend, M, E, k, blockscale):
    rng = fresh_rng()
    ids = distinct_ids(rng, M, E, k)
    if M:
        ids[-1, 0] = -1
    n, h = 128, 256
    offsets = backend.empty((E + 1,), "int32")
    bso = backend.empty((E + 1,), "int32") if blockscale else None
    s1, s2 = backend.empty((E, 3), "int32"), backend.empty((E, 3), "int32")
    in_perm, out_perm = backend.empty((M * k,), "int32"), backend.empty((M * k,), "int32")
    moekit.ops.prepare_moe_input(backend.tensor(ids), offsets, s1, s2, in_perm, out_perm, E, n, h,
                                 bso)
    backend.synchronize()
    flat = ids.reshape(-1)
    counts = np.array([(flat == e).sum() for e in range(E)])
    np.testing.assert_array_equal(backend.numpy(offsets), np.concatenate([[0], np.cumsum(counts)]))
    np.testing.assert_array_equal(backend.numpy(s1), np.stack([counts, np.full(E, 2 * n), np.full(E, h)], 1))
    np.testing.assert_array_equal(backend.numpy(s2), np.stack([counts, np.full(E, h), np.full(E, n)], 1))
    if blockscale:
        np.testing.assert_array_equal(backend.numpy(bso),
                                      np.concatenate([[0], np.cumsum(-(-counts // 128) * 128)]))
    order = np.argsort(np.where(flat < 0, E, flat), kind="stable")
    valid = int(counts.sum())
    expected_in = np.full(M * k, -1)
    expected_in[:valid] = order[:valid] // k
    expected_out = np.full(M * k, -1)
    expected_out[order[:valid]] = np.arange(valid)
    np.testing.assert_array_equal(backend.numpy(in_perm), expected_in)
    np.testing.assert_array_equal(backend.numpy(out_perm), expected_out)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int32"])
@pytest.mark.parametrize("R,C", [(64, 256), (1, 7), (5, 33)])
def test_shuffle_rows_returns_a_new_array(backend, dtype, R, C):
    rng = fresh_rng()
    x = (rng.standard_normal((R, C)) * 100).astype(np.float32)
    perm = rng.permutation(R).astype(np.int32)
    out = moekit.ops.shuffle_rows(backend.tensor(x, dtype), backend.tensor(perm), (R, C))
    backend.synchronize()
    np.testing.assert_array_equal(backend.numpy(out), backend.numpy(backend.tensor(x, dtype))[perm])
