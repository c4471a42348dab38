"""softmax_forward / softmax_backward on every backend vs NumPy float64: scale, causal (Tq == L and Tq < L), large
logits, -inf rows, in place, gradients by finite differences."""
import numpy as np
import pytest

from backends import on_backends
from conftest import randn
from gptx import ops
from reference import causal_mask, central_difference, softmax, softmax_backward
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# (shape, causal). 37 x 1001 is above the CPU kernels' parallel threshold; CUDA runs a warp per row up to L = 1024
# and a block per row past it, up to GPT-2's padded vocabulary of 50304.
CASES = [
    ((1, 1), False), ((3, 17), False), ((3, 33), False), ((2, 5, 97), False), ((37, 1001), False), ((9, 1024), False),
    ((5, 1025), False), ((3, 50304), False),
    ((1, 1, 1), True), ((2, 17, 17), True), ((3, 5, 17), True), ((2, 9, 33), True), ((1, 1, 97), True),
    ((2, 3, 97, 131), True), ((1, 7, 1100), True),
]
CASE_IDS = [f"{'causal' if c else 'full'}-{s}" for s, c in CASES]


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_forward(backend, dtype, threads, rng, shape, causal, scale):
    x, rx = backend.put_and_values(randn(rng, *shape, scale=2.0), dtype)
    out = backend.poison(shape, dtype)
    r = ops.softmax_forward(x, scale=scale, causal=causal, out=out)
    what = f"softmax_forward {shape} causal={causal} scale={scale} {dtype}"
    backend.assert_close(out, softmax(rx, scale, causal), dtype, what=what)
    backend.assert_equal(r, out, what + ": the returned tensor is out")
    if causal:
        assert (backend.get(out)[..., ~causal_mask(shape[-2], shape[-1])] == 0).all(), "masked entries must be 0"


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_large_logits(backend, dtype, threads, rng, causal):
    # rows around +1e4 and around -1e4, and rows mixing both: exp must not overflow or underflow to 0/0
    shape = (4, 13, 37)
    sign = np.where(rng.random((4, 13, 1)) < 0.5, -1.0, 1.0)
    x = (1e4 * sign + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    x[0, 0, ::2] *= -1  # a row mixing +-1e4
    x, rx = backend.put_and_values(x, dtype)
    out = backend.poison(shape, dtype)
    ops.softmax_forward(x, scale=1.0, causal=causal, out=out)
    assert np.isfinite(backend.get(out)).all()
    backend.assert_close(out, softmax(rx, 1.0, causal), dtype, what=f"softmax_forward large logits causal={causal}")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("L", [19, 2000])
def test_forward_all_neg_inf_row(backend, dtype, threads, rng, causal, L):
    Tq = 5
    x = randn(rng, 2, Tq, L)
    x[0, 1, :] = -np.inf
    x[1, 3, : 3 + (L - Tq) + 1] = -np.inf  # every kept entry of this row (the masked ones are finite)
    x, rx = backend.put_and_values(x, dtype)
    out = backend.poison(rx.shape, dtype)
    ops.softmax_forward(x, causal=causal, out=out)
    got = backend.get(out)
    assert (got[0, 1] == 0).all()
    if causal:
        assert (got[1, 3] == 0).all()
    backend.assert_close(out, softmax(rx, 1.0, causal), dtype, what=f"softmax_forward -inf rows causal={causal} L={L}")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("L", [97, 50304])
def test_forward_in_place(backend, dtype, threads, rng, L):
    x, rx = backend.put_and_values(randn(rng, 7, L), dtype)
    ops.softmax_forward(x, scale=0.5, out=x)
    backend.assert_close(x, softmax(rx, 0.5), dtype, what=f"softmax_forward in place L={L}")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
def test_backward(backend, dtype, threads, rng, shape, causal):
    scale = 0.37
    out, rout = backend.put_and_values(softmax(randn(rng, *shape), scale, causal), dtype)
    dout, rdout = backend.put_and_values(randn(rng, *shape), dtype)
    dinp = backend.poison(shape, dtype)
    r = ops.softmax_backward(dout, out, scale=scale, dinp=dinp)
    what = f"softmax_backward {shape} causal={causal} {dtype}"
    backend.assert_close(dinp, softmax_backward(rdout, rout, scale), dtype, np.sqrt(shape[-1]), what)
    backend.assert_equal(r, dinp, what + ": the returned tensor is dinp")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("L", [33, 50304])
def test_backward_in_place(backend, dtype, threads, rng, L):
    out, rout = backend.put_and_values(softmax(randn(rng, 5, L)), dtype)
    dout, rdout = backend.put_and_values(randn(rng, 5, L), dtype)
    ops.softmax_backward(dout, out, scale=2.0, dinp=dout)
    backend.assert_close(dout, softmax_backward(rdout, rout, 2.0), dtype, np.sqrt(L),
                         f"softmax_backward in place (dinp is dout) L={L}")


@on_backends()
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_backward_finite_difference(backend, rng, causal):
    shape, scale = (2, 4, 7), 0.7
    x = randn(rng, *shape)
    w = randn(rng, *shape)
    out = ops.softmax_forward(backend.put(x), scale=scale, causal=causal)
    got = backend.get(ops.softmax_backward(backend.put(w), out, scale=scale)).reshape(-1)
    coords = rng.choice(x.size, size=8, replace=False)
    fd = central_difference(lambda t: (softmax(t, scale, causal) * w).sum(), x, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] softmax causal={causal}: fd err {err}"


@on_backends(threads=True)
def test_deterministic_rerun(backend, threads, rng):
    x, dout = backend.put(randn(rng, 2, 37, 1001)), backend.put(randn(rng, 2, 37, 1001))
    runs = []
    for _ in range(2):
        out = ops.softmax_forward(x, scale=0.3, causal=True)
        runs.append((backend.get(out), backend.get(ops.softmax_backward(dout, out, scale=0.3))))
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
