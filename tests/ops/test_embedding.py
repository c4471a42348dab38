"""embedding_forward / embedding_backward vs NumPy float64: pos_offset, repeated ids, accumulation, determinism."""
import numpy as np
import pytest

import gptx
from conftest import poisoned, randn
from gptx import ops
from reference import central_difference, embedding, embedding_backward, f64
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

# (B, T, C, V, maxT, pos_offset); the last two are above the parallel threshold
CASES = [
    (1, 1, 1, 1, 1, 0),
    (1, 3, 17, 5, 7, 4),
    (2, 17, 97, 13, 40, 23),
    (3, 5, 33, 1003, 9, 0),
    (4, 67, 130, 50, 100, 33),
    (2, 97, 257, 7, 97, 0),
]


def case_id(c):
    return "B{}-T{}-C{}-V{}-maxT{}-off{}".format(*c)


def make(rng, case, repeats=True):
    B, T, C, V, maxT, off = case
    idx = rng.integers(0, V, (B, T)).astype(np.int32)
    if repeats and idx.size > 2:
        idx.reshape(-1)[: idx.size // 3] = idx.reshape(-1)[0]  # many repeats of one token
    return idx, randn(rng, V, C), randn(rng, maxT, C)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward(isa, threads, rng, case):
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    out = poisoned((B, T, C))
    r = ops.embedding_forward(idx, wte, wpe, pos_offset=off, out=out)
    assert_close(out, embedding(idx, wte, wpe, off), what=f"embedding_forward {case_id(case)}")
    np.testing.assert_array_equal(np.asarray(r), out)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward(isa, threads, rng, case):
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    dout = randn(rng, B, T, C)
    dwte, dwpe = randn(rng, V, C), randn(rng, maxT, C)  # always accumulates: pre-filled buffers
    prev_te, prev_pe = f64(dwte), f64(dwpe)
    ops.embedding_backward(dout, idx, dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(dout, idx, V, maxT, off)
    what = f"embedding_backward {case_id(case)}"
    # dwte sums up to B*T rows per token (the repeated token), dwpe B rows per position
    assert_close(dwte, prev_te + edwte, scale=np.sqrt(B * T), what=what + " dwte")
    assert_close(dwpe, prev_pe + edwpe, scale=np.sqrt(B), what=what + " dwpe")


def test_backward_accumulates_across_calls(isa, threads, rng):
    case = (2, 17, 97, 13, 40, 23)
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    d1, d2 = randn(rng, B, T, C), randn(rng, B, T, C)
    dwte, dwpe = np.zeros((V, C), np.float32), np.zeros((maxT, C), np.float32)
    ops.embedding_backward(d1, idx, dwte, dwpe, pos_offset=off)
    ops.embedding_backward(d2, idx, dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(f64(d1) + d2, idx, V, maxT, off)
    assert_close(dwte, edwte, scale=np.sqrt(2 * B * T), what="embedding_backward twice dwte")
    assert_close(dwpe, edwpe, scale=np.sqrt(2 * B), what="embedding_backward twice dwpe")
    assert (dwpe[:off] == 0).all() and (dwpe[off + T:] == 0).all(), "positions outside the window were written"


def test_backward_finite_difference(isa, rng):
    case = (2, 3, 5, 4, 6, 2)
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    w = randn(rng, B, T, C)  # loss = sum(w * out)
    dwte, dwpe = np.zeros((V, C), np.float32), np.zeros((maxT, C), np.float32)
    ops.embedding_backward(w, idx, dwte, dwpe, pos_offset=off)
    for name, got, x, loss in (
        ("dwte", dwte, wte, lambda t: (embedding(idx, t, wpe, off) * w).sum()),
        ("dwpe", dwpe, wpe, lambda t: (embedding(idx, wte, t, off) * w).sum()),
    ):
        got = f64(got).reshape(-1)
        coords = rng.choice(x.size, size=8, replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"embedding {name}: fd err {err}"


def emb_backward(dout, idx, V, maxT, off):
    dwte, dwpe = np.zeros((V, dout.shape[-1]), np.float32), np.zeros((maxT, dout.shape[-1]), np.float32)
    ops.embedding_backward(dout, idx, dwte, dwpe, pos_offset=off)
    return dwte, dwpe


@pytest.mark.parametrize("case", [CASES[4], CASES[5]], ids=case_id)
def test_backward_thread_count_invariant(isa, rng, case):
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    dout = randn(rng, B, T, C)
    before = gptx.get_num_threads()
    try:
        gptx.set_num_threads(1)
        one = emb_backward(dout, idx, V, maxT, off)
        gptx.set_num_threads(2)
        two = emb_backward(dout, idx, V, maxT, off)
    finally:
        gptx.set_num_threads(before)
    for name, x1, x2 in zip(("dwte", "dwpe"), one, two):
        np.testing.assert_array_equal(x1, x2, err_msg=f"embedding_backward {name}: 1 vs 2 threads")


def test_deterministic_rerun(isa, threads, rng):
    case = CASES[4]
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    dout = randn(rng, B, T, C)
    runs = [[np.asarray(ops.embedding_forward(idx, wte, wpe, pos_offset=off)).copy(),
             *emb_backward(dout, idx, V, maxT, off)] for _ in range(2)]
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    case = (2, 17, 37, 11, 30, 5)
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    out = poisoned((B, T, C))
    ops.embedding_forward(idx, wte, wpe, pos_offset=off, out=out)
    assert_close(out, embedding(idx, wte, wpe, off), what="reference embedding_forward")
    dout = randn(rng, B, T, C)
    dwte, dwpe = randn(rng, V, C), randn(rng, maxT, C)
    expected = [f64(dwte), f64(dwpe)]
    ops.embedding_backward(dout, idx, dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(dout, idx, V, maxT, off)
    assert_close(dwte, expected[0] + edwte, scale=np.sqrt(B * T), what="reference embedding_backward dwte")
    assert_close(dwpe, expected[1] + edwpe, scale=np.sqrt(B), what="reference embedding_backward dwpe")
