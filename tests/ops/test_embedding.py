"""embedding_forward / embedding_backward on every backend vs NumPy float64: pos_offset, repeated ids, accumulation,
summation order, determinism, gradients by finite differences. The backward always accumulates into dwte / dwpe."""
import numpy as np
import pytest

import gptx
from backends import large, on_backends
from conftest import randn
from gptx import ops
from reference import central_difference, embedding, embedding_backward, f64
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# (B, T, C, V, maxT, pos_offset); the last three are above the CPU's parallel threshold, the very last has more
# positions than dwte buckets and C in 16-byte packs for CUDA
CASES = [
    (1, 1, 1, 1, 1, 0),
    (1, 3, 17, 5, 7, 4),
    (2, 17, 97, 13, 40, 23),
    (2, 17, 37, 11, 30, 5),
    (3, 5, 33, 1003, 9, 0),
    (4, 67, 130, 50, 100, 33),
    (2, 97, 257, 7, 97, 0),
    large((4, 256, 768, 5000, 300, 44)),
]


def case_id(c):
    return "B{}-T{}-C{}-V{}-maxT{}-off{}".format(*c)


def make(rng, case):
    B, T, C, V, maxT, off = case
    idx = rng.integers(0, V, (B, T)).astype(np.int32)
    if idx.size > 2:
        idx.reshape(-1)[: idx.size // 3] = idx.reshape(-1)[0]  # many repeats of one token
    return idx, randn(rng, V, C), randn(rng, maxT, C)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward(backend, dtype, threads, rng, case):
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    (wte, rwte), (wpe, rwpe) = backend.put_and_values(wte, dtype), backend.put_and_values(wpe, dtype)
    out = backend.poison((B, T, C), dtype)
    r = ops.embedding_forward(backend.put(idx), wte, wpe, pos_offset=off, out=out)
    backend.assert_close(out, embedding(idx, rwte, rwpe, off), dtype, what=f"embedding_forward {case_id(case)} {dtype}")
    backend.assert_equal(r, out, "the returned tensor is out")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward(backend, dtype, threads, rng, case):
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    dout, rdout = backend.put_and_values(randn(rng, B, T, C), dtype)
    (dwte, prev_te), (dwpe, prev_pe) = (backend.put_and_values(randn(rng, *s)) for s in ((V, C), (maxT, C)))
    ops.embedding_backward(dout, backend.put(idx), dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(rdout, idx, V, maxT, off)
    what = f"embedding_backward {case_id(case)} {dtype}"
    # dwte sums up to B*T rows per token (the repeated token), dwpe B rows per position; both are float32
    backend.assert_close(dwte, prev_te + edwte, scale=np.sqrt(B * T), what=what + " dwte")
    backend.assert_close(dwpe, prev_pe + edwpe, scale=np.sqrt(B), what=what + " dwpe")


def emb_backward(backend, dout, idx, V, maxT, off=0):
    dwte, dwpe = backend.full((V, dout.shape[-1]), 0.0), backend.full((maxT, dout.shape[-1]), 0.0)
    ops.embedding_backward(backend.put(dout), backend.put(idx), dwte, dwpe, pos_offset=off)
    return dwte, dwpe


@on_backends(threads=True)
def test_backward_accumulates_across_calls(backend, threads, rng):
    B, T, C, V, maxT, off = case = (2, 17, 97, 13, 40, 23)
    idx, _, _ = make(rng, case)
    d1, d2 = randn(rng, B, T, C), randn(rng, B, T, C)
    dwte, dwpe = emb_backward(backend, d1, idx, V, maxT, off)
    ops.embedding_backward(backend.put(d2), backend.put(idx), dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(f64(d1) + d2, idx, V, maxT, off)
    backend.assert_close(dwte, edwte, scale=np.sqrt(2 * B * T), what="embedding_backward twice dwte")
    backend.assert_close(dwpe, edwpe, scale=np.sqrt(2 * B), what="embedding_backward twice dwpe")
    pe = backend.get(dwpe)
    assert (pe[:off] == 0).all() and (pe[off + T:] == 0).all(), "positions outside the window were written"


@on_backends()
def test_backward_finite_difference(backend, rng):
    case = (2, 3, 5, 4, 6, 2)
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    w = randn(rng, B, T, C)  # loss = sum(w * out)
    grads = emb_backward(backend, w, idx, V, maxT, off)
    for name, got, x, loss in (
        ("dwte", grads[0], wte, lambda t: (embedding(idx, t, wpe, off) * w).sum()),
        ("dwpe", grads[1], wpe, lambda t: (embedding(idx, wte, t, off) * w).sum()),
    ):
        got = backend.get(got).reshape(-1)
        coords = rng.choice(x.size, size=8, replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] embedding {name}: fd err {err}"


@on_backends(kinds=("cpu",))
@pytest.mark.parametrize("case", [CASES[5], CASES[6]], ids=case_id)
def test_backward_thread_count_invariant(backend, rng, case):
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    dout = randn(rng, B, T, C)
    before = gptx.get_num_threads()
    try:
        gptx.set_num_threads(1)
        one = emb_backward(backend, dout, idx, V, maxT, off)
        gptx.set_num_threads(2)
        two = emb_backward(backend, dout, idx, V, maxT, off)
    finally:
        gptx.set_num_threads(before)
    for name, x1, x2 in zip(("dwte", "dwpe"), one, two):
        np.testing.assert_array_equal(x1, x2, err_msg=f"[{backend}] embedding_backward {name}: 1 vs 2 threads")


@on_backends(threads=True)
def test_deterministic_rerun(backend, threads, rng):
    case = CASES[5]
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    dout = randn(rng, B, T, C)
    runs = [[backend.get(ops.embedding_forward(*map(backend.put, (idx, wte, wpe)), pos_offset=off)),
             *map(backend.get, emb_backward(backend, dout, idx, V, maxT, off))] for _ in range(2)]
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)


# The scalar reference holds each sum in double (it is the spec of the values, not of the float32 rounding order).
@on_backends(threads=True, exclude=("cpu-reference",))
def test_backward_deterministic_and_ordered(backend, threads, rng):
    # one token everywhere: its dwte row is a sum of B*T rows taken in (b, t) order, identical run to run and equal
    # to a float32 sequential sum in that order
    B, T, C, V = 8, 512, 64, 11
    idx = np.full((B, T), 3, np.int32)
    dout = randn(rng, B, T, C)
    runs = [[backend.get(g) for g in emb_backward(backend, dout, idx, V, T)] for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    seq = np.zeros(C, np.float32)
    for row in dout.reshape(-1, C):
        seq = (seq + row).astype(np.float32)
    np.testing.assert_array_equal(runs[0][0][3], seq.astype(np.float64))
