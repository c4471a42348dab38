"""matmul_forward / matmul_backward / bias_backward on every backend vs NumPy float64: every transpose form, bias,
batched and shared-b operands, accumulate, odd sizes, K = 0, gradients by finite differences.

On CUDA float32 runs FMA kernels (no TF32) and bfloat16 / float16 the tensor cores, with float32 or 16-bit outputs.
16-bit inputs are rounded first and the reference is computed from the rounded values, so the tolerance only covers
the kernel's own rounding.
"""
import itertools

import numpy as np
import pytest

from backends import FLOAT_DTYPES, large, on_backends
from conftest import randn
from gptx import ops
from reference import central_difference, f64, matmul, matmul_backward
from tolerances import FINITE_DIFFERENCE_RTOL

TRANS = list(itertools.product([False, True], repeat=2))
# (M, K, N): ones and odd sizes (odd leading dimensions take CUDA's scalar-load path; M <= 4 the CPU's small-row
# path); (3, 257, 300) and (97, 1031, 17) are large enough for 2 CPU threads and K = 1031 spans several K blocks of
# the packed CPU kernel; M = 16 is decode-like; the last two fill CUDA's 128x128 tensor-core tiles with ragged edges.
SHAPES = [(1, 1, 1), (3, 17, 1), (1, 97, 17), (17, 3, 97), (97, 17, 3), (3, 257, 300), (97, 1031, 17),
          (16, 768, 129), (129, 64, 136)]
BIG = (1031, 72, 2100)  # >= 132 tensor-core tiles: every SM of a large GPU busy, ragged in M and N
# (batch, M, K, N) of the batched forms
BATCHED = [((2, 3), 17, 33, 7), ((3, 2), 17, 9, 33), ((2,), 17, 33, 9)]


def operands(backend, rng, M, K, N, trans_a, trans_b, dtype="float32", batch=(), shared_b=True):
    """(a, b) on the backend in dtype and their rounded values."""
    a = randn(rng, *batch, *((K, M) if trans_a else (M, K)))
    b = randn(rng, *(() if shared_b else batch), *((N, K) if trans_b else (K, N)))
    (a, ra), (b, rb) = backend.put_and_values(a, dtype), backend.put_and_values(b, dtype)
    return a, b, ra, rb


def out_dtype_for(dtype, i):
    """16-bit inputs write a float32 output for half of the transpose forms and their own dtype for the others."""
    return "float32" if dtype == "float32" or i % 2 == 0 else dtype


def tag(trans_a, trans_b):
    return f"trans_a={trans_a} trans_b={trans_b}"


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("shape", SHAPES + [large(BIG)], ids=str)
def test_forward(backend, dtype, threads, rng, shape, with_bias):
    M, K, N = shape
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype)
        bias = randn(rng, N) if with_bias else None
        out_dtype = "float32" if dtype == "float32" or i < 2 else dtype
        out = backend.poison((M, N), out_dtype)
        r = ops.matmul_forward(a, b, backend.put(bias) if with_bias else None, trans_a=trans_a, trans_b=trans_b,
                               out=out)
        what = f"matmul_forward {shape} {dtype}->{out_dtype} {tag(trans_a, trans_b)} bias={with_bias}"
        backend.assert_close(out, matmul(ra, rb, bias, trans_a, trans_b), dtype, np.sqrt(K), what)
        backend.assert_equal(r, out, what + ": the returned tensor is out")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(3, 17, 5), (17, 97, 3), (97, 1031, 17), (130, 64, 136)], ids=str)
def test_forward_accumulate(backend, dtype, threads, rng, shape):
    M, K, N = shape
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype)
        bias = randn(rng, N) if i % 2 else None
        out, prev = backend.put_and_values(randn(rng, M, N), out_dtype_for(dtype, i))
        ops.matmul_forward(a, b, backend.put(bias) if bias is not None else None, trans_a=trans_a,
                           trans_b=trans_b, out=out, accumulate=True)
        backend.assert_close(out, prev + matmul(ra, rb, bias, trans_a, trans_b), dtype, np.sqrt(K),
                             f"matmul_forward accumulate {shape} {dtype} {tag(trans_a, trans_b)}")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
@pytest.mark.parametrize("batch,M,K,N", BATCHED, ids=str)
def test_forward_batched(backend, dtype, threads, rng, batch, M, K, N, shared_b):
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        bias = randn(rng, N)
        out = backend.poison((*batch, M, N), out_dtype_for(dtype, i))
        ops.matmul_forward(a, b, backend.put(bias), trans_a=trans_a, trans_b=trans_b, out=out)
        backend.assert_close(out, matmul(ra, rb, bias, trans_a, trans_b), dtype, np.sqrt(K),
                             f"matmul_forward batched {batch} shared_b={shared_b} {dtype} {tag(trans_a, trans_b)}")


@on_backends(dtypes=FLOAT_DTYPES)
def test_forward_allocates_output(backend, dtype, rng):
    a, b = backend.put(randn(rng, 2, 5, 7), dtype), backend.put(randn(rng, 7, 3), dtype)
    r = ops.matmul_forward(a, b)
    assert tuple(r.shape) == (2, 5, 3)
    assert dtype in str(r.dtype), f"allocated out has dtype {r.dtype}, expected {dtype} (a's dtype)"
    backend.assert_close(r, matmul(backend.get(a), backend.get(b)), dtype, np.sqrt(7),
                         f"matmul_forward allocated out {dtype}")


@on_backends(dtypes=FLOAT_DTYPES)
def test_forward_k0(backend, dtype, rng):
    """K = 0: out = bias (or 0), or out + bias with accumulate; the op layer handles it."""
    M, N = 5, 7
    a, b = backend.put(np.zeros((M, 0), np.float32), dtype), backend.put(np.zeros((0, N), np.float32), dtype)
    bias = randn(rng, N)
    out = backend.poison((M, N))
    ops.matmul_forward(a, b, backend.put(bias), out=out)
    backend.assert_close(out, np.broadcast_to(f64(bias), (M, N)), dtype, 1.0, f"matmul_forward K=0 bias {dtype}")
    out = backend.poison((M, N))
    ops.matmul_forward(a, b, out=out)
    backend.assert_close(out, np.zeros((M, N)), dtype, 1.0, f"matmul_forward K=0 {dtype}")
    prev = randn(rng, M, N)
    out = backend.put(prev)
    ops.matmul_forward(a, b, backend.put(bias), out=out, accumulate=True)
    backend.assert_close(out, f64(prev) + f64(bias), dtype, 1.0, f"matmul_forward K=0 accumulate {dtype}")


def check_backward(backend, got, expected, dtype, scales, what):
    for name, g, e, s in zip(("da", "db", "dbias"), got, expected, scales):
        backend.assert_close(g, e, dtype, s, f"{what} {name}")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward(backend, dtype, threads, rng, shape):
    M, K, N = shape
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype)
        dout, rdout = backend.put_and_values(randn(rng, M, N), dtype)
        bufs = backend.poison(ra.shape, dtype), backend.poison(rb.shape, dtype), backend.poison((N,))
        r = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=bufs[0],
                                db=bufs[1], dbias=bufs[2])
        what = f"matmul_backward {shape} {dtype} {tag(trans_a, trans_b)}"
        check_backward(backend, bufs, matmul_backward(rdout, ra, rb, trans_a, trans_b), dtype,
                       (np.sqrt(N), np.sqrt(M), np.sqrt(M)), what)
        for got, buf in zip(r, bufs):
            backend.assert_equal(got, buf, what + ": the returned tensors are the buffers")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
@pytest.mark.parametrize("batch,M,K,N", BATCHED, ids=str)
def test_backward_batched(backend, dtype, threads, rng, batch, M, K, N, shared_b):
    rows = int(np.prod(batch)) * M
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        dout, rdout = backend.put_and_values(randn(rng, *batch, M, N), dtype)
        bufs = backend.poison(ra.shape, dtype), backend.poison(rb.shape, dtype), backend.poison((N,))
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=bufs[0], db=bufs[1],
                            dbias=bufs[2])
        check_backward(backend, bufs, matmul_backward(rdout, ra, rb, trans_a, trans_b), dtype,
                       (np.sqrt(N), np.sqrt(rows if shared_b else M), np.sqrt(rows)),
                       f"matmul_backward batched {batch} shared_b={shared_b} {dtype} {tag(trans_a, trans_b)}")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(3, 17, 5), (97, 1031, 17)], ids=str)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_backward_accumulate(backend, dtype, threads, rng, shape, shared_b):
    M, K, N = shape
    batch = (2,)
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(backend, rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        dout, rdout = backend.put_and_values(randn(rng, *batch, M, N), dtype)
        (da, pa), (db, pb) = (backend.put_and_values(randn(rng, *x.shape), dtype) for x in (ra, rb))
        dbias, pbias = backend.put_and_values(randn(rng, N))
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias,
                            accumulate=True)
        eda, edb, edbias = matmul_backward(rdout, ra, rb, trans_a, trans_b)
        check_backward(backend, (da, db, dbias), (pa + eda, pb + edb, pbias + edbias), dtype,
                       (np.sqrt(N), np.sqrt(2 * M), np.sqrt(2 * M)),
                       f"matmul_backward accumulate {shape} shared_b={shared_b} {dtype} {tag(trans_a, trans_b)}")


@on_backends()
def test_backward_need_flags(backend, rng):
    a, b, dout = randn(rng, 5, 7), randn(rng, 7, 3), randn(rng, 5, 3)
    da, db, dbias = ops.matmul_backward(*map(backend.put, (dout, a, b)), need_da=True, need_db=False,
                                        need_dbias=False)
    assert db is None and dbias is None
    backend.assert_close(da, matmul_backward(dout, a, b)[0], scale=np.sqrt(3), what="da only")
    da, db, dbias = ops.matmul_backward(*map(backend.put, (dout, a, b)), need_da=False, need_db=False,
                                        need_dbias=True)
    assert da is None and db is None
    backend.assert_close(dbias, f64(dout).sum(0), scale=np.sqrt(5), what="dbias only")


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(1, 3), (3, 17), (2, 97, 33), (131, 1003), (4, 1000, 7)], ids=str)
def test_bias_backward(backend, dtype, threads, rng, shape):
    dout, rdout = backend.put_and_values(randn(rng, *shape), dtype)
    rows = int(np.prod(shape[:-1]))
    expected = rdout.reshape(-1, shape[-1]).sum(axis=0)
    dbias = backend.poison((shape[-1],))
    ops.bias_backward(dout, dbias=dbias)
    # dbias is float32 and summed in float32: the float32 tolerance applies whatever dout's dtype.
    backend.assert_close(dbias, expected, "float32", np.sqrt(rows), f"bias_backward {shape} {dtype}")
    prev = randn(rng, shape[-1])
    dbias = backend.put(prev)
    ops.bias_backward(dout, dbias=dbias, accumulate=True)
    backend.assert_close(dbias, f64(prev) + expected, "float32", np.sqrt(rows),
                         f"bias_backward accumulate {shape} {dtype}")


@on_backends()
@pytest.mark.parametrize("trans", TRANS, ids=lambda t: f"ta{int(t[0])}tb{int(t[1])}")
def test_backward_finite_difference(backend, rng, trans):
    trans_a, trans_b = trans
    batch, M, K, N = (2,), 3, 5, 4
    a = randn(rng, *batch, *((K, M) if trans_a else (M, K)))
    b = randn(rng, *((N, K) if trans_b else (K, N)))
    bias = randn(rng, N)
    w = randn(rng, *batch, M, N)  # loss = sum(w * out), so dout = w
    grads = ops.matmul_backward(*map(backend.put, (w, a, b)), trans_a=trans_a, trans_b=trans_b, need_dbias=True)
    losses = {
        "da": (a, lambda x: (matmul(x, b, bias, trans_a, trans_b) * w).sum()),
        "db": (b, lambda x: (matmul(a, x, bias, trans_a, trans_b) * w).sum()),
        "dbias": (bias, lambda x: (matmul(a, b, x, trans_a, trans_b) * w).sum()),
    }
    for name, got in zip(("da", "db", "dbias"), grads):
        x, loss = losses[name]
        got = backend.get(got).reshape(-1)
        coords = rng.choice(x.size, size=min(6, x.size), replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] {name} {tag(trans_a, trans_b)}: {err}"


@on_backends(dtypes=FLOAT_DTYPES, threads=True)
def test_deterministic_rerun(backend, dtype, threads, rng):
    M, K, N = 97, 1031, 17
    for trans_a, trans_b in TRANS:
        a, b, _, _ = operands(backend, rng, M, K, N, trans_a, trans_b, dtype)
        bias, dout = backend.put(randn(rng, N)), backend.put(randn(rng, M, N), dtype)
        runs = []
        for _ in range(2):
            out = backend.get(ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b))
            grads = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True)
            runs.append([out] + [backend.get(g) for g in grads])
        for x, y in zip(*runs):
            np.testing.assert_array_equal(x, y)
