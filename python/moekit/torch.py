"""moekit's ops as torch custom ops: ``torch.ops.moekit.<name>``, with the sgl-kernel names, argument
names and argument orders, fake (meta) implementations and mutation annotations, so that they work
under torch.compile(fullgraph=True) and inside CUDA-graph capture. They run on
``torch.cuda.current_stream()``. Importing this module registers them (it imports torch; the rest of
moekit does not).

    from moekit.torch import topk_softmax, moe_sum   # instead of: from sgl_kernel import ...
"""

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from . import _C

_FP8_DTYPES = {torch.float8_e4m3fn: "float8_e4m3fn", torch.float8_e5m2: "float8_e5m2"}
if hasattr(torch, "float8_e8m0fnu"):
    _FP8_DTYPES[torch.float8_e8m0fnu] = "float8_e8m0fnu"


def _arg(t: torch.Tensor):
    """A tensor as moekit._C takes it (each result is used by one call only): detached (DLPack
    refuses tensors that require grad); fp8 as its bytes plus the dtype name (not every torch version
    exports fp8 over DLPack); a CUDA tensor as a DLPack capsule exported with stream=-1, which tells
    torch not to synchronise any stream (the op runs on the current stream anyway; a plain export may
    make the default stream wait on the current one, which breaks CUDA-graph capture)."""
    if t.requires_grad:
        t = t.detach()
    fp8 = _FP8_DTYPES.get(t.dtype)
    if fp8 is not None:
        t = t.view(torch.uint8)
    exported = t.__dlpack__(stream=-1) if t.is_cuda else t
    return exported if fp8 is None else _C.typed(exported, fp8)


def _optional(t: Optional[torch.Tensor]):
    return None if t is None else _arg(t)


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


_custom_op = torch.library.custom_op


def _no_result(*args, **kwargs):
    return None


# ---------------------------------------------------------------------------------------------
# Routing (moekit/route.h)


@_custom_op("moekit::topk_softmax", mutates_args=("topk_weights", "topk_ids"))
def topk_softmax(topk_weights: Tensor, topk_ids: Tensor, gating_output: Tensor,
                 renormalize: bool = False, moe_softcapping: float = 0.0,
                 correction_bias: Optional[Tensor] = None, bias_mode: str = "logit") -> None:
    """moekit.ops.topk_softmax as a torch op (writes topk_weights [M, k] float32, topk_ids [M, k]
    int32 from gating_output [M, E])."""
    _C.topk_softmax(_arg(topk_weights), _arg(topk_ids), _arg(gating_output), renormalize,
                    moe_softcapping, _optional(correction_bias), bias_mode,
                    _stream(gating_output))


topk_softmax.register_fake(_no_result)


@_custom_op("moekit::topk_sigmoid", mutates_args=("topk_weights", "topk_ids"))
def topk_sigmoid(topk_weights: Tensor, topk_ids: Tensor, gating_output: Tensor,
                 renormalize: bool = False, correction_bias: Optional[Tensor] = None) -> None:
    """moekit.ops.topk_sigmoid as a torch op."""
    _C.topk_sigmoid(_arg(topk_weights), _arg(topk_ids), _arg(gating_output), renormalize,
                    _optional(correction_bias), _stream(gating_output))


topk_sigmoid.register_fake(_no_result)


def _router_outputs(logits: Tensor, topk: int) -> Tuple[Tensor, Tensor]:
    return (logits.new_empty((logits.shape[0], topk), dtype=torch.float32),
            logits.new_empty((logits.shape[0], topk), dtype=torch.int32))


@_custom_op("moekit::moe_fused_gate", mutates_args=())
def moe_fused_gate(input_tensor: Tensor, bias: Tensor, num_expert_group: int, topk_group: int,
                   topk: int, num_fused_shared_experts: int = 0,
                   routed_scaling_factor: float = 0.0,
                   apply_routed_scaling_factor_on_output: bool = False,
                   renormalize: bool = True) -> Tuple[Tensor, Tensor]:
    """moekit.ops.moe_fused_gate as a torch op: returns new (topk_weights [M, topk] float32,
    topk_ids [M, topk] int32)."""
    weights, ids = _router_outputs(input_tensor, topk)
    _C.moe_fused_gate(_arg(input_tensor), _arg(bias), _arg(weights), _arg(ids), num_expert_group,
                      topk_group, topk, num_fused_shared_experts, routed_scaling_factor,
                      apply_routed_scaling_factor_on_output, renormalize, _stream(input_tensor))
    return weights, ids


@moe_fused_gate.register_fake
def _(input_tensor, bias, num_expert_group, topk_group, topk, num_fused_shared_experts=0,
      routed_scaling_factor=0.0, apply_routed_scaling_factor_on_output=False, renormalize=True):
    return _router_outputs(input_tensor, topk)


@_custom_op("moekit::kimi_k2_moe_fused_gate", mutates_args=())
def kimi_k2_moe_fused_gate(input_tensor: Tensor, bias: Tensor, topk: int, renormalize: bool = True,
                           routed_scaling_factor: float = 1.0,
                           apply_routed_scaling_factor_on_output: bool = False
                           ) -> Tuple[Tensor, Tensor]:
    """moekit.ops.kimi_k2_moe_fused_gate as a torch op: returns new (topk_weights, topk_ids)."""
    weights, ids = _router_outputs(input_tensor, topk)
    _C.kimi_k2_moe_fused_gate(_arg(input_tensor), _arg(bias), _arg(weights), _arg(ids), topk,
                              renormalize, routed_scaling_factor,
                              apply_routed_scaling_factor_on_output, _stream(input_tensor))
    return weights, ids


@kimi_k2_moe_fused_gate.register_fake
def _(input_tensor, bias, topk, renormalize=True, routed_scaling_factor=1.0,
      apply_routed_scaling_factor_on_output=False):
    return _router_outputs(input_tensor, topk)


@_custom_op("moekit::grouped_topk", mutates_args=("topk_weights", "topk_ids"))
def grouped_topk(topk_weights: Tensor, topk_ids: Tensor, gating_output: Tensor, topk: int,
                 renormalize: bool, num_expert_group: int, topk_group: int,
                 num_fused_shared_experts: int = 0, routed_scaling_factor: float = 1.0) -> None:
    """moekit.ops.grouped_topk as a torch op."""
    _C.grouped_topk(_arg(topk_weights), _arg(topk_ids), _arg(gating_output), topk, renormalize,
                    num_expert_group, topk_group, num_fused_shared_experts, routed_scaling_factor,
                    _stream(gating_output))


grouped_topk.register_fake(_no_result)


@_custom_op("moekit::biased_grouped_topk", mutates_args=("topk_weights", "topk_ids"))
def biased_grouped_topk(topk_weights: Tensor, topk_ids: Tensor, gating_output: Tensor,
                        correction_bias: Tensor, topk: int, renormalize: bool,
                        num_expert_group: int, topk_group: int, num_fused_shared_experts: int = 0,
                        routed_scaling_factor: float = 1.0) -> None:
    """moekit.ops.biased_grouped_topk as a torch op."""
    _C.biased_grouped_topk(_arg(topk_weights), _arg(topk_ids), _arg(gating_output),
                           _arg(correction_bias), topk, renormalize, num_expert_group, topk_group,
                           num_fused_shared_experts, routed_scaling_factor,
                           _stream(gating_output))


biased_grouped_topk.register_fake(_no_result)


@_custom_op("moekit::route_and_align_block_size",
            mutates_args=("topk_weights", "topk_ids", "sorted_token_ids", "experts_ids",
                          "num_tokens_post_pad"))
def route_and_align_block_size(gating_output: Tensor, correction_bias: Optional[Tensor],
                               topk_weights: Tensor, topk_ids: Tensor, sorted_token_ids: Tensor,
                               experts_ids: Tensor, num_tokens_post_pad: Tensor,
                               router: str = "topk_softmax", renormalize: bool = False,
                               moe_softcapping: float = 0.0, bias_mode: str = "logit",
                               num_expert_group: int = 1, topk_group: int = 1,
                               num_fused_shared_experts: int = 0,
                               routed_scaling_factor: float = 0.0,
                               apply_routed_scaling_factor_on_output: bool = False,
                               block_size: int = 64, pad_sorted_token_ids: bool = False) -> None:
    """moekit.ops.route_and_align_block_size as a torch op (renormalize applies to the gate too)."""
    _C.route_and_align_block_size(
        _arg(gating_output), _optional(correction_bias), _arg(topk_weights), _arg(topk_ids),
        _arg(sorted_token_ids), _arg(experts_ids), _arg(num_tokens_post_pad), router, renormalize,
        moe_softcapping, bias_mode, num_expert_group, topk_group, topk_ids.shape[1],
        num_fused_shared_experts, routed_scaling_factor, apply_routed_scaling_factor_on_output,
        renormalize, block_size, pad_sorted_token_ids, _stream(gating_output))


route_and_align_block_size.register_fake(_no_result)


# ---------------------------------------------------------------------------------------------
# Dispatch (moekit/dispatch.h)


@_custom_op("moekit::moe_align_block_size",
            mutates_args=("sorted_token_ids", "experts_ids", "num_tokens_post_pad",
                          "cumsum_buffer"))
def moe_align_block_size(topk_ids: Tensor, num_experts: int, block_size: int,
                         sorted_token_ids: Tensor, experts_ids: Tensor,
                         num_tokens_post_pad: Tensor, cumsum_buffer: Tensor,
                         pad_sorted_token_ids: bool = False,
                         ignore_invalid_expert: bool = False) -> None:
    """moekit.ops.moe_align_block_size as a torch op (num_experts = number of buckets, E + 1)."""
    _C.moe_align_block_size(_arg(topk_ids), num_experts, block_size, _arg(sorted_token_ids),
                            _arg(experts_ids), _arg(num_tokens_post_pad), _arg(cumsum_buffer),
                            pad_sorted_token_ids, ignore_invalid_expert, _stream(topk_ids))


moe_align_block_size.register_fake(_no_result)


@_custom_op("moekit::moe_align_block_size_experts",
            mutates_args=("sorted_token_ids", "experts_ids", "num_tokens_post_pad"))
def moe_align_block_size_experts(topk_ids: Tensor, num_experts: int, block_size: int,
                                 sorted_token_ids: Tensor, experts_ids: Tensor,
                                 num_tokens_post_pad: Tensor, pad_sorted_token_ids: bool = False,
                                 ignore_invalid_expert: bool = False,
                                 expert_map: Optional[Tensor] = None) -> None:
    """moekit.ops.moe_align_block_size_experts (real E, optional expert map) as a torch op."""
    _C.moe_align_block_size_experts(_arg(topk_ids), num_experts, block_size,
                                    _arg(sorted_token_ids), _arg(experts_ids),
                                    _arg(num_tokens_post_pad), pad_sorted_token_ids,
                                    ignore_invalid_expert, _optional(expert_map),
                                    _stream(topk_ids))


moe_align_block_size_experts.register_fake(_no_result)


# Registered with no default for blockscale_offsets: torch drops trailing arguments equal to their
# defaults, then its mutation bookkeeping indexes the mutated blockscale_offsets out of range. The
# public function below keeps sgl-kernel's defaults and always passes it.
@_custom_op("moekit::prepare_moe_input",
            mutates_args=("expert_offsets", "problem_sizes1", "problem_sizes2",
                          "input_permutation", "output_permutation", "blockscale_offsets"))
def _prepare_moe_input(topk_ids: Tensor, expert_offsets: Tensor, problem_sizes1: Tensor,
                       problem_sizes2: Tensor, input_permutation: Tensor,
                       output_permutation: Tensor, num_experts: int, n: int, k: int,
                       blockscale_offsets: Optional[Tensor],
                       expert_map: Optional[Tensor] = None) -> None:
    _C.prepare_moe_input(_arg(topk_ids), _arg(expert_offsets), _optional(blockscale_offsets),
                         _arg(problem_sizes1), _arg(problem_sizes2), _arg(input_permutation),
                         _arg(output_permutation), num_experts, n, k, _optional(expert_map),
                         _stream(topk_ids))


_prepare_moe_input.register_fake(_no_result)


def prepare_moe_input(topk_ids: Tensor, expert_offsets: Tensor, problem_sizes1: Tensor,
                      problem_sizes2: Tensor, input_permutation: Tensor,
                      output_permutation: Tensor, num_experts: int, n: int, k: int,
                      blockscale_offsets: Optional[Tensor] = None,
                      expert_map: Optional[Tensor] = None) -> None:
    """moekit.ops.prepare_moe_input as a torch op (torch.ops.moekit.prepare_moe_input)."""
    _prepare_moe_input(topk_ids, expert_offsets, problem_sizes1, problem_sizes2,
                       input_permutation, output_permutation, num_experts, n, k,
                       blockscale_offsets, expert_map)


@_custom_op("moekit::shuffle_rows", mutates_args=())
def shuffle_rows(input_tensor: Tensor, dst2src_map: Tensor,
                 output_tensor_shape: List[int]) -> Tensor:
    """moekit.ops.shuffle_rows as a torch op: returns a new tensor of output_tensor_shape."""
    output = input_tensor.new_empty(output_tensor_shape)
    _C.shuffle_rows(_arg(input_tensor), _arg(dst2src_map), _arg(output), _stream(input_tensor))
    return output


@shuffle_rows.register_fake
def _(input_tensor, dst2src_map, output_tensor_shape):
    return input_tensor.new_empty(output_tensor_shape)


# ---------------------------------------------------------------------------------------------
# Combine (moekit/combine.h)


@_custom_op("moekit::moe_sum", mutates_args=("output_tensor",))
def moe_sum(input_tensor: Tensor, output_tensor: Tensor) -> None:
    """output[m, h] = sum_j input[m, j, h] (fp32 accumulation, one rounding).
    input_tensor [M, k, H] float32/float16/bfloat16 contiguous; output_tensor [M, H] same dtype."""
    _C.moe_sum(_arg(input_tensor), _arg(output_tensor), _stream(input_tensor))


moe_sum.register_fake(_no_result)


@_custom_op("moekit::moe_sum_reduce", mutates_args=("output_tensor",))
def moe_sum_reduce(input_tensor: Tensor, output_tensor: Tensor,
                   routed_scaling_factor: float = 1.0) -> None:
    """moekit.ops.moe_sum_reduce as a torch op (default scale 1.0)."""
    _C.moe_sum_reduce(_arg(input_tensor), _arg(output_tensor), routed_scaling_factor,
                      _stream(input_tensor))


moe_sum_reduce.register_fake(_no_result)


@_custom_op("moekit::apply_shuffle_mul_sum", mutates_args=("output",))
def apply_shuffle_mul_sum(input: Tensor, output: Tensor, permutation: Tensor,
                          factors: Optional[Tensor] = None) -> None:
    """moekit.ops.apply_shuffle_mul_sum as a torch op."""
    _C.apply_shuffle_mul_sum(_arg(input), _arg(output), _arg(permutation), _optional(factors),
                             _stream(input))


apply_shuffle_mul_sum.register_fake(_no_result)


# ---------------------------------------------------------------------------------------------
# QK-RMSNorm + RoPE (moekit/qk_norm_rope.h)


@_custom_op("moekit::fused_qk_norm_rope", mutates_args=("qkv",))
def fused_qk_norm_rope(qkv: Tensor, num_heads_q: int, num_heads_k: int, num_heads_v: int,
                       head_dim: int, eps: float, q_weight: Optional[Tensor],
                       k_weight: Optional[Tensor], base: float, is_neox: bool,
                       position_ids: Tensor, factor: float, low: float, high: float,
                       attention_factor: float, rotary_dim: Optional[int] = None) -> None:
    """moekit.ops.fused_qk_norm_rope as a torch op (qkv modified in place)."""
    _C.fused_qk_norm_rope(_arg(qkv), num_heads_q, num_heads_k, num_heads_v, head_dim, eps,
                          _optional(q_weight), _optional(k_weight), base, is_neox,
                          _arg(position_ids), factor, low, high, attention_factor,
                          -1 if rotary_dim is None else rotary_dim, _stream(qkv))


fused_qk_norm_rope.register_fake(_no_result)



# ---------------------------------------------------------------------------------------------
# Expert compute (moekit/gpu_experts.h, cpu_experts.h)

_SGLANG_ACTIVATIONS = {"silu": "silu_and_mul", "gelu": "gelu_and_mul",
                       "gelu_tanh": "gelu_tanh_and_mul", "swigluoai": "swiglu_oai"}


def _experts_options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit,
                     gate_up_interleaved=False):
    return _C.FusedExpertsOptions(activation=_SGLANG_ACTIVATIONS.get(activation, activation),
                                  swiglu_alpha=swiglu_alpha, swiglu_limit=swiglu_limit,
                                  routed_scaling_factor=routed_scaling_factor,
                                  gate_up_interleaved=gate_up_interleaved)


@_custom_op("moekit::interleave_gate_up", mutates_args=("out",))
def interleave_gate_up(w13: Tensor, out: Tensor, dim: int = 1) -> None:
    """moekit.ops.interleave_gate_up as a torch op: out = w13 with its gate/up rows along dim
    interleaved (row 2j = gate_j, 2j+1 = up_j); out must not overlap w13."""
    _C.interleave_gate_up(_arg(w13), _arg(out), dim, _stream(w13))


interleave_gate_up.register_fake(_no_result)


def _packed(w: Tensor) -> bool:
    return w.dim() == 1 and w.dtype == torch.uint8


@_custom_op("moekit::fused_experts", mutates_args=())
def fused_experts(hidden_states: Tensor, w13: Tensor, w2: Tensor, topk_weights: Tensor,
                  topk_ids: Tensor, activation: str = "silu_and_mul",
                  routed_scaling_factor: float = 1.0, w13_bias: Optional[Tensor] = None,
                  w2_bias: Optional[Tensor] = None, swiglu_alpha: float = 0.0,
                  swiglu_limit: float = 0.0, gate_up_interleaved: bool = False) -> Tensor:
    """moekit.ops.fused_experts as a torch op: returns a new [M, H] tensor. CUDA: logical BF16/FP16
    weights w13 [E, 2I, H], w2 [E, H, I]; CPU: packed weights (moekit.ops.pack_moe_weights)."""
    options = _experts_options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit,
                               gate_up_interleaved)
    output = torch.empty_like(hidden_states)
    if _packed(w13):
        _C.fused_experts_cpu(_arg(hidden_states), _arg(w13), _arg(w2), _arg(topk_weights),
                             _arg(topk_ids), output, options)
        return output
    def weights():  # fresh exports for each call (a DLPack capsule is consumed once)
        return (_C.ExpertWeights(_arg(w13), bias=_optional(w13_bias)),
                _C.ExpertWeights(_arg(w2), bias=_optional(w2_bias)))

    size = _C.fused_experts_workspace_size(_arg(hidden_states), *weights(), _arg(topk_ids),
                                           options)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=hidden_states.device)
    _C.fused_experts(_arg(hidden_states), *weights(), _arg(topk_weights), _arg(topk_ids),
                     _arg(output), _arg(workspace), options, _stream(hidden_states))
    return output


@fused_experts.register_fake
def _(hidden_states, w13, w2, topk_weights, topk_ids, activation="silu_and_mul",
      routed_scaling_factor=1.0, w13_bias=None, w2_bias=None, swiglu_alpha=0.0, swiglu_limit=0.0,
      gate_up_interleaved=False):
    return torch.empty_like(hidden_states)


@_custom_op("moekit::fused_moe", mutates_args=())
def fused_moe(hidden_states: Tensor, w13: Tensor, w2: Tensor, router_logits: Tensor, topk: int,
              renormalize: bool = True, activation: str = "silu_and_mul",
              routed_scaling_factor: float = 1.0, swiglu_alpha: float = 0.0,
              swiglu_limit: float = 0.0, gate_up_interleaved: bool = False) -> Tensor:
    """moekit.ops.fused_moe as a torch op: softmax top-k routing then fused_experts; returns a new
    [M, H] tensor."""
    options = _experts_options(activation, routed_scaling_factor, swiglu_alpha, swiglu_limit,
                               gate_up_interleaved)
    output = torch.empty_like(hidden_states)
    if not hidden_states.is_cuda:
        M = router_logits.shape[0]
        weights = torch.empty(M, topk, dtype=torch.float32)
        ids = torch.empty(M, topk, dtype=torch.int32)
        _C.topk_softmax(weights, ids, _arg(router_logits), renormalize, 0.0, None, "logit", 0)
        if not _packed(w13):
            w13 = _pack(w13, "w13", "interleaved" if gate_up_interleaved else "halves")
            w2 = _pack(w2, "w2")
        _C.fused_experts_cpu(_arg(hidden_states), w13, w2, weights, ids, output, options)
        return output
    def weights():  # fresh exports for each call (a DLPack capsule is consumed once)
        return _C.ExpertWeights(_arg(w13)), _C.ExpertWeights(_arg(w2))

    size = _C.fused_moe_workspace_size(_arg(hidden_states), *weights(), _arg(router_logits),
                                       topk, options)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=hidden_states.device)
    _C.fused_moe(_arg(hidden_states), *weights(), _arg(router_logits), topk, renormalize,
                 _arg(output), _arg(workspace), options, _stream(hidden_states))
    return output


@fused_moe.register_fake
def _(hidden_states, w13, w2, router_logits, topk, renormalize=True, activation="silu_and_mul",
      routed_scaling_factor=1.0, swiglu_alpha=0.0, swiglu_limit=0.0, gate_up_interleaved=False):
    return torch.empty_like(hidden_states)


def _pack(weight: Tensor, role: str, source: str = "halves") -> Tensor:
    weight = weight.detach()
    packed = torch.empty(_C.packed_weight_bytes(weight, role), dtype=torch.uint8)
    _C.pack_moe_weights(weight, role, packed, source)
    return packed


@_custom_op("moekit::shared_expert_cpu", mutates_args=())
def shared_expert_cpu(hidden_states: Tensor, w13_packed: Tensor, w2_packed: Tensor,
                      fused_experts_out: Optional[Tensor] = None,
                      routed_scaling_factor: float = 1.0) -> Tensor:
    """moekit.ops.shared_expert_cpu as a torch op (packed BF16/FP16 weights); returns a new tensor."""
    output = torch.empty_like(hidden_states)
    _C.shared_expert_cpu(_arg(hidden_states), w13_packed, w2_packed, _optional(fused_experts_out),
                         output, _C.FusedExpertsOptions(routed_scaling_factor=routed_scaling_factor))
    return output


@shared_expert_cpu.register_fake
def _(hidden_states, w13_packed, w2_packed, fused_experts_out=None, routed_scaling_factor=1.0):
    return torch.empty_like(hidden_states)

__all__ = [
    "apply_shuffle_mul_sum",
    "fused_experts",
    "fused_moe",
    "interleave_gate_up",
    "shared_expert_cpu",
    "biased_grouped_topk",
    "fused_qk_norm_rope",
    "grouped_topk",
    "kimi_k2_moe_fused_gate",
    "moe_align_block_size",
    "moe_align_block_size_experts",
    "moe_fused_gate",
    "moe_sum",
    "moe_sum_reduce",
    "prepare_moe_input",
    "route_and_align_block_size",
    "shuffle_rows",
    "topk_sigmoid",
    "topk_softmax",
]
