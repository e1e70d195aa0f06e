"""What moekit needs to know about the caller's framework: whether a tensor is a torch tensor,
which CUDA stream an op on it runs on by default, and how to allocate a new array beside it."""

from . import _C


def is_torch(x) -> bool:
    # By the type's module rather than isinstance(x, torch.Tensor): torch need not be imported, and
    # torch.compile traces this as a constant (Parameter and FakeTensor live under torch too).
    return type(x).__module__.startswith("torch")


def _underlying(x):
    return x.array if isinstance(x, _C.TypedArray) else x


def default_stream(x) -> int:
    """The stream an op on ``x`` runs on when the caller names none: the current stream of a torch
    or cupy CUDA tensor, else 0 (the legacy default stream; CPU ops ignore it)."""
    x = _underlying(x)
    module = type(x).__module__
    if module.startswith("torch"):
        if x.is_cuda:
            import torch

            return torch.cuda.current_stream(x.device).cuda_stream
        return 0
    if module.startswith("cupy"):
        import cupy

        return cupy.cuda.get_current_stream().ptr
    return 0


def stream_for(stream, x) -> int:
    return default_stream(x) if stream is None else int(stream)


def empty(like, shape, dtype: str):
    """A new uninitialised array of moekit dtype ``dtype`` ("float32", "int32", ...) on the
    framework and device of ``like`` (torch, cupy; numpy for everything else on the CPU)."""
    x = _underlying(like)
    module = type(x).__module__
    shape = tuple(int(s) for s in shape)
    if module.startswith("torch"):
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype), device=x.device)
    if module.startswith("cupy"):
        import cupy

        with cupy.cuda.Device(x.device.id):
            return cupy.empty(shape, dtype=dtype)
    import numpy

    if dtype in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"):
        return _C.typed(numpy.empty(shape, "uint16" if dtype == "bfloat16" else "uint8"), dtype)
    return numpy.empty(shape, dtype=dtype)
