"""matmul_forward / matmul_backward / bias_backward vs NumPy float64: transposes, bias, batching, accumulate, grads."""
import itertools

import numpy as np
import pytest

from conftest import poisoned, randn
from gptx import ops
from reference import central_difference, f64, matmul
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

TRANS = list(itertools.product([False, True], repeat=2))
# (M, K, N); M <= 4 takes the small-row path, the last two are large enough to run on 2 threads, K = 1031 spans
# several K blocks of the packed kernel.
SHAPES = [(1, 1, 1), (3, 17, 1), (1, 97, 17), (17, 3, 97), (97, 17, 3), (3, 257, 300), (97, 1031, 17)]


def operands(rng, M, K, N, trans_a, trans_b, batch=(), shared_b=True):
    a = randn(rng, *batch, *((K, M) if trans_a else (M, K)))
    b = randn(rng, *(() if shared_b else batch), *((N, K) if trans_b else (K, N)))
    return a, b


def ref_grads(dout, a, b, trans_a, trans_b):
    """da, db (summed over the batch when b is 2-D and a is batched), dbias of out = op(a) @ op(b) + bias."""
    dout, a, b = f64(dout), f64(a), f64(b)
    A = np.swapaxes(a, -1, -2) if trans_a else a
    B = np.swapaxes(b, -1, -2) if trans_b else b
    dA = dout @ np.swapaxes(B, -1, -2)
    dB = np.swapaxes(A, -1, -2) @ dout
    if b.ndim == 2 and dB.ndim > 2:
        dB = dB.reshape(-1, *dB.shape[-2:]).sum(axis=0)
    da = np.swapaxes(dA, -1, -2) if trans_a else dA
    db = np.swapaxes(dB, -1, -2) if trans_b else dB
    return da, db, dout.reshape(-1, dout.shape[-1]).sum(axis=0)


def tag(trans_a, trans_b):
    return f"trans_a={trans_a} trans_b={trans_b}"


@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward(isa, threads, rng, shape, with_bias):
    M, K, N = shape
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b)
        bias = randn(rng, N) if with_bias else None
        out = poisoned((M, N))
        r = ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b, out=out)
        assert_close(out, matmul(a, b, bias, trans_a, trans_b), scale=np.sqrt(K),
                     what=f"matmul_forward {shape} {tag(trans_a, trans_b)} bias={with_bias}")
        np.testing.assert_array_equal(np.asarray(r), out)


@pytest.mark.parametrize("shape", [(3, 17, 5), (17, 97, 3), (97, 1031, 17)], ids=str)
def test_forward_accumulate(isa, threads, rng, shape):
    M, K, N = shape
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b = operands(rng, M, K, N, trans_a, trans_b)
        bias = randn(rng, N) if i % 2 else None
        out = randn(rng, M, N)
        expected = f64(out) + matmul(a, b, bias, trans_a, trans_b)
        ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b, out=out, accumulate=True)
        assert_close(out, expected, scale=np.sqrt(K), what=f"matmul_forward accumulate {shape} {tag(trans_a, trans_b)}")


@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_forward_batched(isa, threads, rng, shared_b):
    batch, M, K, N = (2, 3), 17, 33, 7
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b, batch, shared_b)
        bias = randn(rng, N)
        out = poisoned((*batch, M, N))
        ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b, out=out)
        assert_close(out, matmul(a, b, bias, trans_a, trans_b), scale=np.sqrt(K),
                     what=f"matmul_forward batched shared_b={shared_b} {tag(trans_a, trans_b)}")


def test_forward_allocates_output(isa, rng):
    a, b = randn(rng, 2, 5, 7), randn(rng, 7, 3)
    r = np.asarray(ops.matmul_forward(a, b))
    assert r.shape == (2, 5, 3) and r.dtype == np.float32
    assert_close(r, matmul(a, b), scale=np.sqrt(7), what="matmul_forward allocated out")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(isa, threads, rng, shape):
    M, K, N = shape
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b)
        dout = randn(rng, M, N)
        da, db, dbias = poisoned(a.shape), poisoned(b.shape), poisoned((N,))
        r = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db,
                                dbias=dbias)
        eda, edb, edbias = ref_grads(dout, a, b, trans_a, trans_b)
        what = f"matmul_backward {shape} {tag(trans_a, trans_b)}"
        assert_close(da, eda, scale=np.sqrt(N), what=what + " da")
        assert_close(db, edb, scale=np.sqrt(M), what=what + " db")
        assert_close(dbias, edbias, scale=np.sqrt(M), what=what + " dbias")
        for got, buf in zip(r, (da, db, dbias)):
            np.testing.assert_array_equal(np.asarray(got), buf)


@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_backward_batched(isa, threads, rng, shared_b):
    batch, M, K, N = (3, 2), 17, 9, 33
    rows = 6 * M
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b, batch, shared_b)
        dout = randn(rng, *batch, M, N)
        da, db, dbias = poisoned(a.shape), poisoned(b.shape), poisoned((N,))
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias)
        eda, edb, edbias = ref_grads(dout, a, b, trans_a, trans_b)
        what = f"matmul_backward batched shared_b={shared_b} {tag(trans_a, trans_b)}"
        assert_close(da, eda, scale=np.sqrt(N), what=what + " da")
        assert_close(db, edb, scale=np.sqrt(rows if shared_b else M), what=what + " db")
        assert_close(dbias, edbias, scale=np.sqrt(rows), what=what + " dbias")


@pytest.mark.parametrize("shape", [(3, 17, 5), (97, 1031, 17)], ids=str)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_backward_accumulate(isa, threads, rng, shape, shared_b):
    M, K, N = shape
    batch = (2,)
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b, batch, shared_b)
        dout = randn(rng, *batch, M, N)
        da, db, dbias = randn(rng, *a.shape), randn(rng, *b.shape), randn(rng, N)
        prev = [f64(x) for x in (da, db, dbias)]
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias,
                            accumulate=True)
        eda, edb, edbias = ref_grads(dout, a, b, trans_a, trans_b)
        what = f"matmul_backward accumulate {shape} shared_b={shared_b} {tag(trans_a, trans_b)}"
        assert_close(da, prev[0] + eda, scale=np.sqrt(N), what=what + " da")
        assert_close(db, prev[1] + edb, scale=np.sqrt(2 * M), what=what + " db")
        assert_close(dbias, prev[2] + edbias, scale=np.sqrt(2 * M), what=what + " dbias")


def test_backward_need_flags(isa, rng):
    a, b, dout = randn(rng, 5, 7), randn(rng, 7, 3), randn(rng, 5, 3)
    da, db, dbias = ops.matmul_backward(dout, a, b, need_da=True, need_db=False, need_dbias=False)
    assert db is None and dbias is None
    assert_close(np.asarray(da), ref_grads(dout, a, b, False, False)[0], scale=np.sqrt(3), what="da only")
    da, db, dbias = ops.matmul_backward(dout, a, b, need_da=False, need_db=False, need_dbias=True)
    assert da is None and db is None
    assert_close(np.asarray(dbias), f64(dout).sum(0), scale=np.sqrt(5), what="dbias only")


@pytest.mark.parametrize("shape", [(1, 3), (3, 17), (2, 97, 33), (131, 1003)], ids=str)
def test_bias_backward(isa, threads, rng, shape):
    dout = randn(rng, *shape)
    rows = int(np.prod(shape[:-1]))
    expected = f64(dout).reshape(-1, shape[-1]).sum(axis=0)
    dbias = poisoned((shape[-1],))
    ops.bias_backward(dout, dbias=dbias)
    assert_close(dbias, expected, scale=np.sqrt(rows), what=f"bias_backward {shape}")
    prev = randn(rng, shape[-1])
    dbias = prev.copy()
    ops.bias_backward(dout, dbias=dbias, accumulate=True)
    assert_close(dbias, f64(prev) + expected, scale=np.sqrt(rows), what=f"bias_backward accumulate {shape}")


@pytest.mark.parametrize("trans", TRANS, ids=lambda t: f"ta{int(t[0])}tb{int(t[1])}")
def test_backward_finite_difference(isa, rng, trans):
    trans_a, trans_b = trans
    batch, M, K, N = (2,), 3, 5, 4
    a, b = operands(rng, M, K, N, trans_a, trans_b, batch, shared_b=True)
    bias = randn(rng, N)
    w = randn(rng, *batch, M, N)  # loss = sum(w * out), so dout = w
    da, db, dbias = ops.matmul_backward(w, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True)
    losses = {
        "da": (a, lambda x: (matmul(x, b, bias, trans_a, trans_b) * w).sum()),
        "db": (b, lambda x: (matmul(a, x, bias, trans_a, trans_b) * w).sum()),
        "dbias": (bias, lambda x: (matmul(a, b, x, trans_a, trans_b) * w).sum()),
    }
    for name, got in (("da", da), ("db", db), ("dbias", dbias)):
        x, loss = losses[name]
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        coords = rng.choice(x.size, size=min(6, x.size), replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"{name} {tag(trans_a, trans_b)}: fd err {err}"


def test_deterministic_rerun(isa, threads, rng):
    M, K, N = 97, 1031, 17
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b)
        bias, dout = randn(rng, N), randn(rng, M, N)
        runs = []
        for _ in range(2):
            out = np.asarray(ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b)).copy()
            grads = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True)
            runs.append([out] + [np.asarray(g).copy() for g in grads])
        for x, y in zip(*runs):
            np.testing.assert_array_equal(x, y)


def test_reference_backend(reference_backend, rng):
    M, K, N = 17, 33, 9
    for trans_a, trans_b in TRANS:
        a, b = operands(rng, M, K, N, trans_a, trans_b, (2,), shared_b=True)
        bias, dout = randn(rng, N), randn(rng, 2, M, N)
        out = poisoned((2, M, N))
        ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b, out=out)
        assert_close(out, matmul(a, b, bias, trans_a, trans_b), scale=np.sqrt(K),
                     what=f"reference matmul_forward {tag(trans_a, trans_b)}")
        da, db, dbias = poisoned(a.shape), poisoned(b.shape), poisoned((N,))
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias)
        eda, edb, edbias = ref_grads(dout, a, b, trans_a, trans_b)
        what = f"reference matmul_backward {tag(trans_a, trans_b)}"
        assert_close(da, eda, scale=np.sqrt(N), what=what + " da")
        assert_close(db, edb, scale=np.sqrt(2 * M), what=what + " db")
        assert_close(dbias, edbias, scale=np.sqrt(2 * M), what=what + " dbias")
