"""The oracles: plain loops, fp32 math, fp64 accumulation, CPU tensors only. Each has the same
arguments as the op of the same name in ``moekit.ops`` (without ``stream``); tests compare the fast
paths with these."""

from . import _C

moe_sum = _C.reference_moe_sum

__all__ = ["moe_sum"]
