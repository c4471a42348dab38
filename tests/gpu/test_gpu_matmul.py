"""CUDA matmul_forward / matmul_backward / bias_backward vs NumPy float64: every transpose form, bias, batched and
shared-b operands, accumulate, odd sizes, K = 0, float32 (FMA, no TF32) and bfloat16 / float16 (tensor cores) inputs
with float32 or 16-bit outputs. 16-bit inputs are rounded first and the reference is computed from the rounded values,
so the tolerance only covers the kernel's own rounding."""
import itertools

import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host, poison
from reference import f64, matmul
from tolerances import assert_close

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (hasattr(gptx, "cuda") and gptx.cuda.is_available()), reason="no CUDA device")]

TRANS = list(itertools.product([False, True], repeat=2))
# (M, K, N): ones, odd sizes (odd leading dimensions take the scalar-load path), a decode-like M, and one shape large
# enough for the 128x128 tensor-core tiles (>= 132 tiles) with ragged edges.
SHAPES = [(1, 1, 1), (3, 17, 1), (1, 97, 17), (17, 3, 97), (97, 17, 3), (3, 257, 300), (97, 1031, 17),
          (16, 768, 129), (129, 64, 136)]
BIG = (1031, 72, 2100)
DTYPES = ["float32", "bfloat16", "float16"]


def operands(rng, M, K, N, trans_a, trans_b, dtype, batch=(), shared_b=True):
    """(a, b) as CUDA tensors of dtype and their rounded float32 values."""
    a = randn(rng, *batch, *((K, M) if trans_a else (M, K)))
    b = randn(rng, *(() if shared_b else batch), *((N, K) if trans_b else (K, N)))
    da, db = dev(a, dtype), dev(b, dtype)
    return da, db, host(da), host(db)


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


def check(got, expected, dtype, scale, what):
    assert_close(host(got), expected, backend="cuda", dtype=dtype, scale=scale, what=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [BIG], ids=str)
def test_forward(rng, shape, dtype):
    M, K, N = shape
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype)
        with_bias = i % 2 == 1
        bias = randn(rng, N) if with_bias else None
        # 16-bit inputs: float32 out for two of the forms, the input dtype for the other two.
        out_dtype = "float32" if dtype == "float32" or i < 2 else dtype
        out = poison((M, N), out_dtype)
        r = ops.matmul_forward(a, b, dev(bias) if with_bias else None, trans_a=trans_a, trans_b=trans_b, out=out)
        check(out, matmul(ra, rb, bias, trans_a, trans_b), dtype, np.sqrt(K),
              f"cuda matmul_forward {shape} {dtype}->{out_dtype} {tag(trans_a, trans_b)} bias={with_bias}")
        np.testing.assert_array_equal(host(r), host(out))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 17, 5), (17, 97, 3), (97, 1031, 17), (130, 64, 136)], ids=str)
def test_forward_accumulate(rng, shape, dtype):
    M, K, N = shape
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype)
        bias = randn(rng, N) if i % 2 else None
        out_dtype = "float32" if dtype == "float32" or i % 2 == 0 else dtype
        out = dev(randn(rng, M, N), out_dtype)
        expected = f64(host(out)) + matmul(ra, rb, bias, trans_a, trans_b)
        ops.matmul_forward(a, b, dev(bias) if bias is not None else None, trans_a=trans_a, trans_b=trans_b, out=out,
                           accumulate=True)
        check(out, expected, dtype, np.sqrt(K),
              f"cuda matmul_forward accumulate {shape} {dtype}->{out_dtype} {tag(trans_a, trans_b)}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_forward_batched(rng, shared_b, dtype):
    batch, M, K, N = (2, 3), 17, 33, 7
    for i, (trans_a, trans_b) in enumerate(TRANS):
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        bias = randn(rng, N)
        out_dtype = "float32" if dtype == "float32" or i % 2 == 0 else dtype
        out = poison((*batch, M, N), out_dtype)
        ops.matmul_forward(a, b, dev(bias), trans_a=trans_a, trans_b=trans_b, out=out)
        check(out, matmul(ra, rb, bias, trans_a, trans_b), dtype, np.sqrt(K),
              f"cuda matmul_forward batched shared_b={shared_b} {dtype}->{out_dtype} {tag(trans_a, trans_b)}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_allocates_output(rng, dtype):
    a, b = dev(randn(rng, 2, 5, 7), dtype), dev(randn(rng, 7, 3), dtype)
    r = ops.matmul_forward(a, b)
    assert tuple(r.shape) == (2, 5, 3)
    assert dtype in str(r.dtype), f"allocated out has dtype {r.dtype}, expected {dtype} (a's dtype)"
    check(r, matmul(host(a), host(b)), dtype, np.sqrt(7), f"cuda matmul_forward allocated out {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_k0(rng, dtype):
    """K = 0: out = bias (or 0), or out + bias with accumulate; the op layer handles it."""
    M, N = 5, 7
    a, b = dev(np.zeros((M, 0), np.float32), dtype), dev(np.zeros((0, N), np.float32), dtype)
    bias = randn(rng, N)
    out = poison((M, N))
    ops.matmul_forward(a, b, dev(bias), out=out)
    check(out, np.broadcast_to(f64(bias), (M, N)), dtype, 1.0, f"cuda matmul_forward K=0 bias {dtype}")
    out = poison((M, N))
    ops.matmul_forward(a, b, out=out)
    check(out, np.zeros((M, N)), dtype, 1.0, f"cuda matmul_forward K=0 {dtype}")
    prev = randn(rng, M, N)
    out = dev(prev)
    ops.matmul_forward(a, b, dev(bias), out=out, accumulate=True)
    check(out, f64(prev) + f64(bias), dtype, 1.0, f"cuda matmul_forward K=0 accumulate {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 17, 1), (17, 3, 97), (97, 1031, 17), (3, 257, 300),
                                   (129, 64, 136)], ids=str)
def test_backward(rng, shape, dtype):
    M, K, N = shape
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype)
        dout = dev(randn(rng, M, N), dtype)
        da, db, dbias = poison(tuple(a.shape), dtype), poison(tuple(b.shape), dtype), poison((N,))
        r = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db,
                                dbias=dbias)
        eda, edb, edbias = ref_grads(host(dout), ra, rb, trans_a, trans_b)
        what = f"cuda matmul_backward {shape} {dtype} {tag(trans_a, trans_b)}"
        check(da, eda, dtype, np.sqrt(N), what + " da")
        check(db, edb, dtype, np.sqrt(M), what + " db")
        check(dbias, edbias, dtype, np.sqrt(M), what + " dbias")
        for got, buf in zip(r, (da, db, dbias)):
            np.testing.assert_array_equal(host(got), host(buf))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_backward_batched(rng, shared_b, dtype):
    batch, M, K, N = (3, 2), 17, 9, 33
    rows = 6 * M
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        dout = dev(randn(rng, *batch, M, N), dtype)
        da, db, dbias = poison(tuple(a.shape), dtype), poison(tuple(b.shape), dtype), poison((N,))
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias)
        eda, edb, edbias = ref_grads(host(dout), ra, rb, trans_a, trans_b)
        what = f"cuda matmul_backward batched shared_b={shared_b} {dtype} {tag(trans_a, trans_b)}"
        check(da, eda, dtype, np.sqrt(N), what + " da")
        check(db, edb, dtype, np.sqrt(rows if shared_b else M), what + " db")
        check(dbias, edbias, dtype, np.sqrt(rows), what + " dbias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_b", [True, False], ids=["shared_b", "batched_b"])
def test_backward_accumulate(rng, shared_b, dtype):
    M, K, N = 97, 1031, 17
    batch = (2,)
    for trans_a, trans_b in TRANS:
        a, b, ra, rb = operands(rng, M, K, N, trans_a, trans_b, dtype, batch, shared_b)
        dout = dev(randn(rng, *batch, M, N), dtype)
        da = dev(randn(rng, *a.shape), dtype)
        db = dev(randn(rng, *b.shape), dtype)
        dbias = dev(randn(rng, N))
        prev = [f64(host(x)) for x in (da, db, dbias)]
        ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True, da=da, db=db, dbias=dbias,
                            accumulate=True)
        eda, edb, edbias = ref_grads(host(dout), ra, rb, trans_a, trans_b)
        what = f"cuda matmul_backward accumulate shared_b={shared_b} {dtype} {tag(trans_a, trans_b)}"
        check(da, prev[0] + eda, dtype, np.sqrt(N), what + " da")
        check(db, prev[1] + edb, dtype, np.sqrt(2 * M), what + " db")
        check(dbias, prev[2] + edbias, dtype, np.sqrt(2 * M), what + " dbias")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (3, 17), (2, 97, 33), (131, 1003), (4, 1000, 7)], ids=str)
def test_bias_backward(rng, shape, dtype):
    dout = dev(randn(rng, *shape), dtype)
    rows = int(np.prod(shape[:-1]))
    expected = f64(host(dout)).reshape(-1, shape[-1]).sum(axis=0)
    dbias = poison((shape[-1],))
    ops.bias_backward(dout, dbias=dbias)
    # dbias is float32 and summed in float32: the float32 tolerance applies whatever dout's dtype.
    check(dbias, expected, "float32", np.sqrt(rows), f"cuda bias_backward {shape} {dtype}")
    prev = randn(rng, shape[-1])
    dbias = dev(prev)
    ops.bias_backward(dout, dbias=dbias, accumulate=True)
    check(dbias, f64(prev) + expected, "float32", np.sqrt(rows), f"cuda bias_backward accumulate {shape} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_rerun(rng, dtype):
    M, K, N = 97, 1031, 17
    for trans_a, trans_b in TRANS:
        a, b, _, _ = operands(rng, M, K, N, trans_a, trans_b, dtype)
        bias, dout = dev(randn(rng, N)), dev(randn(rng, M, N), dtype)
        runs = []
        for _ in range(2):
            out = host(ops.matmul_forward(a, b, bias, trans_a=trans_a, trans_b=trans_b))
            grads = ops.matmul_backward(dout, a, b, trans_a=trans_a, trans_b=trans_b, need_dbias=True)
            runs.append([out] + [host(g) for g in grads])
        for x, y in zip(*runs):
            np.testing.assert_array_equal(x, y)
