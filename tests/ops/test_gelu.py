"""gelu_forward / gelu_backward (tanh GELU) vs NumPy float64: odd sizes, |x| up to 1e4, negative tail, accumulate."""
import numpy as np
import pytest

from conftest import poisoned, randn
from gptx import ops
from reference import GELU_C, central_difference, f64, gelu, gelu_backward
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

SHAPES = [(1,), (3,), (17,), (2, 97), (3, 5, 33), (37, 1001)]  # the last is above the parallel threshold


def term_scale(x, dout=None):
    """Magnitude of the terms the tanh form adds: 0.5 x (1 + tanh u) forward, 0.5 x (1 - tanh^2 u) u' backward."""
    x = np.abs(f64(x))
    if dout is None:
        return float(max(1.0, x.max()))
    du = GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return float(max(1.0, (0.5 * x * du * np.abs(f64(dout))).max()))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward(isa, threads, rng, shape):
    x = randn(rng, *shape, scale=2.0)
    out = poisoned(shape)
    r = ops.gelu_forward(x, out=out)
    assert_close(out, gelu(x), scale=term_scale(x), what=f"gelu_forward {shape}")
    np.testing.assert_array_equal(np.asarray(r), out)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(isa, threads, rng, shape):
    x, dout = randn(rng, *shape, scale=2.0), randn(rng, *shape)
    dinp = poisoned(shape)
    r = ops.gelu_backward(dout, x, dinp=dinp)
    assert_close(dinp, gelu_backward(dout, x), scale=term_scale(x, dout), what=f"gelu_backward {shape}")
    np.testing.assert_array_equal(np.asarray(r), dinp)


@pytest.mark.parametrize("shape", [(17,), (37, 1001)], ids=str)
def test_backward_accumulate(isa, threads, rng, shape):
    x, dout, dinp = randn(rng, *shape, scale=2.0), randn(rng, *shape), randn(rng, *shape)
    expected = f64(dinp) + gelu_backward(dout, x)
    ops.gelu_backward(dout, x, dinp=dinp, accumulate=True)
    assert_close(dinp, expected, scale=term_scale(x, dout), what=f"gelu_backward accumulate {shape}")


# Bands of |x| for the large-magnitude test: the positive side is x itself (relative tolerance), the negative tail is
# a tiny number computed from terms of size |x|, so it is compared with an absolute allowance scaled by its band.
BANDS = [(3.0, 10.0), (10.0, 100.0), (100.0, 1e4)]


def large_inputs(rng):
    fixed = [3.0, 5.0, 8.0, 10.0, 30.0, 100.0, 1e3, 1e4]
    mags = np.concatenate([fixed, np.exp(rng.uniform(np.log(3.0), np.log(1e4), 45))])
    return np.concatenate([mags, -mags]).astype(np.float32)  # 106 elements: a vector body and a tail


def test_forward_large_and_tail(isa, threads, rng):
    x = large_inputs(rng)
    out = poisoned(x.shape)
    ops.gelu_forward(x, out=out)
    assert np.isfinite(out).all(), f"gelu_forward not finite at {x[~np.isfinite(out)]}"
    pos = x > 0
    assert_close(out[pos], gelu(x[pos]), what="gelu_forward large positive x")
    for lo, hi in BANDS:
        sel = (x < 0) & (-x >= lo) & (-x <= hi)
        assert_close(out[sel], gelu(x[sel]), scale=hi if lo < 10 else 1.0,
                     what=f"gelu_forward negative tail |x| in [{lo}, {hi}]")


def test_backward_large_and_tail(isa, threads, rng):
    x = large_inputs(rng)
    dout = randn(rng, *x.shape)
    dinp = poisoned(x.shape)
    ops.gelu_backward(dout, x, dinp=dinp)
    assert np.isfinite(dinp).all(), f"gelu_backward not finite at {x[~np.isfinite(dinp)]}"
    expected = gelu_backward(dout, x)
    pos = x > 0
    # for x >= 3 the derivative is 1 up to ~1e-4 (tanh saturates): relative tolerance on dout
    assert_close(dinp[pos], expected[pos], what="gelu_backward large positive x")
    for lo, hi in BANDS:
        sel = (x < 0) & (-x >= lo) & (-x <= hi)
        s = term_scale(x[sel], dout[sel]) if lo < 10 else 1.0  # past |x| = 10 tanh is -1 in float32: exactly 0
        assert_close(dinp[sel], expected[sel], scale=s, what=f"gelu_backward negative tail |x| in [{lo}, {hi}]")


def test_backward_finite_difference(isa, rng):
    x, w = randn(rng, 3, 7, scale=2.0), randn(rng, 3, 7)
    got = np.asarray(ops.gelu_backward(w, x), dtype=np.float64).reshape(-1)
    coords = rng.choice(x.size, size=10, replace=False)
    fd = central_difference(lambda t: (gelu(t) * w).sum(), x, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"gelu: fd err {err}"


def test_deterministic_rerun(isa, threads, rng):
    x, dout = randn(rng, 37, 1001, scale=2.0), randn(rng, 37, 1001)
    first = [np.asarray(ops.gelu_forward(x)).copy(), np.asarray(ops.gelu_backward(dout, x)).copy()]
    second = [np.asarray(ops.gelu_forward(x)).copy(), np.asarray(ops.gelu_backward(dout, x)).copy()]
    for x1, x2 in zip(first, second):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    x, dout = randn(rng, 7, 67, scale=2.0), randn(rng, 7, 67)
    out, dinp = poisoned(x.shape), poisoned(x.shape)
    ops.gelu_forward(x, out=out)
    assert_close(out, gelu(x), scale=term_scale(x), what="reference gelu_forward")
    ops.gelu_backward(dout, x, dinp=dinp)
    assert_close(dinp, gelu_backward(dout, x), scale=term_scale(x, dout), what="reference gelu_backward")
    xl = large_inputs(rng)
    outl = np.asarray(ops.gelu_forward(xl))
    assert np.isfinite(outl).all()
    assert_close(outl[xl > 0], gelu(xl[xl > 0]), what="reference gelu_forward large positive x")
