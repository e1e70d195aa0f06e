"""The oracles: plain loops, fp32 math, fp64 accumulation, CPU tensors only. Each takes the same
arguments as the op of the same name in ``moekit._C`` (outputs passed in, no ``stream``); the tests
compare the fast paths with these."""

from . import _C

# Routing
topk_softmax = _C.reference_topk_softmax
topk_sigmoid = _C.reference_topk_sigmoid
moe_fused_gate = _C.reference_moe_fused_gate
kimi_k2_moe_fused_gate = _C.reference_kimi_k2_moe_fused_gate
grouped_topk = _C.reference_grouped_topk
biased_grouped_topk = _C.reference_biased_grouped_topk
route_and_align_block_size = _C.reference_route_and_align_block_size

# Dispatch
moe_align_block_size = _C.reference_moe_align_block_size
moe_align_block_size_experts = _C.reference_moe_align_block_size_experts
prepare_moe_input = _C.reference_prepare_moe_input
shuffle_rows = _C.reference_shuffle_rows

# Experts
fused_experts = _C.reference_fused_experts
shared_expert = _C.reference_shared_expert

# QK-RMSNorm + RoPE
fused_qk_norm_rope = _C.reference_fused_qk_norm_rope

# Combine
moe_sum = _C.reference_moe_sum
moe_sum_reduce = _C.reference_moe_sum_reduce
apply_shuffle_mul_sum = _C.reference_apply_shuffle_mul_sum

__all__ = [
    "apply_shuffle_mul_sum",
    "biased_grouped_topk",
    "fused_experts",
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
    "shared_expert",
    "shuffle_rows",
    "topk_sigmoid",
    "topk_softmax",
]
