"""What the Python layer needs to treat numpy arrays (CPU) and gptx.Tensors (CUDA) alike: fill, upload, download."""
from __future__ import annotations

import numpy as np

from gptx import _core, cuda

DTYPES = ("float32", "bfloat16")


def check(device: str, dtype: str, what: str) -> tuple[str, str]:
    """Validated (device, dtype) for a model: float32 anywhere, bfloat16 (mixed precision) on CUDA only."""
    device, dtype = str(device), str(dtype)
    if dtype not in DTYPES:
        raise TypeError(f"{what}: dtype must be one of {DTYPES}, got {dtype!r}")
    if device == "cpu":
        if dtype != "float32":
            raise TypeError(f"{what}: dtype {dtype} runs on CUDA only; on the CPU use float32")
        return device, dtype
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not cuda.is_available():
            why = "this build has no CUDA backend" if not cuda.is_built() else "no CUDA device is visible"
            raise RuntimeError(f"{what}: device {device!r} asked for but {why}")
        index = int(device[5:]) if ":" in device else 0
        if index >= cuda.device_count():
            raise RuntimeError(f"{what}: device {device!r} is not available ({cuda.device_count()} visible)")
        return f"cuda:{index}", dtype
    raise ValueError(f"{what}: unknown device {device!r} (cpu, cuda, cuda:N)")


def is_tensor(x) -> bool:
    return isinstance(x, _core.Tensor)


def fill(x, value: float) -> None:
    if is_tensor(x):
        x.fill_(float(value))
    else:
        x.fill(value)


def put(dst, values) -> None:
    """dst[...] = values (a host array of the same shape, converted to dst's dtype), on any device."""
    if is_tensor(dst):
        src = np.ascontiguousarray(np.asarray(values), dtype=np.int32 if dst.dtype == "int32" else np.float32)
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"shape {src.shape} does not fit {dst.shape}")
        if dst.dtype in ("int32", "float32"):
            dst.copy_(src)
        else:  # a 16-bit float buffer: upload float32, convert on the device
            dst.copy_(_core.Tensor(src).to(dst.device))
    else:
        np.copyto(dst, values, casting="unsafe")


def host(x) -> np.ndarray:
    """A host numpy array of x (x itself for numpy, a float32 copy for a 16-bit device tensor)."""
    if is_tensor(x):
        if x.dtype in ("bfloat16", "float16"):
            x = x.to("float32")
        return x.numpy()
    return np.asarray(x)


def host_copy(x) -> np.ndarray:
    """A host array that owns its memory (safe to keep after x changes)."""
    return np.array(host(x), copy=True)


def zeros_like(x):
    if is_tensor(x):
        return _core.Tensor.zeros(list(x.shape), x.dtype, x.device)
    return np.zeros_like(x)


def dtype_name(x) -> str:
    return x.dtype if is_tensor(x) else np.dtype(x.dtype).name
