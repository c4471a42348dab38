"""What the GPU tests share: CUDA tensors from NumPy arrays, host copies back, NaN-poisoned device outputs."""
import numpy as np

import gptx


def dev(x, dtype="float32"):
    """A CUDA tensor holding x: float arrays go through float32 and are rounded once to `dtype`; ints keep theirs."""
    a = np.asarray(x)
    if a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    t = gptx.Tensor(np.ascontiguousarray(a)).to("cuda")
    return t if dtype == "float32" else t.to(dtype)


def host(t):
    """A float64 NumPy copy of a CUDA tensor's values (16-bit values are exact in float64)."""
    return np.asarray(t.to("float32").to("cpu").numpy(), dtype=np.float64)


def dev_and_values(x, dtype):
    """(CUDA tensor of `dtype`, float32 array of its rounded values): references start from what the kernel sees."""
    t = dev(x, dtype)
    return t, host(t).astype(np.float32)


def poison(shape, dtype="float32"):
    """A CUDA output buffer full of NaN: an element the kernel forgets to write fails the comparison."""
    t = gptx.Tensor.empty(list(shape), dtype, "cuda")
    t.fill_(float("nan"))
    return t
