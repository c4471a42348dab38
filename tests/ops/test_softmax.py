"""softmax_forward / softmax_backward vs NumPy float64: scale, causal (Tq == L and Tq < L), large logits, -inf rows."""
import numpy as np
import pytest

from conftest import poisoned, randn
from gptx import ops
from reference import causal_mask, central_difference, softmax, softmax_backward
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

# (shape, causal); 37 x 1001 is above the kernels' parallel threshold
CASES = [
    ((1, 1), False), ((3, 17), False), ((2, 5, 97), False), ((37, 1001), False),
    ((1, 1, 1), True), ((2, 17, 17), True), ((3, 5, 17), True), ((1, 1, 97), True), ((2, 3, 97, 131), True),
]
CASE_IDS = [f"{'causal' if c else 'full'}-{s}" for s, c in CASES]


@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_forward(isa, threads, rng, shape, causal, scale):
    x = randn(rng, *shape, scale=2.0)
    out = poisoned(shape)
    r = ops.softmax_forward(x, scale=scale, causal=causal, out=out)
    assert_close(out, softmax(x, scale, causal), what=f"softmax_forward {shape} causal={causal} scale={scale}")
    np.testing.assert_array_equal(np.asarray(r), out)
    if causal:
        assert (out[..., ~causal_mask(shape[-2], shape[-1])] == 0).all(), "masked entries must be exactly 0"


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_large_logits(isa, threads, rng, causal):
    # rows around +1e4 and around -1e4, and rows mixing both: exp must not overflow or underflow to 0/0
    shape = (4, 13, 37)
    sign = np.where(rng.random((4, 13, 1)) < 0.5, -1.0, 1.0)
    x = (1e4 * sign + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    x[0, 0, ::2] *= -1  # a row mixing +-1e4
    out = poisoned(shape)
    ops.softmax_forward(x, scale=1.0, causal=causal, out=out)
    assert np.isfinite(out).all()
    assert_close(out, softmax(x, 1.0, causal), what=f"softmax_forward large logits causal={causal}")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_all_neg_inf_row(isa, threads, rng, causal):
    Tq, L = 5, 19
    x = randn(rng, 2, Tq, L)
    x[0, 1, :] = -np.inf
    x[1, 3, : 3 + (L - Tq) + 1] = -np.inf  # every kept entry of this row (the masked ones are finite)
    out = poisoned(x.shape)
    ops.softmax_forward(x, causal=causal, out=out)
    expected = softmax(x, 1.0, causal)
    assert (out[0, 1] == 0).all()
    if causal:
        assert (out[1, 3] == 0).all()
    assert_close(out, expected, what=f"softmax_forward -inf rows causal={causal}")


def test_forward_in_place(isa, threads, rng):
    x = randn(rng, 7, 97)
    expected = softmax(x, 0.5)
    ops.softmax_forward(x, scale=0.5, out=x)
    assert_close(x, expected, what="softmax_forward in place")


@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
def test_backward(isa, threads, rng, shape, causal):
    scale = 0.37
    out = softmax(randn(rng, *shape), scale, causal).astype(np.float32)
    dout = randn(rng, *shape)
    dinp = poisoned(shape)
    r = ops.softmax_backward(dout, out, scale=scale, dinp=dinp)
    assert_close(dinp, softmax_backward(dout, out, scale), scale=np.sqrt(shape[-1]),
                 what=f"softmax_backward {shape} causal={causal}")
    np.testing.assert_array_equal(np.asarray(r), dinp)


def test_backward_in_place(isa, threads, rng):
    out = softmax(randn(rng, 5, 33)).astype(np.float32)
    dout = randn(rng, 5, 33)
    expected = softmax_backward(dout, out, 2.0)
    ops.softmax_backward(dout, out, scale=2.0, dinp=dout)
    assert_close(dout, expected, scale=np.sqrt(33), what="softmax_backward in place (dinp is dout)")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_finite_difference(isa, rng, causal):
    shape, scale = (2, 4, 7), 0.7
    x = randn(rng, *shape)
    w = randn(rng, *shape)
    out = np.asarray(ops.softmax_forward(x, scale=scale, causal=causal))
    got = np.asarray(ops.softmax_backward(w, out, scale=scale), dtype=np.float64).reshape(-1)
    coords = rng.choice(x.size, size=8, replace=False)
    fd = central_difference(lambda t: (softmax(t, scale, causal) * w).sum(), x, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"softmax causal={causal}: fd err {err}"


def test_deterministic_rerun(isa, threads, rng):
    x, dout = randn(rng, 2, 37, 1001), randn(rng, 2, 37, 1001)
    runs = []
    for _ in range(2):
        out = np.asarray(ops.softmax_forward(x, scale=0.3, causal=True)).copy()
        runs.append((out, np.asarray(ops.softmax_backward(dout, out, scale=0.3)).copy()))
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    for shape, causal in (((3, 33), False), ((2, 9, 33), True)):
        x, dout = randn(rng, *shape), randn(rng, *shape)
        out = poisoned(shape)
        ops.softmax_forward(x, scale=0.6, causal=causal, out=out)
        assert_close(out, softmax(x, 0.6, causal), what=f"reference softmax_forward causal={causal}")
        dinp = poisoned(shape)
        ops.softmax_backward(dout, out, scale=0.6, dinp=dinp)
        assert_close(dinp, softmax_backward(dout, out, 0.6), scale=np.sqrt(33),
                     what=f"reference softmax_backward causal={causal}")
