"""moekit: Mixture-of-Experts kernels for Hopper GPUs and x86 CPUs.

Tensors come from any framework that exports DLPack (numpy, torch CPU/CUDA, cupy, jax) and are
never copied: ops read their inputs and write their outputs in place, on the tensors' device. CUDA
ops run on the caller's stream (``stream=`` a cudaStream_t as int; by default the current stream of
torch or cupy tensors, else the legacy default stream).

- ``moekit.ops``: every op under its sgl-kernel name and argument order (drop-in for ``sgl_kernel``).
- ``moekit.torch``: the same ops registered as torch custom ops (``torch.ops.moekit.*``) with fake
  implementations, for torch.compile(fullgraph=True) and CUDA-graph capture. Importing ``moekit``
  does not import torch.
- ``moekit.reference``: the oracles (plain loops, fp64 accumulation; CPU tensors).
- ``moekit.quant``: the reference quantisers of every expert weight scheme (CPU), to build test
  weights and activations.
- ``moekit.ExpertWeights`` / ``moekit.FusedExpertsOptions``: the expert ops' weights and options.
- ``moekit.typed(array, dtype)``: reinterpret a same-size view (numpy has no bfloat16 / fp8).

Errors: invalid arguments raise ValueError naming the argument, what was expected and what came;
unsupported requests and CUDA failures raise RuntimeError.
"""

from . import _C
from ._C import (
    ExpertWeights,
    FusedExpertsOptions,
    TypedArray,
    best_cpu_isa,
    built_with_cuda,
    cpu_features,
    cpu_isa,
    cpu_threads,
    set_cpu_isa,
    set_cpu_threads,
    supported_cpu_isas,
    typed,
)
from . import ops, quant, reference
from .ops import fused_moe, pack_moe_weights

__version__ = "0.1.0"

Array = object
"""Any tensor exporting DLPack (numpy.ndarray, torch.Tensor, cupy.ndarray, jax.Array, ...), or a
``moekit.typed(...)`` view."""

__all__ = [
    "Array",
    "ExpertWeights",
    "FusedExpertsOptions",
    "TypedArray",
    "best_cpu_isa",
    "built_with_cuda",
    "cpu_features",
    "cpu_isa",
    "cpu_threads",
    "fused_moe",
    "ops",
    "pack_moe_weights",
    "quant",
    "reference",
    "set_cpu_isa",
    "set_cpu_threads",
    "supported_cpu_isas",
    "typed",
]
