"""gelu_forward / gelu_backward (tanh GELU) on every backend vs NumPy float64: odd sizes, in place, accumulate, |x| up
to 1e4 and the negative tail, gradients by finite differences."""
import numpy as np
import pytest

from backends import large, on_backends
from conftest import randn
from gptx import ops
from reference import GELU_C, central_difference, f64, gelu, gelu_backward
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# (37, 1001) is above the CPU kernels' parallel threshold; (4, 1024, 257) gives CUDA a grid-stride loop over 1M
SHAPES = [(1,), (3,), (17,), (2, 97), (3, 5, 33), (7, 67), (37, 1001), large((4, 1024, 257))]


def term_scale(x, dout=None):
    """Magnitude of the terms the tanh form adds: 0.5 x (1 + tanh u) forward, 0.5 x (1 - tanh^2 u) u' backward."""
    x = np.abs(f64(x))
    if dout is None:
        return float(max(1.0, x.max()))
    du = GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return float(max(1.0, (0.5 * x * du * np.abs(f64(dout))).max()))


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward(backend, dtype, threads, rng, shape):
    x, rx = backend.put_and_values(randn(rng, *shape, scale=2.0), dtype)
    out = backend.poison(shape, dtype)
    r = ops.gelu_forward(x, out=out)
    backend.assert_close(out, gelu(rx), dtype, term_scale(rx), f"gelu_forward {shape} {dtype}")
    backend.assert_equal(r, out, "the returned tensor is out")


@on_backends(dtypes=DTYPES, threads=True)
def test_forward_in_place(backend, dtype, threads, rng):
    x, rx = backend.put_and_values(randn(rng, 5, 999, scale=2.0), dtype)
    ops.gelu_forward(x, out=x)
    backend.assert_close(x, gelu(rx), dtype, 4.0, f"gelu_forward in place {dtype}")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("accumulate", [False, True])
def test_backward(backend, dtype, threads, rng, shape, accumulate):
    (x, rx), (dout, rdout) = (backend.put_and_values(randn(rng, *shape, scale=s), dtype) for s in (2.0, 1.0))
    if accumulate:
        dinp, prev = backend.put_and_values(randn(rng, *shape), dtype)
    else:
        dinp, prev = backend.poison(shape, dtype), 0.0
    r = ops.gelu_backward(dout, x, dinp=dinp, accumulate=accumulate)
    s = term_scale(rx, rdout) + (1.0 if accumulate else 0.0)  # + the magnitude of what was there
    backend.assert_close(dinp, prev + gelu_backward(rdout, rx), dtype, s,
                         f"gelu_backward {shape} {dtype} accumulate={accumulate}")
    backend.assert_equal(r, dinp, "the returned tensor is dinp")


# Bands of |x| for the large-magnitude tests: the positive side is x itself (relative tolerance), the negative tail is
# a tiny number computed from terms of size |x|, so it is compared with an absolute allowance scaled by its band.
BANDS = [(3.0, 10.0), (10.0, 100.0), (100.0, 1e4)]


def large_inputs(rng):
    fixed = [3.0, 5.0, 8.0, 10.0, 30.0, 100.0, 1e3, 1e4]
    mags = np.concatenate([fixed, np.exp(rng.uniform(np.log(3.0), np.log(1e4), 45))])
    return np.concatenate([mags, -mags]).astype(np.float32)  # 106 elements: a vector body and a tail


@on_backends(threads=True)
def test_forward_large_and_tail(backend, threads, rng):
    x = large_inputs(rng)
    out = backend.poison(x.shape)
    ops.gelu_forward(backend.put(x), out=out)
    got = backend.get(out)
    assert np.isfinite(got).all(), f"[{backend}] gelu_forward not finite at {x[~np.isfinite(got)]}"
    pos = x > 0
    backend.assert_close(got[pos], gelu(x[pos]), what="gelu_forward large positive x")
    for lo, hi in BANDS:
        sel = (x < 0) & (-x >= lo) & (-x <= hi)
        backend.assert_close(got[sel], gelu(x[sel]), scale=hi if lo < 10 else 1.0,
                             what=f"gelu_forward negative tail |x| in [{lo}, {hi}]")


@on_backends(threads=True)
def test_backward_large_and_tail(backend, threads, rng):
    x = large_inputs(rng)
    dout = randn(rng, *x.shape)
    dinp = backend.poison(x.shape)
    ops.gelu_backward(backend.put(dout), backend.put(x), dinp=dinp)
    got = backend.get(dinp)
    assert np.isfinite(got).all(), f"[{backend}] gelu_backward not finite at {x[~np.isfinite(got)]}"
    expected = gelu_backward(dout, x)
    pos = x > 0
    # for x >= 3 the derivative is 1 up to ~1e-4 (tanh saturates): relative tolerance on dout
    backend.assert_close(got[pos], expected[pos], what="gelu_backward large positive x")
    for lo, hi in BANDS:
        sel = (x < 0) & (-x >= lo) & (-x <= hi)
        s = term_scale(x[sel], dout[sel]) if lo < 10 else 1.0  # past |x| = 10 tanh is -1 in float32: exactly 0
        backend.assert_close(got[sel], expected[sel], scale=s, what=f"gelu_backward negative tail |x| in [{lo}, {hi}]")


@on_backends()
def test_backward_finite_difference(backend, rng):
    x, w = randn(rng, 3, 7, scale=2.0), randn(rng, 3, 7)
    got = backend.get(ops.gelu_backward(backend.put(w), backend.put(x))).reshape(-1)
    coords = rng.choice(x.size, size=10, replace=False)
    fd = central_difference(lambda t: (gelu(t) * w).sum(), x, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] gelu: fd err {err}"


@on_backends(threads=True)
def test_deterministic_rerun(backend, threads, rng):
    x, dout = backend.put(randn(rng, 37, 1001, scale=2.0)), backend.put(randn(rng, 37, 1001))
    runs = [[backend.get(ops.gelu_forward(x)), backend.get(ops.gelu_backward(dout, x))] for _ in range(2)]
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
