"""The numpy boundary: host copies of gptx.Tensors, the same one copy on every device."""
from __future__ import annotations

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
