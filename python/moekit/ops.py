"""moekit's ops under their sgl-kernel names and argument orders: an SGLang user switches with
``from moekit.ops import topk_softmax`` (or ``import moekit.ops as sgl_kernel``).

Tensors: any DLPack exporter (numpy, torch, cupy, jax; see ``moekit.typed`` for bfloat16 / fp8 numpy
data). Ops write their outputs in place and return None, except where sgl-kernel returns new
tensors (``moe_fused_gate``, ``kimi_k2_moe_fused_gate``, ``shuffle_rows``, ``fused_experts_cpu``),
which allocate them on the framework and device of their first input.

``stream``: a cudaStream_t as int; default the current stream of torch / cupy CUDA tensors.
torch tensors go through the registered torch custom ops (``moekit.torch``), so these functions also
work inside torch.compile(fullgraph=True) and CUDA-graph capture.
"""

from . import _C
from ._frameworks import is_torch, stream_for


def _torch_ops():
    from . import torch as moekit_torch

    return moekit_torch


def moe_sum(input_tensor, output_tensor, *, stream=None) -> None:
    """output[m, h] = sum_j input[m, j, h] (fp32 accumulation, one rounding).

    input_tensor  [M, k, H] float32 / float16 / bfloat16, contiguous
    output_tensor [M, H]    same dtype, contiguous; written
    """
    if is_torch(input_tensor):
        return _torch_ops().moe_sum(input_tensor, output_tensor)
    _C.moe_sum(input_tensor, output_tensor, stream_for(stream, input_tensor))


__all__ = ["moe_sum"]
