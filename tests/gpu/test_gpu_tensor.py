"""CUDA Tensor.fill_ and dtype casts vs the CPU's own (the spec): every dtype pair, NaN/inf/-0.0, unaligned views.

These compare a device's conversions with the host's, so they live here rather than in the op tables of tests/ops.
"""
import numpy as np
import pytest

import gptx

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

ALL_DTYPES = ["float32", "bfloat16", "float16", "int32", "int64", "uint16", "uint8"]
FLOATS = ["float32", "bfloat16", "float16"]


def cpu_tensor(values, dtype):
    """A CPU tensor of `dtype` made by the CPU's own conversion (the spec for the CUDA cast)."""
    base = gptx.Tensor(np.ascontiguousarray(values))
    return base if str(values.dtype) == dtype else base.to(dtype)


def as_numpy(t, dtype):
    t = t.to("cpu")
    if dtype in ("bfloat16", "float16"):
        t = t.to("float32")
    return np.asarray(t.numpy())


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("n", [1, 7, 17, 1000, 100003])
def test_fill(dtype, n):
    value = float("nan") if dtype in FLOATS else 3.0
    for v in (value, 1.0 / 3.0 if dtype in FLOATS else 200.0, -0.0):
        t = gptx.Tensor.empty([n], dtype, "cuda")
        t.fill_(v)
        c = gptx.Tensor.empty([n], dtype, "cpu")
        c.fill_(v)
        np.testing.assert_array_equal(as_numpy(t, dtype), as_numpy(c, dtype), err_msg=f"fill {dtype} {v}")


def test_fill_unaligned_view():
    t = gptx.Tensor.zeros([5, 7], "bfloat16", "cuda")  # rows 1..3 start 14 bytes in: not 16-byte aligned
    t[1:4].fill_(2.5)
    got = as_numpy(t, "bfloat16")
    expected = np.zeros((5, 7), np.float32)
    expected[1:4] = 2.5
    np.testing.assert_array_equal(got, expected)


def cast_source(rng, dtype, n):
    if dtype in FLOATS:
        x = (rng.standard_normal(n) * 1000.0).astype(np.float32)
        x[: min(n, 6)] = np.array([np.nan, np.inf, -np.inf, 0.0, 1e-8, 70000.0], np.float32)[: min(n, 6)]
        return cpu_tensor(x, dtype)
    hi = {"uint8": 255, "uint16": 65535}.get(dtype, 100000)
    lo = 0 if dtype.startswith("uint") else -hi
    return gptx.Tensor(rng.integers(lo, hi, n).astype(dtype))


@pytest.mark.parametrize("src", ALL_DTYPES)
@pytest.mark.parametrize("dst", ALL_DTYPES)
def test_cast(rng, src, dst):
    for n in (1, 13, 4099):
        c = cast_source(rng, src, n)
        if src in FLOATS and dst not in FLOATS:
            # float -> int of NaN/inf/out-of-range values is undefined in C: compare in-range values only
            vals = np.clip(np.nan_to_num(as_numpy(c, src).astype(np.float64)), 0, 200).astype(np.float32)
            c = cpu_tensor(vals, "float32") if src == "float32" else cpu_tensor(vals, "float32").to(src)
        got = c.to("cuda").to(dst)
        expected = c.to(dst)
        np.testing.assert_array_equal(as_numpy(got, dst), as_numpy(expected, dst), err_msg=f"cast {src} -> {dst}")
