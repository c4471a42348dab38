"""The numpy boundary: host copies of gptx.Tensors, the same one copy on every device; where host memory comes from."""
from __future__ import annotations

import math

import numpy as np

from gptx import _core


def host_copy(t) -> np.ndarray:
    """A float32 numpy array that owns a copy of t's values: one copy on the CPU, one transfer from a GPU.

    16-bit tensors are widened on their own device first (numpy has no bfloat16)."""
    src = t if t.dtype == "float32" else t.to("float32")
    out = np.empty(src.shape, dtype=np.float32)
    _core.Tensor(out).copy_(src)
    return out


def host_values(t) -> np.ndarray:
    """t's values on the host without a copy where they already are (a CPU float32 tensor): for reading, not keeping."""
    src = t if t.dtype == "float32" else t.to("float32")
    return np.asarray(src.to("cpu"))


def zero_(t) -> None:
    """t[...] = 0. A CPU float32 tensor is zeroed through its numpy view: Tensor.fill_ on the CPU is a per-element
    loop that converts every value (3.8 ms vs numpy's 0.64 ms for 3.3M floats, 1 thread), which a GPT-2 zero_grad
    (124M floats) would pay every step. Elsewhere Tensor.fill_ (one kernel on a GPU)."""
    if t.device == "cpu" and t.dtype == "float32":
        np.asarray(t).fill(0.0)
    else:
        t.fill_(0.0)


def _host_buffer(shape, dtype: str, make) -> "_core.Tensor":
    n, item = math.prod(shape), np.dtype(dtype).itemsize
    raw = make(n + 64 // item, dtype=dtype)
    start = (-raw.ctypes.data % 64) // item  # the 64-byte alignment of Tensor storage
    return _core.Tensor(raw[start:start + n].reshape(shape))


def zeros(shape, dtype: str = "float32", device: str = "cpu") -> "_core.Tensor":
    """Tensor.zeros(shape, dtype, device), except that CPU memory comes from numpy, wrapped without a copy: numpy asks
    the kernel for huge pages on allocations of 4 MB and more, and streaming kernels over the big buffers run faster
    on them (124M floats, 1 thread, medians of 4 alternating runs: AdamW 131 vs 142 ms, global_norm 31 vs 34 ms)."""
    if device != "cpu":
        return _core.Tensor.zeros(list(shape), dtype, device)
    return _host_buffer(shape, dtype, np.zeros)


def empty(shape, dtype: str = "float32", device: str = "cpu") -> "_core.Tensor":
    """Tensor.empty with CPU memory from numpy, for the same reason as zeros()."""
    if device != "cpu":
        return _core.Tensor.empty(list(shape), dtype, device)
    return _host_buffer(shape, dtype, np.empty)
