"""CUDA embedding_forward/_backward vs NumPy float64: pos_offset, repeated ids, accumulation, determinism."""
import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host, poison
from reference import embedding, embedding_backward, f64
from tolerances import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

DTYPES = ["float32", "bfloat16"]
# (B, T, C, V, maxT, pos_offset)
CASES = [
    (1, 1, 1, 1, 1, 0),
    (1, 3, 17, 5, 7, 4),
    (2, 17, 97, 13, 40, 23),
    (3, 5, 33, 1003, 9, 0),
    (4, 67, 130, 50, 100, 33),
    (2, 97, 257, 7, 97, 0),
    (4, 256, 768, 5000, 300, 44),  # more positions than dwte buckets, 16-byte packs
]


def case_id(c):
    return "B{}-T{}-C{}-V{}-maxT{}-off{}".format(*c)


def make(rng, case):
    B, T, C, V, maxT, off = case
    idx = rng.integers(0, V, (B, T)).astype(np.int32)
    if idx.size > 2:
        idx.reshape(-1)[: idx.size // 3] = idx.reshape(-1)[0]  # many repeats of one token
    return idx, randn(rng, V, C), randn(rng, maxT, C)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward(rng, case, dtype):
    B, T, C, V, maxT, off = case
    idx, wte, wpe = make(rng, case)
    wte_d, wpe_d = dev(wte, dtype), dev(wpe, dtype)
    out = poison((B, T, C), dtype)
    ops.embedding_forward(dev(idx), wte_d, wpe_d, pos_offset=off, out=out)
    assert_close(host(out), embedding(idx, host(wte_d), host(wpe_d), off), backend="cuda", dtype=dtype,
                 what=f"cuda embedding_forward {dtype} {case_id(case)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_backward(rng, case, dtype):
    B, T, C, V, maxT, off = case
    idx, _, _ = make(rng, case)
    dout = dev(randn(rng, B, T, C), dtype)
    dwte, dwpe = dev(randn(rng, V, C)), dev(randn(rng, maxT, C))  # always accumulates
    prev_te, prev_pe = host(dwte), host(dwpe)
    ops.embedding_backward(dout, dev(idx), dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(host(dout), idx, V, maxT, off)
    what = f"cuda embedding_backward {dtype} {case_id(case)}"
    assert_close(host(dwte), prev_te + edwte, backend="cuda", scale=np.sqrt(B * T), what=what + " dwte")
    assert_close(host(dwpe), prev_pe + edwpe, backend="cuda", scale=np.sqrt(B), what=what + " dwpe")


def test_backward_accumulates_across_calls(rng):
    B, T, C, V, maxT, off = case = (2, 17, 97, 13, 40, 23)
    idx, _, _ = make(rng, case)
    d1, d2 = randn(rng, B, T, C), randn(rng, B, T, C)
    dwte, dwpe = gptx.Tensor.zeros([V, C], "float32", "cuda"), gptx.Tensor.zeros([maxT, C], "float32", "cuda")
    ops.embedding_backward(dev(d1), dev(idx), dwte, dwpe, pos_offset=off)
    ops.embedding_backward(dev(d2), dev(idx), dwte, dwpe, pos_offset=off)
    edwte, edwpe = embedding_backward(f64(d1) + d2, idx, V, maxT, off)
    assert_close(host(dwte), edwte, backend="cuda", scale=np.sqrt(2 * B * T), what="cuda embedding twice dwte")
    pe = host(dwpe)
    assert_close(pe, edwpe, backend="cuda", scale=np.sqrt(2 * B), what="cuda embedding twice dwpe")
    assert (pe[:off] == 0).all() and (pe[off + T:] == 0).all(), "positions outside the window were written"


def test_backward_deterministic_and_ordered(rng):
    # one token everywhere: its dwte row is a sum of B*T rows taken in (b, t) order, identical run to run and equal
    # to a float32 sequential sum in that order
    B, T, C, V = 8, 512, 64, 11
    idx = np.full((B, T), 3, np.int32)
    dout = randn(rng, B, T, C)
    runs = []
    for _ in range(2):
        dwte, dwpe = gptx.Tensor.zeros([V, C], "float32", "cuda"), gptx.Tensor.zeros([T, C], "float32", "cuda")
        ops.embedding_backward(dev(dout), dev(idx), dwte, dwpe)
        runs.append((host(dwte), host(dwpe)))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    seq = np.zeros(C, np.float32)
    for row in dout.reshape(-1, C):
        seq = (seq + row).astype(np.float32)
    np.testing.assert_array_equal(runs[0][0][3], seq.astype(np.float64))
