"""attention_forward / attention_backward on every backend vs NumPy float64: packed and separate q/k/v, causal and
full, KV-cache (kv_len < capacity, Tq < Tk), explicit scale, lse, accumulate, +-1e4 scores, determinism, gradients by
finite differences.

On the CPU Tq <= 4 takes the one-query-per-task path and larger Tq the tiled one. On CUDA float32 runs the generic
(FMA) kernels, bfloat16 with HS 64 / 128 the tensor-core ones (other HS and decode-sized Tq the generic ones); 16-bit
inputs are rounded first and the reference is computed from the rounded values.
"""
import numpy as np
import pytest

import gptx
from backends import on_backends
from conftest import randn
from gptx import ops
from reference import attention, attention_backward, central_difference, f64
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# Separate layout: (B, Tq, Tk capacity, kv_len, NH, HS); kv_len -1 uses all of k. kv_len < capacity is the KV-cache
# form (query i at position kv_len - Tq + i).
SEPARATE = [
    (1, 1, 1, -1, 1, 1),
    (2, 3, 3, -1, 2, 7),
    (1, 5, 9, -1, 2, 7),
    (1, 17, 17, -1, 3, 16),
    (1, 17, 17, -1, 3, 24),
    (2, 97, 97, -1, 2, 64),
    (1, 17, 17, -1, 1, 80),
    (2, 1, 40, 37, 2, 16),
    (1, 1, 1100, 1030, 2, 64),  # decode against a long cache
    (1, 3, 64, 37, 3, 7),
    (1, 3, 64, 37, 3, 40),
    (2, 17, 40, 37, 2, 16),
    (1, 17, 97, 60, 2, 64),
    (1, 17, 97, 60, 2, 80),
    (1, 97, 100, 99, 1, 16),
    (1, 97, 140, 133, 2, 128),
    (2, 130, 200, 199, 2, 64),  # several query and key tiles, Tq < Tk
    (1, 33, 40, -1, 1, 256),
]
# Packed layout: (B, T, NH, HS)
PACKED = [(1, 1, 1, 1), (2, 3, 2, 7), (1, 17, 3, 16), (2, 17, 2, 16), (2, 97, 2, 64), (1, 129, 2, 128), (1, 17, 1, 80),
          (1, 200, 3, 64)]


def sep_id(c):
    return "B{}-Tq{}-Tk{}-kv{}-NH{}-HS{}".format(*c)


def packed_id(c):
    return "B{}-T{}-NH{}-HS{}".format(*c)


def tol_scale(Tk, HS):
    """Each output sums Tk probability-weighted terms, each score a dot product of length HS."""
    return np.sqrt(Tk + HS)


def check_separate(backend, rng, case, causal, dtype="float32", scale=None, accumulate=False):
    B, Tq, Tcap, kv_len, NH, HS = case
    (q, rq), (k, rk), (v, rv) = (backend.put_and_values(randn(rng, B, T, NH, HS), dtype) for T in (Tq, Tcap, Tcap))
    Tk = Tcap if kv_len < 0 else kv_len
    ku, vu = rk[:, :Tk], rv[:, :Tk]
    ref_scale = scale  # None: 1/sqrt(HS)
    what = f"attention separate {sep_id(case)} causal={causal} {dtype}"

    out, lse = backend.poison((B, Tq, NH, HS), dtype), backend.poison((B, NH, Tq))
    r = ops.attention_forward(q, k, v, causal=causal, scale=scale, kv_len=kv_len, out=out, lse=lse)
    eout, else_, _ = attention(rq, ku, vu, causal, ref_scale)
    s = tol_scale(Tk, HS)
    backend.assert_close(out, eout, dtype, s, what + " out")
    backend.assert_close(lse, else_, dtype, s, what + " lse")
    backend.assert_equal(r[0], out, what + ": the returned out is the buffer")
    backend.assert_equal(r[1], lse, what + ": the returned lse is the buffer")

    dout, rdout = backend.put_and_values(randn(rng, B, Tq, NH, HS), dtype)
    if accumulate:
        (dq, pq), (dk, pk), (dv, pv) = (backend.put_and_values(randn(rng, *x.shape), dtype) for x in (rq, rk, rv))
    else:
        dq, dk, dv = (backend.poison(x.shape, dtype) for x in (rq, rk, rv))
        pq, pk, pv = (np.full(x.shape, np.nan) for x in (rq, rk, rv))
    ops.attention_backward(dout, q, k, v, out, lse, causal=causal, scale=scale, kv_len=kv_len, dq=dq, dk=dk, dv=dv,
                           accumulate=accumulate)
    # The kernel differentiates its own (rounded) out; the float64 reference recomputes it: the difference is inside
    # the tolerance.
    edq, edk, edv = attention_backward(rdout, rq, ku, vu, causal, ref_scale)
    gq, gk, gv = backend.get(dq), backend.get(dk), backend.get(dv)
    base = [x if accumulate else np.zeros_like(x) for x in (pq, pk, pv)]
    backend.assert_close(gq, base[0] + edq, dtype, s, what + " dq")
    backend.assert_close(gk[:, :Tk], base[1][:, :Tk] + edk, dtype, s, what + " dk")
    backend.assert_close(gv[:, :Tk], base[2][:, :Tk] + edv, dtype, s, what + " dv")
    # rows of k/v past kv_len receive no gradient: the buffers are left untouched there
    np.testing.assert_array_equal(gk[:, Tk:], pk[:, Tk:], err_msg=what + " dk past kv_len was written")
    np.testing.assert_array_equal(gv[:, Tk:], pv[:, Tk:], err_msg=what + " dv past kv_len was written")


def check_packed(backend, rng, case, causal, dtype="float32", scale=None, accumulate=False):
    B, T, NH, HS = case
    qkv, rqkv = backend.put_and_values(randn(rng, B, T, 3, NH, HS), dtype)
    q, k, v = rqkv[:, :, 0], rqkv[:, :, 1], rqkv[:, :, 2]
    ref_scale = scale  # None: 1/sqrt(HS)
    what = f"attention packed {packed_id(case)} causal={causal} {dtype}"

    out, lse = backend.poison((B, T, NH, HS), dtype), backend.poison((B, NH, T))
    ops.attention_forward(qkv, causal=causal, scale=scale, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal, ref_scale)
    s = tol_scale(T, HS)
    backend.assert_close(out, eout, dtype, s, what + " out")
    backend.assert_close(lse, else_, dtype, s, what + " lse")

    dout, rdout = backend.put_and_values(randn(rng, B, T, NH, HS), dtype)
    if accumulate:
        dqkv, prev = backend.put_and_values(randn(rng, *rqkv.shape), dtype)
    else:
        dqkv, prev = backend.poison(rqkv.shape, dtype), 0.0
    r = ops.attention_backward(dout, qkv, None, None, out, lse, causal=causal, scale=scale, dq=dqkv,
                               accumulate=accumulate)
    assert r[1] is None and r[2] is None
    edq, edk, edv = attention_backward(rdout, q, k, v, causal, ref_scale)
    backend.assert_close(dqkv, prev + np.stack([edq, edk, edv], axis=2), dtype, s, what + " dqkv")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", SEPARATE, ids=sep_id)
def test_separate(backend, dtype, threads, rng, case, causal):
    check_separate(backend, rng, case, causal, dtype)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", PACKED, ids=packed_id)
def test_packed(backend, dtype, threads, rng, case, causal):
    check_packed(backend, rng, case, causal, dtype)


@on_backends(dtypes=DTYPES, threads=True)
def test_non_causal_more_queries_than_keys(backend, dtype, threads, rng):
    for case in ((2, 5, 3, -1, 2, 16), (1, 19, 7, 5, 1, 7), (1, 19, 7, 5, 1, 64)):
        check_separate(backend, rng, case, causal=False, dtype=dtype)


@on_backends(dtypes=DTYPES, threads=True)
def test_explicit_scale(backend, dtype, threads, rng):
    check_separate(backend, rng, (1, 17, 20, 19, 2, 16), causal=True, dtype=dtype, scale=0.1)
    check_separate(backend, rng, (1, 70, 80, 75, 2, 64), causal=True, dtype=dtype, scale=0.1)
    check_packed(backend, rng, (1, 3, 2, 7), causal=True, dtype=dtype, scale=0.9)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_backward_accumulate(backend, dtype, threads, rng, causal):
    for case in ((2, 1, 40, 37, 2, 16), (1, 17, 33, 30, 2, 7), (2, 130, 200, 199, 2, 64)):
        check_separate(backend, rng, case, causal, dtype, accumulate=True)
    for case in ((2, 17, 2, 16), (1, 65, 3, 128)):
        check_packed(backend, rng, case, causal, dtype, accumulate=True)


def large_logit_inputs(rng, B, Tq, Tk, NH, HS=16):
    """q, k, v whose scaled scores are +-1e4 + 0.25 * small integers, all exact in float32 (scale 1/sqrt(16))."""
    q = rng.integers(-3, 4, (B, Tq, NH, HS)).astype(np.float32)
    k = rng.integers(-3, 4, (B, Tk, NH, HS)).astype(np.float32)
    sign = np.where(rng.random((B, 1, NH)) < 0.5, -1.0, 1.0)
    q[..., 0] = 1000.0 * sign
    k[..., 0] = 40.0
    return q, k, randn(rng, B, Tk, NH, HS)


@on_backends(threads=True)
@pytest.mark.parametrize("Tq,Tk,causal", [(1, 37, True), (3, 37, False), (17, 17, True), (33, 40, True)])
def test_large_logits(backend, threads, rng, Tq, Tk, causal):
    B, NH, HS = 2, 2, 16
    q, k, v = large_logit_inputs(rng, B, Tq, Tk, NH)
    qd, kd, vd = map(backend.put, (q, k, v))
    what = f"attention large logits Tq={Tq} Tk={Tk} causal={causal}"
    out, lse = backend.poison((B, Tq, NH, HS)), backend.poison((B, NH, Tq))
    ops.attention_forward(qd, kd, vd, causal=causal, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal)
    assert np.abs(else_).max() > 9e3
    assert np.isfinite(backend.get(out)).all() and np.isfinite(backend.get(lse)).all(), what
    backend.assert_close(out, eout, scale=tol_scale(Tk, HS), what=what + " out")
    backend.assert_close(lse, else_, scale=tol_scale(Tk, HS), what=what + " lse")
    # Backward recomputes p = exp(s - lse) from the float32 lse (~1e4, rounded by up to ~5e-4): a relative error of
    # |lse| * eps in every p is inherent, so the allowance scales with |lse| and the gradient's magnitude.
    dout = randn(rng, B, Tq, NH, HS)
    grads = [backend.poison(x.shape) for x in (q, k, v)]
    ops.attention_backward(backend.put(dout), qd, kd, vd, out, lse, causal=causal, dq=grads[0], dk=grads[1],
                           dv=grads[2])
    for name, got, exp in zip(("dq", "dk", "dv"), grads, attention_backward(dout, q, k, v, causal)):
        assert np.isfinite(backend.get(got)).all(), f"{what} {name} not finite"
        backend.assert_close(got, exp, scale=np.abs(else_).max() * max(np.abs(exp).max(), 1.0), what=f"{what} {name}")


@on_backends()
@pytest.mark.parametrize("layout", ["separate", "packed"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_backward_finite_difference(backend, rng, layout, causal):
    if layout == "separate":
        B, Tq, Tcap, kv_len, NH, HS = 1, 3, 6, 5, 2, 3
        q, k, v = randn(rng, B, Tq, NH, HS), randn(rng, B, Tcap, NH, HS), randn(rng, B, Tcap, NH, HS)
    else:
        B, Tq, NH, HS = 1, 4, 2, 3
        kv_len = Tq
        qkv = randn(rng, B, Tq, 3, NH, HS)
        q, k, v = (np.ascontiguousarray(qkv[:, :, i]) for i in range(3))
    w = randn(rng, B, Tq, NH, HS)  # loss = sum(w * out)
    ku, vu = np.ascontiguousarray(k[:, :kv_len]), np.ascontiguousarray(v[:, :kv_len])
    if layout == "separate":
        qd, kd, vd = map(backend.put, (q, k, v))
        out, lse = ops.attention_forward(qd, kd, vd, causal=causal, kv_len=kv_len)
        grads = ops.attention_backward(backend.put(w), qd, kd, vd, out, lse, causal=causal, kv_len=kv_len)
        grads = [backend.get(grads[0]), backend.get(grads[1])[:, :kv_len], backend.get(grads[2])[:, :kv_len]]
    else:
        qkvd = backend.put(qkv)
        out, lse = ops.attention_forward(qkvd, causal=causal)
        dqkv = backend.get(ops.attention_backward(backend.put(w), qkvd, None, None, out, lse, causal=causal)[0])
        grads = [dqkv[:, :, i] for i in range(3)]
    losses = [
        (q, lambda x: (attention(x, ku, vu, causal)[0] * w).sum()),
        (ku, lambda x: (attention(q, x, vu, causal)[0] * w).sum()),
        (vu, lambda x: (attention(q, ku, x, causal)[0] * w).sum()),
    ]
    for name, got, (x, loss) in zip(("dq", "dk", "dv"), grads, losses):
        got = f64(got).reshape(-1)
        coords = rng.choice(x.size, size=8, replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] {layout} causal={causal} {name}: {err}"


def attention_run(backend, q, k, v, kv_len, causal, dout):
    out, lse = ops.attention_forward(q, k, v, causal=causal, kv_len=kv_len)
    grads = ops.attention_backward(dout, q, k, v, out, lse, causal=causal, kv_len=kv_len)
    return [backend.get(t) for t in (out, lse, *grads) if t is not None]


@on_backends(kinds=("cpu",))
@pytest.mark.parametrize("layout", ["separate", "packed"])
def test_backward_thread_count_invariant(backend, rng, layout):
    B, T, NH, HS = 2, 33, 3, 16
    if layout == "separate":
        q, k, v = randn(rng, B, T, NH, HS), randn(rng, B, T + 7, NH, HS), randn(rng, B, T + 7, NH, HS)
        kv_len = T + 3
    else:
        q, k, v, kv_len = randn(rng, B, T, 3, NH, HS), None, None, -1
    dout = randn(rng, B, T, NH, HS)
    before = gptx.get_num_threads()
    runs = []
    try:
        for n in (1, 2):
            gptx.set_num_threads(n)
            runs.append(attention_run(backend, q, k, v, kv_len, True, dout))
    finally:
        gptx.set_num_threads(before)
    for name, x1, x2 in zip(("out", "lse", "dq", "dk", "dv"), *runs):
        if name in ("dq", "dk", "dv"):  # the determinism guarantee is the backward's
            np.testing.assert_array_equal(x1, x2, err_msg=f"[{backend}] attention_backward {layout} {name}: 1 vs 2")


@on_backends(threads=True)
@pytest.mark.parametrize("Tq", [1, 33])
def test_deterministic_rerun(backend, threads, rng, Tq):
    B, Tk, NH, HS = 2, 40, 3, 16
    q, k, v = (backend.put(randn(rng, B, T, NH, HS)) for T in (Tq, Tk, Tk))
    dout = backend.put(randn(rng, B, Tq, NH, HS))
    for x1, x2 in zip(attention_run(backend, q, k, v, 37, True, dout), attention_run(backend, q, k, v, 37, True, dout)):
        np.testing.assert_array_equal(x1, x2)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("HS", [16, 64])
def test_backward_deterministic_packed(backend, dtype, threads, rng, HS):
    """No float atomics: two backward runs over several query and key tiles give identical bits."""
    B, T, NH = 2, 150, 3
    qkv = backend.put(randn(rng, B, T, 3, NH, HS), dtype)
    dout = backend.put(randn(rng, B, T, NH, HS), dtype)
    out, lse = ops.attention_forward(qkv, causal=True)
    runs = [backend.get(ops.attention_backward(dout, qkv, None, None, out, lse, causal=True)[0]) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@on_backends(dtypes=("float16",))
def test_float16_or_type_error(backend, dtype, rng):
    """float16 is optional for attention: it either matches the reference or raises TypeError."""
    B, T, NH, HS = 1, 33, 2, 64
    qkv, rqkv = backend.put_and_values(randn(rng, B, T, 3, NH, HS), dtype)
    try:
        out, lse = ops.attention_forward(qkv, causal=True)
    except TypeError:
        return
    eout, _, _ = attention(rqkv[:, :, 0], rqkv[:, :, 1], rqkv[:, :, 2], True)
    backend.assert_close(out, eout, dtype, tol_scale(T, HS), "attention float16 out")
