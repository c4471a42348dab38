"""layernorm_forward/_backward vs NumPy float64: out/mean/rstd, dinp/dweight/dbias, accumulate, determinism."""
import numpy as np
import pytest

import gptx
from conftest import poisoned, randn
from gptx import ops
from reference import central_difference, f64, layernorm, layernorm_backward
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

# (leading shape, C); (197, 173) is above the parallel threshold and spans several 64-row chunks of the backward
SHAPES = [((1,), 1), ((3,), 17), ((2, 5), 97), ((1,), 1003), ((197,), 173)]
IDS = [f"{lead}x{C}" for lead, C in SHAPES]


def inputs(rng, lead, C, offset=0.0):
    x = (randn(rng, *lead, C, scale=2.0) + np.float32(offset)).astype(np.float32)
    w = (1.0 + randn(rng, C, scale=0.3)).astype(np.float32)
    return x, w, randn(rng, C)


@pytest.mark.parametrize("offset", [0.0, 3.0])
@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_forward(isa, threads, rng, lead, C, offset):
    x, w, b = inputs(rng, lead, C, offset)
    out, mean, rstd = poisoned((*lead, C)), poisoned(lead), poisoned(lead)
    r = ops.layernorm_forward(x, w, b, eps=1e-5, out=out, mean=mean, rstd=rstd)
    eout, emean, erstd = layernorm(x, w, b, 1e-5)
    what = f"layernorm_forward {lead}x{C} offset={offset}"
    s = np.sqrt(C) * (1.0 + offset)  # mean / variance sum C terms of magnitude |x|
    assert_close(out, eout, scale=s, what=what + " out")
    assert_close(mean, emean, scale=s, what=what + " mean")
    assert_close(rstd, erstd, scale=s, what=what + " rstd")
    for got, buf in zip(r, (out, mean, rstd)):
        np.testing.assert_array_equal(np.asarray(got), buf)


def test_forward_eps_and_constant_rows(isa, threads, rng):
    # a constant row has variance 0: rstd = 1 / sqrt(eps), out = bias
    x, w, b = inputs(rng, (4,), 37)
    x[1] = 2.5
    out, mean, rstd = (np.asarray(t) for t in ops.layernorm_forward(x, w, b, eps=1e-3))
    eout, emean, erstd = layernorm(x, w, b, 1e-3)
    assert_close(out, eout, scale=np.sqrt(37), what="layernorm_forward eps=1e-3 out")
    assert_close(mean, emean, scale=np.sqrt(37), what="layernorm_forward eps=1e-3 mean")
    assert_close(rstd, erstd, scale=np.sqrt(37), what="layernorm_forward eps=1e-3 rstd")


def ln_grads(rng, x, w, b, accumulate=False):
    lead, C = x.shape[:-1], x.shape[-1]
    _, mean, rstd = ops.layernorm_forward(x, w, b)
    dout = randn(rng, *lead, C)
    if accumulate:
        bufs = (randn(rng, *lead, C), randn(rng, C), randn(rng, C))
    else:
        bufs = (poisoned((*lead, C)), poisoned((C,)), poisoned((C,)))
    prev = [f64(t) if accumulate else 0.0 for t in bufs]
    r = ops.layernorm_backward(dout, x, w, mean, rstd, dinp=bufs[0], dweight=bufs[1], dbias=bufs[2],
                               accumulate=accumulate)
    for got, buf in zip(r, bufs):
        np.testing.assert_array_equal(np.asarray(got), buf)
    return dout, bufs, prev


def check_backward(rng, lead, C, accumulate, what):
    x, w, b = inputs(rng, lead, C)
    dout, (dinp, dw, db), prev = ln_grads(rng, x, w, b, accumulate)
    edinp, edw, edb = layernorm_backward(dout, x, w)
    rows = int(np.prod(lead))
    # dinp = rstd * (dnorm - two means over C): terms of magnitude rstd * |dout * weight| (rstd is 1/sqrt(eps) at C=1)
    _, _, rstd = layernorm(x, w, b)
    s = np.sqrt(C) * rstd.max() * np.abs(f64(dout) * w).max()
    assert_close(dinp, prev[0] + edinp, scale=s, what=what + " dinp")
    assert_close(dw, prev[1] + edw, scale=np.sqrt(rows), what=what + " dweight")
    assert_close(db, prev[2] + edb, scale=np.sqrt(rows), what=what + " dbias")


@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_backward(isa, threads, rng, lead, C):
    check_backward(rng, lead, C, False, f"layernorm_backward {lead}x{C}")


@pytest.mark.parametrize("lead,C", [((3,), 17), ((197,), 173)], ids=["3x17", "197x173"])
def test_backward_accumulate(isa, threads, rng, lead, C):
    check_backward(rng, lead, C, True, f"layernorm_backward accumulate {lead}x{C}")


def test_backward_finite_difference(isa, rng):
    lead, C = (2, 3), 7
    x, w, b = inputs(rng, lead, C)
    wgt = randn(rng, *lead, C)  # loss = sum(wgt * out)
    _, mean, rstd = ops.layernorm_forward(x, w, b)
    grads = ops.layernorm_backward(wgt, x, w, mean, rstd)
    losses = [
        (x, lambda t: (layernorm(t, w, b)[0] * wgt).sum()),
        (w, lambda t: (layernorm(x, t, b)[0] * wgt).sum()),
        (b, lambda t: (layernorm(x, w, t)[0] * wgt).sum()),
    ]
    for name, got, (t, loss) in zip(("dinp", "dweight", "dbias"), grads, losses):
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        coords = rng.choice(t.size, size=min(8, t.size), replace=False)
        fd = central_difference(loss, t, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"layernorm {name}: fd err {err}"


def ln_run(x, w, b, dout):
    out, mean, rstd = ops.layernorm_forward(x, w, b)
    grads = ops.layernorm_backward(dout, x, w, mean, rstd)
    return [np.asarray(t).copy() for t in (out, mean, rstd, *grads)]


def test_backward_thread_count_invariant(isa, rng):
    x, w, b = inputs(rng, (197,), 173)
    dout = randn(rng, 197, 173)
    before = gptx.get_num_threads()
    try:
        gptx.set_num_threads(1)
        one = ln_run(x, w, b, dout)
        gptx.set_num_threads(2)
        two = ln_run(x, w, b, dout)
    finally:
        gptx.set_num_threads(before)
    for name, x1, x2 in zip(("dinp", "dweight", "dbias"), one[3:], two[3:]):
        np.testing.assert_array_equal(x1, x2, err_msg=f"layernorm_backward {name}: 1 vs 2 threads")


def test_deterministic_rerun(isa, threads, rng):
    x, w, b = inputs(rng, (197,), 173)
    dout = randn(rng, 197, 173)
    for x1, x2 in zip(ln_run(x, w, b, dout), ln_run(x, w, b, dout)):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    lead, C = (3, 11), 67
    x, w, b = inputs(rng, lead, C, offset=1.0)
    out, mean, rstd = poisoned((*lead, C)), poisoned(lead), poisoned(lead)
    ops.layernorm_forward(x, w, b, out=out, mean=mean, rstd=rstd)
    for name, got, exp in zip(("out", "mean", "rstd"), (out, mean, rstd), layernorm(x, w, b)):
        assert_close(got, exp, scale=2 * np.sqrt(C), what=f"reference layernorm_forward {name}")
    check_backward(rng, lead, C, False, "reference layernorm_backward")
