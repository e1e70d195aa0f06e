"""moekit.torch: each custom op through torch.library.opcheck (schema, mutation annotations, fake
implementation, AOT dispatch), torch.compile(fullgraph=True) against eager, and CUDA-graph capture and
replay. Skipped where torch is absent; the CUDA cases where there is no GPU."""

import pytest

import moekit
import moekit.ops
from conftest import HAS_CUDA, HAS_TORCH, requires_cuda

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")

if HAS_TORCH:
    import torch

    import moekit.torch  # noqa: F401  (registers torch.ops.moekit.*)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=requires_cuda),
]


def _moe_sum(device):
    x = torch.randn(5, 3, 24, device=device, dtype=torch.bfloat16)
    return (x, torch.empty(5, 24, device=device, dtype=torch.bfloat16))


def _router_outputs(M, k, device):
    return (torch.empty(M, k, device=device), torch.empty(M, k, device=device, dtype=torch.int32))


def _topk_softmax(device):
    logits = torch.randn(9, 48, device=device)
    return (*_router_outputs(9, 4, device), logits, True, 30.0, torch.randn(48, device=device))


def _topk_sigmoid(device):
    logits = torch.randn(9, 64, device=device, dtype=torch.bfloat16)
    return (*_router_outputs(9, 4, device), logits, True, torch.randn(64, device=device))


def _moe_fused_gate(device):
    return (torch.rand(7, 256, device=device), torch.rand(256, device=device), 8, 4, 9, 1, 2.5,
            True)


def _kimi_k2_moe_fused_gate(device):
    return (torch.rand(7, 384, device=device), torch.rand(384, device=device), 6, True, 2.872,
            True)


def _grouped_topk(device):
    return (*_router_outputs(6, 8, device), torch.randn(6, 160, device=device), 8, True, 8, 3)


def _biased_grouped_topk(device):
    return (*_router_outputs(6, 8, device), torch.randn(6, 256, device=device),
            torch.randn(256, device=device), 8, True, 8, 4)


def _int32(*shape, device, fill=0):
    return torch.full(shape, fill, device=device, dtype=torch.int32)


def _topk_ids(M, E, k, device):
    return torch.rand(M, E, device=device).argsort(1)[:, :k].int().contiguous()


def _moe_align_block_size(device):
    M, E, k, bs = 11, 16, 4, 16
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E + 1, bs)
    return (_topk_ids(M, E, k, device), E + 1, bs, _int32(P, device=device, fill=-7),
            _int32(B, device=device, fill=-7), _int32(1, device=device), _int32(E + 2, device=device),
            True)


def _moe_align_block_size_experts(device):
    M, E, k, bs = 11, 16, 4, 16
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E + 1, bs)
    return (_topk_ids(M, E, k, device), E, bs, _int32(P, device=device, fill=-7),
            _int32(B, device=device, fill=-7), _int32(1, device=device), False, False)


def _prepare_moe_input(device):
    M, E, k = 9, 8, 2
    return (_topk_ids(M, E, k, device), _int32(E + 1, device=device), _int32(E, 3, device=device),
            _int32(E, 3, device=device), _int32(M * k, device=device),
            _int32(M * k, device=device), E, 128, 256, _int32(E + 1, device=device))


def _shuffle_rows(device):
    return (torch.randn(12, 33, device=device, dtype=torch.bfloat16),
            torch.randperm(12, device=device).int(), [12, 33])


def _moe_sum_reduce(device):
    x = torch.randn(5, 3, 40, device=device)
    return (x, torch.empty(5, 40, device=device), 2.5)


def _apply_shuffle_mul_sum(device):
    M, k, H = 6, 4, 64
    return (torch.randn(M * k, H, device=device, dtype=torch.bfloat16),
            torch.empty(M, H, device=device, dtype=torch.bfloat16),
            torch.randperm(M * k, device=device).int(),
            torch.rand(M * k, device=device, dtype=torch.bfloat16))


def _fused_qk_norm_rope(device):
    T, hq, hk, hv, d = 5, 4, 2, 2, 128
    return (torch.randn(T, (hq + hk + hv) * d, device=device, dtype=torch.bfloat16), hq, hk, hv, d,
            1e-6, torch.rand(d, device=device, dtype=torch.bfloat16) + 0.5,
            torch.rand(d, device=device, dtype=torch.bfloat16) + 0.5, 1e4, True,
            torch.arange(T, device=device, dtype=torch.int32) + 100, 1.0, 0.0, 0.0, 1.0)


def _expert_weights(E, H, I, device):
    return (torch.randn(E, 2 * I, H, device=device, dtype=torch.bfloat16) * 0.1,
            torch.randn(E, H, I, device=device, dtype=torch.bfloat16) * 0.1)


def _fused_experts(device):
    M, E, k, H, I = 7, 8, 2, 128, 64
    w13, w2 = _expert_weights(E, H, I, device)
    if device == "cpu":
        w13, w2 = moekit.ops.pack_moe_weights(w13, "w13"), moekit.ops.pack_moe_weights(w2, "w2")
    weights = torch.rand(M, k, device=device)
    return (torch.randn(M, H, device=device, dtype=torch.bfloat16), w13, w2, weights,
            _topk_ids(M, E, k, device), "silu_and_mul", 2.0)


def _fused_moe(device):
    M, E, k, H, I = 7, 8, 2, 128, 64
    w13, w2 = _expert_weights(E, H, I, device)
    return (torch.randn(M, H, device=device, dtype=torch.bfloat16), w13, w2,
            torch.randn(M, E, device=device), k, True)


def _interleave_gate_up(device):
    w13 = torch.randn(4, 2 * 24, 40, device=device, dtype=torch.bfloat16)
    return (w13, torch.empty_like(w13), 1)


def _route_and_align_block_size(device):
    M, E, k, bs = 9, 64, 8, 16
    P, B = moekit.ops.moe_align_block_size_capacity(M * k, E, bs)
    return (torch.randn(M, E, device=device), torch.randn(E, device=device),
            *_router_outputs(M, k, device), _int32(P, device=device, fill=-7),
            _int32(B, device=device, fill=-7), _int32(1, device=device), "topk_softmax", True,
            0.0, "logit", 1, 1, 0, 0.0, False, bs, True)


# The expert ops run on CUDA, and on the CPU where the CPU expert kernels are built in.
_EXPERT_DEVICES = ("cpu", "cuda") if hasattr(moekit._C, "fused_experts_cpu") else ("cuda",)

# name -> (make arguments for one valid call on a device, indices of the arguments it writes,
#          devices it runs on)
CASES = {
    "moe_sum": (_moe_sum, [1], ("cpu", "cuda")),
    "topk_softmax": (_topk_softmax, [0, 1], ("cpu", "cuda")),
    "topk_sigmoid": (_topk_sigmoid, [0, 1], ("cpu", "cuda")),
    "moe_fused_gate": (_moe_fused_gate, [], ("cpu", "cuda")),
    "kimi_k2_moe_fused_gate": (_kimi_k2_moe_fused_gate, [], ("cpu", "cuda")),
    "grouped_topk": (_grouped_topk, [0, 1], ("cpu", "cuda")),
    "route_and_align_block_size": (_route_and_align_block_size, [2, 3, 4, 5, 6], ("cpu", "cuda")),
    "moe_align_block_size": (_moe_align_block_size, [3, 4, 5], ("cpu", "cuda")),
    "moe_align_block_size_experts": (_moe_align_block_size_experts, [3, 4, 5], ("cpu", "cuda")),
    "prepare_moe_input": (_prepare_moe_input, [1, 2, 3, 4, 5, 9], ("cpu", "cuda")),
    "shuffle_rows": (_shuffle_rows, [], ("cpu", "cuda")),
    "moe_sum_reduce": (_moe_sum_reduce, [1], ("cpu", "cuda")),
    "apply_shuffle_mul_sum": (_apply_shuffle_mul_sum, [1], ("cpu", "cuda")),
    "biased_grouped_topk": (_biased_grouped_topk, [0, 1], ("cpu", "cuda")),
    "fused_qk_norm_rope": (_fused_qk_norm_rope, [0], ("cpu", "cuda")),
    "fused_experts": (_fused_experts, [], _EXPERT_DEVICES),
    "fused_moe": (_fused_moe, [], _EXPERT_DEVICES),
    "interleave_gate_up": (_interleave_gate_up, [1], ("cpu", "cuda")),
}


def _case(name, device):
    make, written, devices = CASES[name]
    if device not in devices:
        pytest.skip(f"{name} has no {device} path")
    return make, written


def _clone(args):
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def _results(returned, args, written):
    """What a call produced: its return value(s) and the arguments it wrote."""
    if returned is None:
        returned = ()
    elif isinstance(returned, torch.Tensor):
        returned = (returned,)
    return list(returned) + [args[i] for i in written]


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name, device):
    make, _ = _case(name, device)
    torch.library.opcheck(getattr(torch.ops.moekit, name).default, make(device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_compile_fullgraph_matches_eager(name, device):
    make, written = _case(name, device)
    op = getattr(torch.ops.moekit, name)
    args = make(device)
    eager_args, compiled_args = _clone(args), _clone(args)
    expected = _results(op(*eager_args), eager_args, written)
    torch._dynamo.reset()
    compiled = torch.compile(lambda *a: op(*a), fullgraph=True,
                             backend="inductor" if device == "cuda" else "aot_eager")
    got = _results(compiled(*compiled_args), compiled_args, written)
    _assert_same(got, expected)


# moekit.ops takes these ops' options as keywords, the torch ops positionally.
_KEYWORD_OPTIONS = {"fused_experts", "route_and_align_block_size"}


@pytest.mark.parametrize("name", sorted(set(CASES) - _KEYWORD_OPTIONS))
def test_moekit_ops_dispatches_torch_tensors_to_the_custom_op_under_compile(name):
    make, written = _case(name, "cpu")
    args = make("cpu")
    eager_args, compiled_args = _clone(args), _clone(args)
    fn = getattr(moekit.ops, name)
    expected = _results(fn(*eager_args), eager_args, written)
    torch._dynamo.reset()
    got = _results(torch.compile(fn, fullgraph=True, backend="aot_eager")(*compiled_args),
                   compiled_args, written)
    _assert_same(got, expected)


@requires_cuda
@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_graph_capture_and_replay(name):
    make, written = _case(name, "cuda")
    op = getattr(torch.ops.moekit, name)
    static = make("cuda")
    op(*_clone(static))  # warm up outside capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _results(op(*static), static, written)
    # New inputs in the same buffers; the replay must compute on them.
    fresh = make("cuda")
    for s, f in zip(static, fresh):
        if isinstance(s, torch.Tensor):
            s.copy_(f)
    expected_args = _clone(static)
    expected = _results(op(*expected_args), expected_args, written)
    graph.replay()
    torch.cuda.synchronize()
    _assert_same(captured, expected)


def test_requires_grad_and_parameters_are_accepted():
    x = torch.nn.Parameter(torch.randn(2, 3, 8))
    out = torch.empty(2, 8)
    moekit.torch.moe_sum(x, out)
    torch.testing.assert_close(out, x.detach().sum(1))


def test_errors_are_value_errors():
    with pytest.raises(ValueError, match="output"):
        moekit.torch.moe_sum(torch.zeros(2, 3, 4), torch.zeros(2, 5))


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_runs_on_the_current_stream():
    x = torch.randn(64, 4, 1024, device="cuda")
    out = torch.empty(64, 1024, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        moekit.torch.moe_sum(x, out)
    stream.synchronize()
    torch.testing.assert_close(out, x.sum(1), rtol=1e-5, atol=1e-5)

