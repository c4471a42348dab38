"""CUDA gelu_forward/_backward, add_forward, fill and dtype casts vs NumPy float64 / the CPU conversions."""
import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host, poison
from reference import GELU_C, f64, gelu, gelu_backward
from tolerances import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

DTYPES = ["float32", "bfloat16"]
SHAPES = [(1,), (3,), (17,), (2, 97), (3, 5, 33), (37, 1001), (4, 1024, 257)]


def term_scale(x, dout=None):
    x = np.abs(f64(x))
    if dout is None:
        return float(max(1.0, x.max()))
    du = GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return float(max(1.0, (0.5 * x * du * np.abs(f64(dout))).max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gelu_forward(rng, shape, dtype):
    x = dev(randn(rng, *shape, scale=2.0), dtype)
    out = poison(shape, dtype)
    ops.gelu_forward(x, out=out)
    xh = host(x)
    assert_close(host(out), gelu(xh), backend="cuda", dtype=dtype, scale=term_scale(xh),
                 what=f"cuda gelu_forward {dtype} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_forward_in_place(rng, dtype):
    x = dev(randn(rng, 5, 999, scale=2.0), dtype)
    expected = gelu(host(x))
    ops.gelu_forward(x, out=x)
    assert_close(host(x), expected, backend="cuda", dtype=dtype, scale=4.0, what=f"cuda gelu_forward in place")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("accumulate", [False, True])
def test_gelu_backward(rng, shape, dtype, accumulate):
    x, dout = dev(randn(rng, *shape, scale=2.0), dtype), dev(randn(rng, *shape), dtype)
    dinp = dev(randn(rng, *shape), dtype) if accumulate else poison(shape, dtype)
    prev = host(dinp) if accumulate else 0.0
    ops.gelu_backward(dout, x, dinp=dinp, accumulate=accumulate)
    xh, dh = host(x), host(dout)
    s = term_scale(xh, dh) + (1.0 if accumulate else 0.0)
    assert_close(host(dinp), prev + gelu_backward(dh, xh), backend="cuda", dtype=dtype, scale=s,
                 what=f"cuda gelu_backward {dtype} {shape} accumulate={accumulate}")


def test_gelu_large_and_tail(rng):
    mags = np.concatenate([[3.0, 5.0, 8.0, 10.0, 30.0, 100.0, 1e3, 1e4], np.exp(rng.uniform(1.1, 9.2, 45))])
    xn = np.concatenate([mags, -mags]).astype(np.float32)
    x = dev(xn)
    out = host(ops.gelu_forward(x))
    assert np.isfinite(out).all()
    pos = xn > 0
    assert_close(out[pos], gelu(xn[pos]), backend="cuda", what="cuda gelu_forward large positive")
    assert_close(out[~pos], gelu(xn[~pos]), backend="cuda", scale=10.0, what="cuda gelu_forward negative tail")
    dout = randn(rng, xn.size)
    d = host(ops.gelu_backward(dev(dout), x))
    assert np.isfinite(d).all()
    e = gelu_backward(dout, xn)
    assert_close(d[pos], e[pos], backend="cuda", what="cuda gelu_backward large positive")
    assert_close(d[~pos], e[~pos], backend="cuda", scale=term_scale(xn[(~pos) & (xn > -10)], dout[(~pos) & (xn > -10)]),
                 what="cuda gelu_backward negative tail")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_add_forward(rng, shape, dtype):
    a, b = dev(randn(rng, *shape), dtype), dev(randn(rng, *shape, scale=3.0), dtype)
    out = poison(shape, dtype)
    ops.add_forward(a, b, out=out)
    assert_close(host(out), host(a) + host(b), backend="cuda", dtype=dtype, what=f"cuda add_forward {dtype} {shape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("which", ["a", "b"])
def test_add_forward_in_place(rng, dtype, which):
    a, b = dev(randn(rng, 41, 1001), dtype), dev(randn(rng, 41, 1001), dtype)
    expected = host(a) + host(b)
    ops.add_forward(a, b, out=a if which == "a" else b)
    assert_close(host(a if which == "a" else b), expected, backend="cuda", dtype=dtype,
                 what=f"cuda add_forward in place ({which}) {dtype}")


def test_add_forward_unaligned(rng):
    # row views starting 101 floats in: not 16-byte aligned, the element-by-element path
    a, b = dev(randn(rng, 7, 101)), dev(randn(rng, 7, 101))
    out = ops.add_forward(a[1:7], b[1:7])
    assert_close(host(out), host(a)[1:] + host(b)[1:], backend="cuda", what="cuda add_forward unaligned")


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
