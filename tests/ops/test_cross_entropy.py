"""cross_entropy_forward / cross_entropy_backward on every backend vs NumPy float64: padded vocabulary, ignore_index,
large logits, -inf logits, in place, accumulate, determinism, gradients by finite differences. Logits and dlogits are
float32 or (CUDA) bfloat16; losses and lse are float32."""
import numpy as np
import pytest

from backends import on_backends
from conftest import randn
from gptx import ops
from reference import central_difference, cross_entropy, cross_entropy_backward, f64
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# (row shape, V, Vp); V == Vp is the unpadded case. 50257/50304 is GPT-2's vocabulary padded to a multiple of 64.
CASES = [((1,), 1, 1), ((3,), 17, 17), ((3, 4), 101, 128), ((2, 5), 101, 128), ((7,), 97, 97), ((2, 3), 1003, 1024),
         ((3,), 50257, 50304), ((2,), 50257, 50257)]
IN_PLACE = [((3,), 33, 33), ((2, 5), 101, 128), ((2, 3), 1003, 1024), ((3,), 50257, 50304)]
ACCUMULATE = [((3,), 17, 17), ((2, 3), 1003, 1024), ((3,), 50257, 50304)]


def case_id(c):
    return f"{c[0]}-V{c[1]}-Vp{c[2]}"


def make(rng, rows, V, Vp, ignore_index=-100, offset=0.0):
    logits = (randn(rng, *rows, Vp, scale=3.0) + np.float32(offset)).astype(np.float32)
    logits[..., V:] = rng.standard_normal(logits[..., V:].shape) * 50.0  # padding junk must not leak in
    targets = rng.integers(0, V, rows).astype(np.int32)
    if targets.size > 1:
        targets.reshape(-1)[1] = ignore_index
    return logits, targets


def tol(logits, V):
    """lse sums V exponentials, then cancels against logits of magnitude |logits|."""
    return float(np.sqrt(V) + np.abs(f64(logits)[..., :V]).max())


def check(backend, rng, rows, V, Vp, dtype="float32", ignore_index=-100, offset=0.0, in_place=False,
          accumulate=False):
    what = f"cross_entropy {rows} V={V} Vp={Vp} {dtype} in_place={in_place} accumulate={accumulate}"
    logits, targets = make(rng, rows, V, Vp, ignore_index, offset)
    logits, lg = backend.put_and_values(logits, dtype)
    tg = backend.put(targets)
    pass_V = 0 if V == Vp else V
    losses, lse = backend.poison(rows), backend.poison(rows)
    r = ops.cross_entropy_forward(logits, tg, V=pass_V, ignore_index=ignore_index, losses=losses, lse=lse)
    elosses, else_ = cross_entropy(lg, targets, V, ignore_index)
    s = tol(lg, V)
    backend.assert_close(losses, elosses, scale=s, what=what + " losses")
    backend.assert_close(lse, else_, scale=s, what=what + " lse")
    backend.assert_equal(r[0], losses, what + ": the returned losses are the buffer")
    backend.assert_equal(r[1], lse, what + ": the returned lse is the buffer")
    assert (backend.get(losses)[targets == ignore_index] == 0).all(), what + ": ignored rows must have loss 0"

    dl = randn(rng, *rows)
    expected = cross_entropy_backward(lg, targets, dl, V, ignore_index)
    if in_place:
        dlogits = logits
        if accumulate:
            expected = expected + lg
    elif accumulate:
        dlogits, prev = backend.put_and_values(randn(rng, *rows, Vp), dtype)
        expected = expected + prev
    else:
        dlogits = backend.poison((*rows, Vp), dtype)
    ops.cross_entropy_backward(logits, lse, tg, backend.put(dl), V=pass_V, ignore_index=ignore_index,
                               dlogits=dlogits, accumulate=accumulate)
    sb = s * np.abs(dl).max() + (np.abs(expected).max() if accumulate else 0.0)
    backend.assert_close(dlogits, expected, dtype, sb, what + " dlogits")
    if not accumulate:
        got = backend.get(dlogits)
        assert (got[..., V:] == 0).all(), what + ": padding columns must get gradient 0"
        assert (got[targets == ignore_index] == 0).all(), what + ": ignored rows must get gradient 0"


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward(backend, dtype, threads, rng, case):
    check(backend, rng, *case, dtype)


@on_backends(threads=True)
@pytest.mark.parametrize("ignore_index", [-1, 5])
def test_custom_ignore_index(backend, threads, rng, ignore_index):
    check(backend, rng, (4, 3), 101, 128, ignore_index=ignore_index)


@on_backends(threads=True)
@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_large_logits(backend, threads, rng, offset):
    check(backend, rng, (5,), 101, 128, offset=offset)
    check(backend, rng, (2,), 1003, 1024, offset=offset)


@on_backends(threads=True)
def test_large_logit_spread(backend, threads, rng):
    # one logit 1e4 above the rest: the loss is ~0 for that target and ~1e4 for the others
    logits, targets = make(rng, (4,), 37, 40)
    logits[:, 3] = 1e4
    targets[:] = [3, 0, 3, -100]
    losses, lse = ops.cross_entropy_forward(backend.put(logits), backend.put(targets), V=37)
    assert np.isfinite(backend.get(losses)).all() and np.isfinite(backend.get(lse)).all()
    elosses, _ = cross_entropy(logits, targets, 37)
    backend.assert_close(losses, elosses, scale=tol(logits, 37), what="cross_entropy spread losses")
    dl = ops.cross_entropy_backward(backend.put(logits), lse, backend.put(targets), backend.put(np.ones(4)), V=37)
    backend.assert_close(dl, cross_entropy_backward(logits, targets, np.ones(4), 37), scale=tol(logits, 37),
                         what="cross_entropy spread dlogits")


@on_backends(threads=True)
def test_all_minus_inf_row_but_one(backend, threads, rng):
    # -inf logits contribute nothing (no NaN from -inf - -inf): row 0 has loss 0 and lse 2 exactly
    logits, targets = make(rng, (3,), 67, 72)
    logits[0, :] = -np.inf
    logits[0, 5] = 2.0
    targets[:] = [5, 1, 2]
    losses, lse = ops.cross_entropy_forward(backend.put(logits), backend.put(targets), V=67)
    elosses, else_ = cross_entropy(logits, targets, 67)
    s = tol(logits[1:], 67)
    backend.assert_close(losses, elosses, scale=s, what="cross_entropy -inf row losses")
    backend.assert_close(lse, else_, scale=s, what="cross_entropy -inf row lse")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("case", IN_PLACE, ids=case_id)
def test_backward_in_place(backend, dtype, threads, rng, case):
    check(backend, rng, *case, dtype, in_place=True)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("case", ACCUMULATE, ids=case_id)
def test_backward_accumulate(backend, dtype, threads, rng, case):
    check(backend, rng, *case, dtype, accumulate=True)


@pytest.mark.slow
@on_backends(dtypes=DTYPES, threads=True)
def test_many_rows(backend, dtype, threads, rng):
    check(backend, rng, (4096,), 1003, 1024, dtype)


@on_backends()
def test_backward_finite_difference(backend, rng):
    rows, V, Vp = (2, 3), 7, 9
    logits, targets = make(rng, rows, V, Vp)
    w = randn(rng, *rows)  # loss = sum(w * losses)
    lg, tg = backend.put(logits), backend.put(targets)
    _, lse = ops.cross_entropy_forward(lg, tg, V=V)
    got = backend.get(ops.cross_entropy_backward(lg, lse, tg, backend.put(w), V=V)).reshape(-1)
    coords = rng.choice(logits.size, size=12, replace=False)
    fd = central_difference(lambda t: (cross_entropy(t, targets, V)[0] * w).sum(), logits, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] cross_entropy: fd err {err}"


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("V,Vp", [(1003, 1024), (50257, 50304)], ids=str)
def test_deterministic_rerun(backend, dtype, threads, rng, V, Vp):
    logits, targets = make(rng, (37,), V, Vp)
    lg, tg, dls = backend.put(logits, dtype), backend.put(targets), backend.put(randn(rng, 37))
    runs = []
    for _ in range(2):
        losses, lse = ops.cross_entropy_forward(lg, tg, V=V)
        dl = ops.cross_entropy_backward(lg, lse, tg, dls, V=V)
        runs.append([backend.get(t) for t in (losses, lse, dl)])
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
