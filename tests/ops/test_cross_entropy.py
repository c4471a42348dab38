"""cross_entropy_forward/_backward vs NumPy float64: padded vocab, ignore_index, large logits, in place, accumulate."""
import numpy as np
import pytest

from conftest import poisoned, randn
from gptx import ops
from reference import central_difference, cross_entropy, cross_entropy_backward, f64
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

# (row shape, V, Vp); V == Vp is the unpadded case. 50257/50304 is GPT-2's vocabulary padded to a multiple of 64.
CASES = [((1,), 1, 1), ((3,), 17, 17), ((2, 5), 101, 128), ((7,), 97, 97), ((2, 3), 1003, 1024), ((3,), 50257, 50304)]


def case_id(c):
    return f"{c[0]}-V{c[1]}-Vp{c[2]}"


def make(rng, rows, V, Vp, ignore_index=-100, logit_scale=3.0, offset=0.0):
    logits = (randn(rng, *rows, Vp, scale=logit_scale) + np.float32(offset)).astype(np.float32)
    logits[..., V:] = rng.standard_normal(logits[..., V:].shape) * 50.0  # padding junk must not leak in
    targets = rng.integers(0, V, rows).astype(np.int32)
    if targets.size > 1:
        targets.reshape(-1)[1] = ignore_index
    return logits, targets


def tol(logits, V):
    """lse sums V exponentials, then cancels against logits of magnitude |logits|."""
    return float(np.sqrt(V) + np.abs(f64(logits)[..., :V]).max())


def check(rng, rows, V, Vp, ignore_index=-100, offset=0.0, in_place=False, accumulate=False, what=""):
    logits, targets = make(rng, rows, V, Vp, ignore_index, offset=offset)
    pass_V = 0 if V == Vp else V
    losses, lse = poisoned(rows), poisoned(rows)
    r = ops.cross_entropy_forward(logits, targets, V=pass_V, ignore_index=ignore_index, losses=losses, lse=lse)
    elosses, else_ = cross_entropy(logits, targets, V, ignore_index)
    s = tol(logits, V)
    assert_close(losses, elosses, scale=s, what=what + " losses")
    assert_close(lse, else_, scale=s, what=what + " lse")
    np.testing.assert_array_equal(np.asarray(r[0]), losses)
    np.testing.assert_array_equal(np.asarray(r[1]), lse)
    assert (losses[targets == ignore_index] == 0).all(), what + ": ignored rows must have loss 0"

    dlosses = randn(rng, *rows)
    expected = cross_entropy_backward(logits, targets, dlosses, V, ignore_index)
    if in_place:
        dlogits = logits
    elif accumulate:
        dlogits = randn(rng, *rows, Vp)
        expected = expected + f64(dlogits)
    else:
        dlogits = poisoned((*rows, Vp))
    ops.cross_entropy_backward(logits, lse, targets, dlosses, V=pass_V, ignore_index=ignore_index, dlogits=dlogits,
                               accumulate=accumulate)
    assert_close(dlogits, expected, scale=s * np.abs(dlosses).max(), what=what + " dlogits")
    if not accumulate:
        assert (dlogits[..., V:] == 0).all(), what + ": padding columns must get gradient 0"
        assert (dlogits[targets == ignore_index] == 0).all(), what + ": ignored rows must get gradient 0"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward(isa, threads, rng, case):
    check(rng, *case, what=f"cross_entropy {case_id(case)}")


@pytest.mark.parametrize("ignore_index", [-1, 5])
def test_custom_ignore_index(isa, threads, rng, ignore_index):
    check(rng, (4, 3), 101, 128, ignore_index=ignore_index, what=f"cross_entropy ignore_index={ignore_index}")


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_large_logits(isa, threads, rng, offset):
    check(rng, (5,), 101, 128, offset=offset, what=f"cross_entropy logits around {offset:g}")
    check(rng, (2,), 1003, 1024, offset=offset, what=f"cross_entropy logits around {offset:g}")


def test_large_logit_spread(isa, threads, rng):
    # one logit 1e4 above the rest: the loss is ~0 for that target and ~1e4 for the others
    logits, targets = make(rng, (4,), 37, 40)
    logits[:, 3] = 1e4
    targets[:] = [3, 0, 3, -100]
    losses, lse = (np.asarray(t) for t in ops.cross_entropy_forward(logits, targets, V=37))
    elosses, else_ = cross_entropy(logits, targets, 37)
    assert np.isfinite(losses).all() and np.isfinite(lse).all()
    assert_close(losses, elosses, scale=tol(logits, 37), what="cross_entropy spread losses")
    dl = np.asarray(ops.cross_entropy_backward(logits, lse, targets, np.ones(4, np.float32), V=37))
    assert_close(dl, cross_entropy_backward(logits, targets, np.ones(4), 37), scale=tol(logits, 37),
                 what="cross_entropy spread dlogits")


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[5]], ids=case_id)
def test_backward_in_place(isa, threads, rng, case):
    check(rng, *case, in_place=True, what=f"cross_entropy in place {case_id(case)}")


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=case_id)
def test_backward_accumulate(isa, threads, rng, case):
    check(rng, *case, accumulate=True, what=f"cross_entropy accumulate {case_id(case)}")


def test_backward_finite_difference(isa, rng):
    rows, V, Vp = (2, 3), 7, 9
    logits, targets = make(rng, rows, V, Vp)
    w = randn(rng, *rows)  # loss = sum(w * losses)
    _, lse = ops.cross_entropy_forward(logits, targets, V=V)
    got = f64(ops.cross_entropy_backward(logits, lse, targets, w, V=V)).reshape(-1)
    coords = rng.choice(logits.size, size=12, replace=False)
    fd = central_difference(lambda t: (cross_entropy(t, targets, V)[0] * w).sum(), logits, coords)
    err = np.abs(got[coords] - fd).max()
    assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"cross_entropy: fd err {err}"


def test_deterministic_rerun(isa, threads, rng):
    logits, targets = make(rng, (37,), 1003, 1024)
    dlosses = randn(rng, 37)
    runs = []
    for _ in range(2):
        losses, lse = ops.cross_entropy_forward(logits, targets, V=1003)
        dl = ops.cross_entropy_backward(logits, lse, targets, dlosses, V=1003)
        runs.append([np.asarray(t).copy() for t in (losses, lse, dl)])
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    check(rng, (3, 4), 101, 128, what="reference cross_entropy")
    check(rng, (3,), 33, 33, in_place=True, what="reference cross_entropy in place")
