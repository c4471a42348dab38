"""CUDA cross_entropy_forward/_backward vs NumPy float64: padded V, ignore_index, large logits, in place, accumulate."""
import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host, poison
from reference import cross_entropy, cross_entropy_backward, f64
from tolerances import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

DTYPES = ["float32", "bfloat16"]
CASES = [((1,), 1, 1), ((3,), 17, 17), ((2, 5), 101, 128), ((7,), 97, 97), ((2, 3), 1003, 1024),
         ((3,), 50257, 50304), ((2,), 50257, 50257)]


def case_id(c):
    return f"{c[0]}-V{c[1]}-Vp{c[2]}"


def make(rng, rows, V, Vp, ignore_index=-100, offset=0.0):
    logits = (randn(rng, *rows, Vp, scale=3.0) + np.float32(offset)).astype(np.float32)
    logits[..., V:] = rng.standard_normal(logits[..., V:].shape) * 50.0
    targets = rng.integers(0, V, rows).astype(np.int32)
    if targets.size > 1:
        targets.reshape(-1)[1] = ignore_index
    return logits, targets


def check(rng, rows, V, Vp, dtype, ignore_index=-100, offset=0.0, in_place=False, accumulate=False):
    what = f"cuda cross_entropy {dtype} {rows} V={V} Vp={Vp} in_place={in_place} accumulate={accumulate}"
    logits_np, targets = make(rng, rows, V, Vp, ignore_index, offset)
    logits = dev(logits_np, dtype)
    lg = host(logits)
    pass_V = 0 if V == Vp else V
    losses, lse = poison(rows), poison(rows)
    ops.cross_entropy_forward(logits, dev(targets), V=pass_V, ignore_index=ignore_index, losses=losses, lse=lse)
    elosses, else_ = cross_entropy(lg, targets, V, ignore_index)
    s = float(np.sqrt(V) + np.abs(lg[..., :V]).max())
    got_losses = host(losses)
    assert_close(got_losses, elosses, backend="cuda", scale=s, what=what + " losses")
    assert_close(host(lse), else_, backend="cuda", scale=s, what=what + " lse")
    assert (got_losses[targets == ignore_index] == 0).all(), what + ": ignored rows must have loss 0"

    dl_np = randn(rng, *rows)
    expected = cross_entropy_backward(lg, targets, dl_np, V, ignore_index)
    if in_place:
        dlogits = logits
        if accumulate:
            expected = expected + lg
    elif accumulate:
        dlogits = dev(randn(rng, *rows, Vp), dtype)
        expected = expected + host(dlogits)
    else:
        dlogits = poison((*rows, Vp), dtype)
    ops.cross_entropy_backward(logits, lse, dev(targets), dev(dl_np), V=pass_V, ignore_index=ignore_index,
                               dlogits=dlogits, accumulate=accumulate)
    got = host(dlogits)
    sb = s * np.abs(dl_np).max() + (np.abs(expected).max() if accumulate else 0.0)
    assert_close(got, expected, backend="cuda", dtype=dtype, scale=sb, what=what + " dlogits")
    if not accumulate:
        assert (got[..., V:] == 0).all(), what + ": padding columns must get gradient 0"
        assert (got[targets == ignore_index] == 0).all(), what + ": ignored rows must get gradient 0"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward(rng, case, dtype):
    check(rng, *case, dtype)


@pytest.mark.parametrize("ignore_index", [-1, 5])
def test_custom_ignore_index(rng, ignore_index):
    check(rng, (4, 3), 101, 128, "float32", ignore_index=ignore_index)


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_large_logits(rng, offset):
    check(rng, (5,), 101, 128, "float32", offset=offset)
    check(rng, (2,), 1003, 1024, "float32", offset=offset)


def test_large_logit_spread(rng):
    logits, targets = make(rng, (4,), 37, 40)
    logits[:, 3] = 1e4
    targets[:] = [3, 0, 3, -100]
    losses, lse = ops.cross_entropy_forward(dev(logits), dev(targets), V=37)
    losses, lse_h = host(losses), host(lse)
    assert np.isfinite(losses).all() and np.isfinite(lse_h).all()
    elosses, _ = cross_entropy(logits, targets, 37)
    s = float(np.sqrt(37) + 1e4)
    assert_close(losses, elosses, backend="cuda", scale=s, what="cuda cross_entropy spread losses")
    dl = ops.cross_entropy_backward(dev(logits), lse, dev(targets), dev(np.ones(4, np.float32)), V=37)
    assert_close(host(dl), cross_entropy_backward(logits, targets, np.ones(4), 37), backend="cuda", scale=s,
                 what="cuda cross_entropy spread dlogits")


def test_all_minus_inf_row_but_one(rng):
    # -inf logits contribute nothing (no NaN from -inf - -inf)
    logits, targets = make(rng, (3,), 67, 72)
    logits[0, :] = -np.inf
    logits[0, 5] = 2.0
    targets[:] = [5, 1, 2]
    losses, lse = ops.cross_entropy_forward(dev(logits), dev(targets), V=67)
    got = host(losses)
    assert np.isfinite(got).all()
    assert abs(got[0]) < 1e-6 and abs(host(lse)[0] - 2.0) < 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[5]], ids=case_id)
def test_backward_in_place(rng, case, dtype):
    check(rng, *case, dtype, in_place=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[5]], ids=case_id)
def test_backward_accumulate(rng, case, dtype):
    check(rng, *case, dtype, accumulate=True)


def test_many_rows(rng):
    check(rng, (4096,), 1003, 1024, "bfloat16")


def test_deterministic_rerun(rng):
    logits, targets = make(rng, (37,), 50257, 50304)
    lg, tg, dls = dev(logits, "bfloat16"), dev(targets), dev(randn(rng, 37))
    runs = []
    for _ in range(2):
        losses, lse = ops.cross_entropy_forward(lg, tg, V=50257)
        dl = ops.cross_entropy_backward(lg, lse, tg, dls, V=50257)
        runs.append([host(t) for t in (losses, lse, dl)])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
