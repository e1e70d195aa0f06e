"""moekit's ops under their sgl-kernel names, argument names and argument orders: an SGLang user
switches with ``from moekit.ops import topk_softmax`` (or ``import moekit.ops as sgl_kernel``).

Tensors: any DLPack exporter (numpy, torch, cupy, jax; ``moekit.typed`` for bfloat16 / fp8 numpy
data), never copied. Ops write their outputs in place and return None, except where sgl-kernel
returns new tensors (``moe_fused_gate``, ``kimi_k2_moe_fused_gate``, ``shuffle_rows``, the ``*_cpu``
routers), which allocate them with the framework and on the device of their input.

``stream``: a cudaStream_t as int; by default the current stream of torch / cupy CUDA tensors (jax
users synchronise themselves). torch tensors go through the registered torch custom ops
(``moekit.torch``, always on the current torch stream), so these functions also work inside
torch.compile(fullgraph=True) and CUDA-graph capture.

Conventions kept from sgl-kernel (see each docstring): ``moe_align_block_size`` takes the number of
BUCKETS (E + 1); ``moe_fused_gate`` always renormalises unless ``renormalize=False``; the apply flag
of ``kimi_k2_moe_fused_gate`` does nothing without renormalisation. Deviations: invalid arguments
raise ValueError instead of misbehaving; ``moe_sum_reduce``'s default scale is 1.0, not 0.
"""

from typing import Tuple

from . import _C
from ._frameworks import empty, is_torch, stream_for

_moekit_torch = None


def _torch_ops():
    """moekit.torch, imported on first use (moekit itself never imports torch)."""
    global _moekit_torch
    if _moekit_torch is None:
        from . import torch as moekit_torch

        _moekit_torch = moekit_torch
    return _moekit_torch


def _rows(x) -> int:
    x = x.array if isinstance(x, _C.TypedArray) else x
    return int(x.shape[0])


# ---------------------------------------------------------------------------------------------
# Routing (moekit/route.h)


def topk_softmax(topk_weights, topk_ids, gating_output, renormalize=False, moe_softcapping=0.0,
                 correction_bias=None, *, bias_mode="logit", stream=None) -> None:
    """Softmax router (Mixtral / Qwen-MoE), in place.

    Per row: x = logits; if moe_softcapping c != 0: x = c * tanh(x / c); bias_mode "logit" (sgl-kernel)
    adds correction_bias to x; p = softmax(x); the k largest p are chosen ("selection_only": the k
    largest p + bias, SGLang's fallback) with weight p; renormalize divides by their sum. Ties: the
    lower expert index first; rows list experts by descending score; NaN logits rank last, weight 0.

    topk_weights    [M, k] float32, written
    topk_ids        [M, k] int32, written
    gating_output   [M, E] float32 / float16 / bfloat16, contiguous (E <= 512, k <= 16)
    correction_bias [E] float32 or None
    """
    if is_torch(gating_output):
        return _torch_ops().topk_softmax(topk_weights, topk_ids, gating_output, renormalize,
                                         moe_softcapping, correction_bias, bias_mode)
    _C.topk_softmax(topk_weights, topk_ids, gating_output, renormalize, moe_softcapping,
                    correction_bias, bias_mode, stream_for(stream, gating_output))


def topk_sigmoid(topk_weights, topk_ids, gating_output, renormalize=False, correction_bias=None,
                 *, stream=None) -> None:
    """Sigmoid router, in place: s = sigmoid(logits); the k largest s + correction_bias are chosen;
    weight = s (never biased); renormalize divides by the sum of the k weights.

    topk_weights [M, k] float32, written;  topk_ids [M, k] int32, written
    gating_output [M, E] float32 / float16 / bfloat16;  correction_bias [E] float32 or None
    """
    if is_torch(gating_output):
        return _torch_ops().topk_sigmoid(topk_weights, topk_ids, gating_output, renormalize,
                                         correction_bias)
    _C.topk_sigmoid(topk_weights, topk_ids, gating_output, renormalize, correction_bias,
                    stream_for(stream, gating_output))


def moe_fused_gate(input_tensor, bias, num_expert_group, topk_group, topk,
                   num_fused_shared_experts=0, routed_scaling_factor=0.0,
                   apply_routed_scaling_factor_on_output=False, *, renormalize=True,
                   stream=None) -> Tuple[object, object]:
    """DeepSeek-V3 grouped gate. Returns new (topk_weights [M, topk] float32, topk_ids [M, topk]
    int32).

    s = sigmoid(x), t = s + bias (rounded to the input type T for float16/bfloat16); group score =
    best + second best t of the group; the topk_group best groups are kept; topk -
    num_fused_shared_experts experts are chosen by t, weight s; the shared slots get ids E, E+1, ...
    and weight (routed sum) / routed_scaling_factor; every slot is divided by the routed sum
    (skipped with renormalize=False, moekit's addition); the apply flag then multiplies by
    routed_scaling_factor, which must be > 0 when there are shared slots or the flag is set.

    input_tensor [M, E] float32 / float16 / bfloat16;  bias [E] dtype of input or float32
    """
    if is_torch(input_tensor):
        return _torch_ops().moe_fused_gate(input_tensor, bias, num_expert_group, topk_group, topk,
                                           num_fused_shared_experts, routed_scaling_factor,
                                           apply_routed_scaling_factor_on_output, renormalize)
    weights = empty(input_tensor, (_rows(input_tensor), topk), "float32")
    ids = empty(input_tensor, (_rows(input_tensor), topk), "int32")
    _C.moe_fused_gate(input_tensor, bias, weights, ids, num_expert_group, topk_group, topk,
                      num_fused_shared_experts, routed_scaling_factor,
                      apply_routed_scaling_factor_on_output, renormalize,
                      stream_for(stream, input_tensor))
    return weights, ids


def kimi_k2_moe_fused_gate(input_tensor, bias, topk, renormalize=True, routed_scaling_factor=1.0,
                           apply_routed_scaling_factor_on_output=False, *,
                           stream=None) -> Tuple[object, object]:
    """Kimi-K2 gate (one group, fp32 math). Returns new (topk_weights [M, topk] float32, topk_ids
    [M, topk] int32).

    s = sigmoid(x); topk experts chosen by s + bias; weight s; with renormalize and a positive sum:
    divided by it, then multiplied by routed_scaling_factor if the apply flag is set (sgl-kernel
    quirk kept: the flag does nothing when renormalize is False).

    input_tensor [M, E] float32 / float16 / bfloat16;  bias [E] dtype of input or float32
    """
    if is_torch(input_tensor):
        return _torch_ops().kimi_k2_moe_fused_gate(input_tensor, bias, topk, renormalize,
                                                   routed_scaling_factor,
                                                   apply_routed_scaling_factor_on_output)
    weights = empty(input_tensor, (_rows(input_tensor), topk), "float32")
    ids = empty(input_tensor, (_rows(input_tensor), topk), "int32")
    _C.kimi_k2_moe_fused_gate(input_tensor, bias, weights, ids, topk, renormalize,
                              routed_scaling_factor, apply_routed_scaling_factor_on_output,
                              stream_for(stream, input_tensor))
    return weights, ids


def grouped_topk(topk_weights, topk_ids, gating_output, topk, renormalize, num_expert_group,
                 topk_group, num_fused_shared_experts=0, routed_scaling_factor=1.0, *,
                 stream=None) -> None:
    """DeepSeek-V2 grouped softmax router (sgl-kernel's CPU backend; CPU or CUDA), in place: p = softmax(x); group score = max p of the
    group; topk_group groups kept; topk - num_fused_shared_experts experts chosen by p; weight p;
    renormalize; then every slot * routed_scaling_factor (CPU semantics: applied whenever given).

    topk_weights [M, topk] float32, written;  topk_ids [M, topk] int32, written
    gating_output [M, E] float32 / float16 / bfloat16
    """
    if is_torch(gating_output):
        return _torch_ops().grouped_topk(topk_weights, topk_ids, gating_output, topk, renormalize,
                                         num_expert_group, topk_group, num_fused_shared_experts,
                                         routed_scaling_factor)
    _C.grouped_topk(topk_weights, topk_ids, gating_output, topk, renormalize, num_expert_group,
                    topk_group, num_fused_shared_experts, routed_scaling_factor,
                    stream_for(stream, gating_output))


def biased_grouped_topk(topk_weights, topk_ids, gating_output, correction_bias, topk, renormalize,
                        num_expert_group, topk_group, num_fused_shared_experts=0,
                        routed_scaling_factor=1.0, *, stream=None) -> None:
    """Biased grouped sigmoid router (sgl-kernel's CPU backend; CPU or CUDA) (moe_fused_gate's math in fp32), in place, with every slot *
    routed_scaling_factor whenever it is given (CPU semantics).

    topk_weights [M, topk] float32, written;  topk_ids [M, topk] int32, written
    gating_output [M, E] float32 / float16 / bfloat16;  correction_bias [E] float32 or logits dtype
    """
    if is_torch(gating_output):
        return _torch_ops().biased_grouped_topk(topk_weights, topk_ids, gating_output,
                                                correction_bias, topk, renormalize,
                                                num_expert_group, topk_group,
                                                num_fused_shared_experts, routed_scaling_factor)
    _C.biased_grouped_topk(topk_weights, topk_ids, gating_output, correction_bias, topk,
                           renormalize, num_expert_group, topk_group, num_fused_shared_experts,
                           routed_scaling_factor, stream_for(stream, gating_output))


def route_and_align_block_size(gating_output, correction_bias, topk_weights, topk_ids,
                               sorted_token_ids, experts_ids, num_tokens_post_pad, *,
                               router="topk_softmax", renormalize=None, moe_softcapping=0.0,
                               bias_mode="logit", num_expert_group=1, topk_group=1,
                               num_fused_shared_experts=0, routed_scaling_factor=0.0,
                               apply_routed_scaling_factor_on_output=False, block_size=64,
                               pad_sorted_token_ids=False, stream=None) -> None:
    """Route, then bucket the routing result by expert for the grouped GEMMs (one launch on CUDA
    up to 4096 (token, slot) pairs), in place. ``router``: "topk_softmax", "topk_sigmoid" or
    "moe_fused_gate" (with its group options; topk = topk_ids.shape[1]). ``renormalize`` defaults
    to False for the top-k routers and True for the gate.

    topk_weights / topk_ids [M, k] are written as the router op alone writes them;
    sorted_token_ids [P], experts_ids [B], num_tokens_post_pad [1] (int32) as
    ``moe_align_block_size_experts(topk_ids, E + S, block_size, ..., pad_sorted_token_ids,
    ignore_invalid_expert=True)``; P, B from ``moe_align_block_size_capacity(M * k, E + S,
    block_size)``.
    """
    gate = router == "moe_fused_gate"
    if renormalize is None:
        renormalize = gate
    ids = topk_ids.array if isinstance(topk_ids, _C.TypedArray) else topk_ids
    if is_torch(gating_output):
        return _torch_ops().route_and_align_block_size(
            gating_output, correction_bias, topk_weights, topk_ids, sorted_token_ids, experts_ids,
            num_tokens_post_pad, router, renormalize, moe_softcapping, bias_mode,
            num_expert_group, topk_group, num_fused_shared_experts, routed_scaling_factor,
            apply_routed_scaling_factor_on_output, block_size, pad_sorted_token_ids)
    _C.route_and_align_block_size(
        gating_output, correction_bias, topk_weights, topk_ids, sorted_token_ids, experts_ids,
        num_tokens_post_pad, router, renormalize, moe_softcapping, bias_mode, num_expert_group,
        topk_group, int(ids.shape[1]), num_fused_shared_experts, routed_scaling_factor,
        apply_routed_scaling_factor_on_output, renormalize, block_size, pad_sorted_token_ids,
        stream_for(stream, gating_output))


def _new_router_outputs(gating_output, topk):
    m = _rows(gating_output)
    return empty(gating_output, (m, topk), "float32"), empty(gating_output, (m, topk), "int32")


def _no_padding_rows(num_token_non_padded):
    if num_token_non_padded is not None:
        raise ValueError("num_token_non_padded: expected None (as sgl-kernel's CPU routers), got "
                         f"{num_token_non_padded!r}")


def topk_softmax_cpu(hidden_states, gating_output, topk, renormalize):
    """sgl-kernel CPU router: returns new (topk_weights float32 [M, topk], topk_ids int32 [M, topk])
    of topk_softmax. hidden_states is unused (kept for the signature)."""
    weights, ids = _new_router_outputs(gating_output, topk)
    topk_softmax(weights, ids, gating_output, renormalize)
    return weights, ids


def topk_sigmoid_cpu(hidden_states, gating_output, topk, renormalize):
    """sgl-kernel CPU router: returns new (topk_weights, topk_ids) of topk_sigmoid (any topk)."""
    weights, ids = _new_router_outputs(gating_output, topk)
    topk_sigmoid(weights, ids, gating_output, renormalize)
    return weights, ids


def grouped_topk_cpu(hidden_states, gating_output, topk, renormalize, num_expert_group,
                     topk_group, num_fused_shared_experts=0, routed_scaling_factor=None,
                     num_token_non_padded=None):
    """sgl-kernel CPU router: returns new (topk_weights, topk_ids) of grouped_topk."""
    _no_padding_rows(num_token_non_padded)
    weights, ids = _new_router_outputs(gating_output, topk)
    grouped_topk(weights, ids, gating_output, topk, renormalize, num_expert_group, topk_group,
                 num_fused_shared_experts,
                 1.0 if routed_scaling_factor is None else routed_scaling_factor)
    return weights, ids


def biased_grouped_topk_cpu(hidden_states, gating_output, correction_bias, topk, renormalize,
                            num_expert_group, topk_group, num_fused_shared_experts=0,
                            routed_scaling_factor=None, num_token_non_padded=None):
    """sgl-kernel CPU router: returns new (topk_weights, topk_ids) of biased_grouped_topk."""
    _no_padding_rows(num_token_non_padded)
    weights, ids = _new_router_outputs(gating_output, topk)
    biased_grouped_topk(weights, ids, gating_output, correction_bias, topk, renormalize,
                        num_expert_group, topk_group, num_fused_shared_experts,
                        1.0 if routed_scaling_factor is None else routed_scaling_factor)
    return weights, ids


# ---------------------------------------------------------------------------------------------
# Dispatch (moekit/dispatch.h)


def moe_align_block_size(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                         num_tokens_post_pad, cumsum_buffer, pad_sorted_token_ids=False,
                         ignore_invalid_expert=False, *, stream=None) -> None:
    """Bucket the (token, slot) pairs by expert, pad each bucket to a multiple of block_size, emit
    every block's expert. In place.

    num_experts is the NUMBER OF BUCKETS, E + 1, as SGLang passes it: bucket 0 holds invalid ids
    (-1, or any id outside [0, E)), whose blocks come first with expert -1 (or are dropped with
    ignore_invalid_expert). Pairs of one bucket are in ascending flat index i = token * topk + slot.

    topk_ids            [M, topk] int32 or int64, contiguous
    sorted_token_ids    [P] int32, written: the flat pair indices; padding = numel when
                        pad_sorted_token_ids, else untouched
    experts_ids         [B] int32, written for the used blocks, the rest untouched
    num_tokens_post_pad [1] int32, written
    cumsum_buffer       [>= num_experts + 1] int32 (scratch kept for compatibility; untouched)
    P, B: at least moe_align_block_size_capacity(M * topk, num_experts, block_size).
    """
    if is_torch(topk_ids):
        return _torch_ops().moe_align_block_size(topk_ids, num_experts, block_size,
                                                 sorted_token_ids, experts_ids,
                                                 num_tokens_post_pad, cumsum_buffer,
                                                 pad_sorted_token_ids, ignore_invalid_expert)
    _C.moe_align_block_size(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                            num_tokens_post_pad, cumsum_buffer, pad_sorted_token_ids,
                            ignore_invalid_expert, stream_for(stream, topk_ids))


def moe_align_block_size_experts(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
                                 num_tokens_post_pad, pad_sorted_token_ids=False,
                                 ignore_invalid_expert=False, expert_map=None, *,
                                 stream=None) -> None:
    """moe_align_block_size taking the real expert count E, and an optional expert_map (int32
    [E_global]: global id -> local expert in [0, E) or -1) for expert parallelism."""
    if is_torch(topk_ids):
        return _torch_ops().moe_align_block_size_experts(
            topk_ids, num_experts, block_size, sorted_token_ids, experts_ids, num_tokens_post_pad,
            pad_sorted_token_ids, ignore_invalid_expert, expert_map)
    _C.moe_align_block_size_experts(topk_ids, num_experts, block_size, sorted_token_ids,
                                    experts_ids, num_tokens_post_pad, pad_sorted_token_ids,
                                    ignore_invalid_expert, expert_map, stream_for(stream, topk_ids))


def moe_align_block_size_capacity(numel, num_buckets, block_size) -> Tuple[int, int]:
    """(len(sorted_token_ids), len(experts_ids)): the smallest buffers moe_align_block_size accepts
    for numel = M * topk pairs and num_buckets buckets (E + 1; E when invalid ids are ignored)."""
    return _C.moe_align_block_size_capacity(numel, num_buckets, block_size)


def prepare_moe_input(topk_ids, expert_offsets, problem_sizes1, problem_sizes2,
                      input_permutation, output_permutation, num_experts, n, k,
                      blockscale_offsets=None, *, expert_map=None, stream=None) -> None:
    """Grouped-GEMM metadata for permute -> grouped GEMM -> un-permute, in place (c_e = pairs of
    expert e; the slots of one expert follow ascending pair index).

    topk_ids           [M, topk] int32
    expert_offsets     [E + 1] int32: 0, c_0, c_0 + c_1, ...
    problem_sizes1     [E, 3] int32: (c_e, 2n, k);  problem_sizes2 [E, 3] int32: (c_e, k, n)
    input_permutation  [M * topk] int32: slot -> source token (-1 past the last valid pair)
    output_permutation [M * topk] int32: pair -> slot (-1 for an invalid id)
    blockscale_offsets [E + 1] int32 or None: prefix sums of ceil(c_e / 128) * 128
    expert_map         int32 [E_global] or None (global id -> local expert or -1)
    """
    if is_torch(topk_ids):
        return _torch_ops().prepare_moe_input(topk_ids, expert_offsets, problem_sizes1,
                                              problem_sizes2, input_permutation,
                                              output_permutation, num_experts, n, k,
                                              blockscale_offsets, expert_map)
    _C.prepare_moe_input(topk_ids, expert_offsets, blockscale_offsets, problem_sizes1,
                         problem_sizes2, input_permutation, output_permutation, num_experts, n, k,
                         expert_map, stream_for(stream, topk_ids))


def shuffle_rows(input_tensor, dst2src_map, output_tensor_shape, *, stream=None):
    """Returns a new [R_dst, C] array with row r = input_tensor[dst2src_map[r]] (every byte; an
    index outside [0, R_src) gives zero bytes).

    input_tensor [R_src, C] float32 / float16 / bfloat16 / fp8 / int8 / uint8 / int32, contiguous
    dst2src_map  [R_dst] int32
    """
    if is_torch(input_tensor):
        return _torch_ops().shuffle_rows(input_tensor, dst2src_map, list(output_tensor_shape))
    source = input_tensor.array if isinstance(input_tensor, _C.TypedArray) else input_tensor
    output = empty(source, output_tensor_shape, str(source.dtype))
    if isinstance(input_tensor, _C.TypedArray):
        output = _C.typed(output, input_tensor.dtype)
    _C.shuffle_rows(input_tensor, dst2src_map, output, stream_for(stream, input_tensor))
    return output


# ---------------------------------------------------------------------------------------------
# Combine (moekit/combine.h)


def moe_sum(input_tensor, output_tensor, *, stream=None) -> None:
    """output[m, h] = sum_j input[m, j, h] (fp32 accumulation, one rounding), in place.

    input_tensor  [M, k, H] float32 / float16 / bfloat16, contiguous
    output_tensor [M, H]    same dtype, contiguous; written
    """
    if is_torch(input_tensor):
        return _torch_ops().moe_sum(input_tensor, output_tensor)
    _C.moe_sum(input_tensor, output_tensor, stream_for(stream, input_tensor))


def moe_sum_reduce(input_tensor, output_tensor, routed_scaling_factor=1.0, *, stream=None) -> None:
    """output[m, h] = round(routed_scaling_factor * sum_j input[m, j, h]) (fp32 accumulation, fp64
    for float64), in place. Default scale 1.0 (sgl-kernel's Python default 0 zeroes the output).

    input_tensor  [M, k, H] float32 / float16 / bfloat16 / float64, contiguous
    output_tensor [M, H]    same dtype, contiguous; written
    """
    if is_torch(input_tensor):
        return _torch_ops().moe_sum_reduce(input_tensor, output_tensor, routed_scaling_factor)
    _C.moe_sum_reduce(input_tensor, output_tensor, routed_scaling_factor,
                      stream_for(stream, input_tensor))


def apply_shuffle_mul_sum(input, output, permutation, factors=None, *, stream=None) -> None:
    """output[m, :] = sum_j factors[m*k + j] * input[permutation[m*k + j], :], k = len(permutation)
    / M, in place; a permutation entry of -1 contributes nothing; factors None means 1.

    input       [M*k, H] float32 / float16 / bfloat16
    output      [M, H]   same dtype; written
    permutation [M*k] int32
    factors     [M*k] or [M, k] in the output dtype or float32, or None
    """
    if is_torch(input):
        return _torch_ops().apply_shuffle_mul_sum(input, output, permutation, factors)
    _C.apply_shuffle_mul_sum(input, output, permutation, factors, stream_for(stream, input))


# ---------------------------------------------------------------------------------------------
# QK-RMSNorm + RoPE (moekit/qk_norm_rope.h)


def fused_qk_norm_rope(qkv, num_heads_q, num_heads_k, num_heads_v, head_dim, eps, q_weight,
                       k_weight, base, is_neox, position_ids, factor, low, high, attention_factor,
                       rotary_dim=None, *, stream=None) -> None:
    """In place on qkv: per token, every Q head then K head (V untouched): RMSNorm over the head
    (q_weight / k_weight, eps), then RoPE on the first rotary_dim dims (NeoX pairs (i, i + R/2) or
    interleaved (2i, 2i+1); inverse frequency base^(-2i/R); YaRN ramp between low and high when
    factor != 1; times attention_factor), rounded once to the qkv dtype. Accurate sin/cos, integer
    positions up to the angle.

    qkv          [T, (Hq + Hk + Hv) * head_dim] bfloat16 / float16, contiguous; modified
    q_weight     [head_dim] dtype of qkv;  k_weight [head_dim] dtype of qkv
    position_ids [T] int32 / int64
    head_dim in {64, 128, 256}; rotary_dim None = head_dim.
    """
    if is_torch(qkv):
        return _torch_ops().fused_qk_norm_rope(qkv, num_heads_q, num_heads_k, num_heads_v,
                                               head_dim, eps, q_weight, k_weight, base, is_neox,
                                               position_ids, factor, low, high, attention_factor,
                                               rotary_dim)
    _C.fused_qk_norm_rope(qkv, num_heads_q, num_heads_k, num_heads_v, head_dim, eps, q_weight,
                          k_weight, base, is_neox, position_ids, factor, low, high,
                          attention_factor, -1 if rotary_dim is None else rotary_dim,
                          stream_for(stream, qkv))



# ---------------------------------------------------------------------------------------------
# Expert compute (moekit/experts.h, gpu_experts.h, cpu_experts.h)

# SGLang's activation names (gated) -> moekit's.
_SGLANG_ACTIVATIONS = {"silu": "silu_and_mul", "gelu": "gelu_and_mul",
                       "gelu_tanh": "gelu_tanh_and_mul", "swigluoai": "swiglu_oai"}


def _is_packed(w) -> bool:
    """moekit's CPU packed weights are 1-D uint8 buffers (pack_moe_weights)."""
    w = w.array if isinstance(w, _C.TypedArray) else w
    return len(w.shape) == 1 and "uint8" in str(w.dtype)


def _weights(w, bias=None):
    return w if isinstance(w, _C.ExpertWeights) else _C.ExpertWeights(w, bias=bias)


def _options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit, scheme="bf16",
             gate_up_interleaved=False):
    activation = _SGLANG_ACTIVATIONS.get(activation, activation)
    return _C.FusedExpertsOptions(scheme=scheme, activation=activation,
                                  swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                                  routed_scaling_factor=routed_scaling_factor,
                                  gate_up_interleaved=gate_up_interleaved)


def interleave_gate_up(w13, out=None, dim=1, *, stream=None):
    """Converts w13 from gate/up halves to the interleaved layout of ``gate_up_interleaved``:
    out[.., 2j, ..] = w13[.., j, ..] (gate), out[.., 2j+1, ..] = w13[.., I+j, ..] (up) along ``dim``
    (size 2I): dim=1 for w13 [E, 2I, H] and its bias [E, 2I], dim=0 for a shared expert's [2I, H].
    Any dtype; CPU or CUDA (on ``stream``). Returns ``out`` (new unless given; must not overlap
    w13)."""
    if is_torch(w13):
        import torch

        out = torch.empty_like(w13, memory_format=torch.contiguous_format) if out is None else out
        _torch_ops().interleave_gate_up(w13, out, dim)
        return out
    if out is None:
        source = w13.array if isinstance(w13, _C.TypedArray) else w13
        out = empty(source, tuple(source.shape), str(source.dtype))
        if isinstance(w13, _C.TypedArray):
            out = _C.typed(out, w13.dtype)
    _C.interleave_gate_up(w13, out, dim, stream_for(stream, w13))
    return out


def fused_experts(hidden_states, w13, w2, topk_weights, topk_ids, *, activation="silu_and_mul",
                  routed_scaling_factor=1.0, w13_bias=None, w2_bias=None, swiglu_alpha=0.0,
                  swiglu_limit=0.0, gate_up_interleaved=False, output=None, workspace=None,
                  stream=None):
    """The MoE layer's expert part: out[m] = rsf * sum_t topk_weights[m, t] * W2[e] .
    act(W13[e] . hidden[m]), e = topk_ids[m, t] (-1 = dropped). Returns ``output`` (new unless
    given; may be hidden_states for in place).

    GPU: CUDA tensors, weights in the logical layout, BF16/FP16 (the dtype of hidden):
      w13 [E, 2I, H] (gate rows then up rows, or interleaved: see gate_up_interleaved), w2
      [E, H, I]; biases float32 [E, 2I], [E, H].
    CPU: weights packed once with ``pack_moe_weights`` (1-D uint8 buffers).
    hidden_states [M, H] bfloat16 / float16; topk_weights [M, k] float32; topk_ids [M, k] int32.
    activation: silu_and_mul (SGLang "silu"), gelu_and_mul, gelu_tanh_and_mul, swiglu_oai (gpt-oss;
    swiglu_alpha, swiglu_limit), silu / gelu (no mul; w13 [E, I, H]).
    gate_up_interleaved: w13 rows (and w13_bias) as 2j = gate_j, 2j+1 = up_j (gpt-oss;
    ``interleave_gate_up`` converts); on the CPU, packed with source="interleaved".
    """
    if is_torch(hidden_states):
        result = _torch_ops().fused_experts(hidden_states, w13, w2, topk_weights, topk_ids,
                                            activation, routed_scaling_factor, w13_bias, w2_bias,
                                            swiglu_alpha, swiglu_limit, gate_up_interleaved)
        if output is not None:
            output.copy_(result)
            return output
        return result
    source = hidden_states.array if isinstance(hidden_states, _C.TypedArray) else hidden_states
    if output is None:
        output = empty(hidden_states, tuple(source.shape), _dtype_name(hidden_states))
    options = _options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit,
                       gate_up_interleaved=gate_up_interleaved)
    if _is_packed(w13):
        if w13_bias is not None or w2_bias is not None:
            raise ValueError("w13_bias / w2_bias: expected None for packed CPU weights")
        _C.fused_experts_cpu(hidden_states, w13, w2, topk_weights, topk_ids, output, options, 0,
                             workspace)
        return output
    w13, w2 = _weights(w13, w13_bias), _weights(w2, w2_bias)
    if workspace is None:
        size = _C.fused_experts_workspace_size(hidden_states, w13, w2, topk_ids, options)
        workspace = empty(hidden_states, (max(size, 1),), "uint8")
    _C.fused_experts(hidden_states, w13, w2, topk_weights, topk_ids, output, workspace, options,
                     stream_for(stream, hidden_states))
    return output


def _dtype_name(x) -> str:
    if isinstance(x, _C.TypedArray):
        return x.dtype
    return str(x.dtype).replace("torch.", "")


def pack_moe_weights(weight, role, source="halves"):
    """Pack a CPU bfloat16 / float16 weight ([E, R, C] or [R, C]) once for the CPU expert ops;
    role "w13" ([E, 2I, H]; gate/up rows as "halves" or "interleaved"), "w2" ([E, H, I]) or
    "dense". Returns a new 1-D uint8 array (the MKCPU v1 format)."""
    packed = empty(weight, (_C.packed_weight_bytes(weight, role),), "uint8")
    if is_torch(weight):
        weight = weight.detach()
    _C.pack_moe_weights(weight, role, packed, source)
    return packed


def convert_weight_packed(weight):
    """sgl-kernel's CPU weight packing (row blocks in logical order); returns a new 1-D uint8
    array in moekit's format (not sgl-kernel's: the two are not interchangeable)."""
    packed = empty(weight, (_C.convert_weight_packed_bytes(weight),), "uint8")
    _C.convert_weight_packed(weight.detach() if is_torch(weight) else weight, packed)
    return packed


_COMP_METHODS = {0: "bf16"}


def fused_experts_cpu(hidden_states, w1, w2, topk_weights, topk_ids, inplace=False,
                      moe_comp_method=0, w1_scale=None, w2_scale=None, w1_zero=None, w2_zero=None,
                      block_size=None, w1_bias=None, w2_bias=None, alpha=None, limit=None,
                      is_vnni=True, activation=None):
    """sgl-kernel's ``fused_experts_cpu`` (newest signature): routed experts on the CPU with packed
    weights (``convert_weight_packed`` / ``pack_moe_weights``; is_vnni=False packs on every call).
    moe_comp_method 0 (BF16 / FP16) only; clamped SwiGLU when alpha and limit are given. Returns
    the output (hidden_states itself when inplace)."""
    if moe_comp_method not in _COMP_METHODS:
        raise RuntimeError(f"fused_experts_cpu: moe_comp_method {moe_comp_method} is not supported "
                           "by moekit's CPU path yet (0 = BF16/FP16 is)")
    for name, t in (("w1_scale", w1_scale), ("w2_scale", w2_scale), ("w1_zero", w1_zero),
                    ("w2_zero", w2_zero), ("block_size", block_size), ("w1_bias", w1_bias),
                    ("w2_bias", w2_bias)):
        if t is not None:
            raise ValueError(f"{name}: expected None for moe_comp_method 0, got a value")
    if not is_vnni:
        w1, w2 = pack_moe_weights(w1, "w13"), pack_moe_weights(w2, "w2")
    gated = _SGLANG_ACTIVATIONS.get(activation or "silu", activation)
    if alpha is not None and limit is not None:
        gated, swiglu_alpha, swiglu_limit = "swiglu_oai", alpha, limit
    else:
        swiglu_alpha = swiglu_limit = 0.0
    return fused_experts(hidden_states, w1, w2, topk_weights, topk_ids, activation=gated,
                         swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                         output=hidden_states if inplace else None)


def shared_expert_cpu(hidden_states, w1, w2, fused_experts_out, routed_scaling_factor=1.0,
                      inplace=False, use_int8_w8a8=False, use_fp8_w8a16=False, w1_scale=None,
                      w2_scale=None, block_size=None, is_vnni=True):
    """sgl-kernel's ``shared_expert_cpu``: out = round(D + routed_scaling_factor *
    fused_experts_out), D the packed shared expert's gated MLP (BF16 / FP16 only).
    fused_experts_out may be None; returns the output (hidden_states itself when inplace)."""
    if use_int8_w8a8 or use_fp8_w8a16:
        raise RuntimeError("shared_expert_cpu: only BF16 / FP16 weights are supported by moekit's "
                           "CPU path yet")
    if not is_vnni:
        w1, w2 = pack_moe_weights(w1, "w13"), pack_moe_weights(w2, "w2")
    if is_torch(hidden_states):
        result = _torch_ops().shared_expert_cpu(hidden_states, w1, w2, fused_experts_out,
                                                1.0 if routed_scaling_factor is None
                                                else routed_scaling_factor)
        if inplace:
            hidden_states.copy_(result)
            return hidden_states
        return result
    source = hidden_states.array if isinstance(hidden_states, _C.TypedArray) else hidden_states
    output = hidden_states if inplace else empty(hidden_states, tuple(source.shape),
                                                 _dtype_name(hidden_states))
    options = _C.FusedExpertsOptions(routed_scaling_factor=1.0 if routed_scaling_factor is None
                                     else routed_scaling_factor)
    _C.shared_expert_cpu(hidden_states, w1, w2, fused_experts_out, output, options)
    return output


def _is_cpu(x) -> bool:
    x = x.array if isinstance(x, _C.TypedArray) else x
    module = type(x).__module__
    if module.startswith("torch"):
        return not x.is_cuda
    if module.startswith("jax"):
        return all(d.platform == "cpu" for d in x.devices())
    return not module.startswith("cupy")


def fused_moe(hidden_states, w13, w2, router_logits, topk, renormalize=True, *, scheme="bf16",
              activation="silu_and_mul", routed_scaling_factor=1.0, swiglu_alpha=0.0,
              swiglu_limit=0.0, gate_up_interleaved=False, output=None, workspace=None,
              stream=None):
    """A whole MoE layer's routing + experts: softmax top-k over router_logits [M, E] (ties -> lower
    expert, NaN last; renormalize the k weights), then ``fused_experts``. Returns ``output`` (new
    unless given).

    w13, w2: arrays in the logical layout ([E, 2I, H], [E, H, I]) or ``moekit.ExpertWeights`` (for
    scales / biases of a quantised ``scheme``); on the CPU also packed buffers (``pack_moe_weights``;
    logical CPU weights are packed on every call, pack once for speed). gate_up_interleaved: as in
    ``fused_experts``.
    """
    if is_torch(hidden_states):
        result = _torch_ops().fused_moe(hidden_states, w13, w2, router_logits, topk, renormalize,
                                        activation, routed_scaling_factor, swiglu_alpha,
                                        swiglu_limit, gate_up_interleaved)
        if output is not None:
            output.copy_(result)
            return output
        return result
    if _is_cpu(hidden_states):
        m = _rows(router_logits)
        weights, ids = empty(router_logits, (m, topk), "float32"), empty(router_logits, (m, topk), "int32")
        topk_softmax(weights, ids, router_logits, renormalize)
        if not _is_packed(w13 if not isinstance(w13, _C.ExpertWeights) else w13.weight):
            w13 = pack_moe_weights(w13.weight if isinstance(w13, _C.ExpertWeights) else w13, "w13",
                                   "interleaved" if gate_up_interleaved else "halves")
            w2 = pack_moe_weights(w2.weight if isinstance(w2, _C.ExpertWeights) else w2, "w2")
        return fused_experts(hidden_states, w13, w2, weights, ids, activation=activation,
                             routed_scaling_factor=routed_scaling_factor,
                             swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                             gate_up_interleaved=gate_up_interleaved, output=output,
                             workspace=workspace)
    source = hidden_states.array if isinstance(hidden_states, _C.TypedArray) else hidden_states
    if output is None:
        output = empty(hidden_states, tuple(source.shape), _dtype_name(hidden_states))
    w13, w2 = _weights(w13), _weights(w2)
    options = _options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit, scheme,
                       gate_up_interleaved)
    if workspace is None:
        size = _C.fused_moe_workspace_size(hidden_states, w13, w2, router_logits, topk, options)
        workspace = empty(hidden_states, (max(size, 1),), "uint8")
    _C.fused_moe(hidden_states, w13, w2, router_logits, topk, renormalize, output, workspace,
                 options, stream_for(stream, hidden_states))
    return output

__all__ = [
    "apply_shuffle_mul_sum",
    "convert_weight_packed",
    "fused_experts",
    "fused_experts_cpu",
    "fused_moe",
    "interleave_gate_up",
    "pack_moe_weights",
    "shared_expert_cpu",
    "biased_grouped_topk",
    "biased_grouped_topk_cpu",
    "fused_qk_norm_rope",
    "grouped_topk",
    "grouped_topk_cpu",
    "kimi_k2_moe_fused_gate",
    "moe_align_block_size",
    "moe_align_block_size_capacity",
    "moe_align_block_size_experts",
    "moe_fused_gate",
    "moe_sum",
    "moe_sum_reduce",
    "prepare_moe_input",
    "route_and_align_block_size",
    "shuffle_rows",
    "topk_sigmoid",
    "topk_sigmoid_cpu",
    "topk_softmax",
    "topk_softmax_cpu",
]
