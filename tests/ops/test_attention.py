"""attention_forward / attention_backward vs NumPy float64: packed and separate q/k/v, causal, KV-cache, lse, grads."""
import numpy as np
import pytest

import gptx
from conftest import poisoned, randn
from gptx import ops
from reference import attention, attention_backward, central_difference, f64
from tolerances import FINITE_DIFFERENCE_RTOL, assert_close

# Separate layout: (B, Tq, Tk capacity, kv_len, NH, HS); kv_len -1 uses all of k. Tq <= 4 takes the one-query-per-task
# path, larger Tq the tiled one; kv_len < capacity is the KV-cache form (query i at position kv_len - Tq + i).
SEPARATE = [
    (1, 1, 1, -1, 1, 1),
    (2, 3, 3, -1, 2, 7),
    (1, 17, 17, -1, 3, 16),
    (2, 97, 97, -1, 2, 64),
    (1, 17, 17, -1, 1, 80),
    (2, 1, 40, 37, 2, 16),
    (1, 3, 64, 37, 3, 7),
    (1, 17, 97, 60, 2, 80),
    (1, 97, 100, 99, 1, 16),
]
# Packed layout: (B, T, NH, HS)
PACKED = [(1, 1, 1, 1), (2, 3, 2, 7), (1, 17, 3, 16), (2, 97, 2, 64), (1, 17, 1, 80)]


def sep_id(c):
    return "B{}-Tq{}-Tk{}-kv{}-NH{}-HS{}".format(*c)


def packed_id(c):
    return "B{}-T{}-NH{}-HS{}".format(*c)


def tol_scale(Tk, HS):
    """Each output sums Tk probability-weighted terms, each score a dot product of length HS."""
    return np.sqrt(Tk + HS)


def used_kv(k, v, kv_len):
    n = k.shape[1] if kv_len < 0 else kv_len
    return k[:, :n], v[:, :n], n


def check_separate(rng, case, causal, scale=0.0, accumulate=False):
    B, Tq, Tcap, kv_len, NH, HS = case
    q, k, v = randn(rng, B, Tq, NH, HS), randn(rng, B, Tcap, NH, HS), randn(rng, B, Tcap, NH, HS)
    ku, vu, Tk = used_kv(k, v, kv_len)
    ref_scale = None if scale <= 0 else scale
    what = f"attention separate {sep_id(case)} causal={causal}"

    out, lse = poisoned((B, Tq, NH, HS)), poisoned((B, NH, Tq))
    r = ops.attention_forward(q, k, v, causal=causal, scale=scale, kv_len=kv_len, out=out, lse=lse)
    eout, else_, _ = attention(q, ku, vu, causal, ref_scale)
    s = tol_scale(Tk, HS)
    assert_close(out, eout, scale=s, what=what + " out")
    assert_close(lse, else_, scale=s, what=what + " lse")
    np.testing.assert_array_equal(np.asarray(r[0]), out)
    np.testing.assert_array_equal(np.asarray(r[1]), lse)

    dout = randn(rng, B, Tq, NH, HS)
    if accumulate:
        dq, dk, dv = randn(rng, *q.shape), randn(rng, *k.shape), randn(rng, *v.shape)
    else:
        dq, dk, dv = poisoned(q.shape), poisoned(k.shape), poisoned(v.shape)
    prev = [x.copy() for x in (dq, dk, dv)]
    ops.attention_backward(dout, q, k, v, out, lse, causal=causal, scale=scale, kv_len=kv_len, dq=dq, dk=dk, dv=dv,
                           accumulate=accumulate)
    edq, edk, edv = attention_backward(dout, q, ku, vu, causal, ref_scale)
    base = [f64(p) if accumulate else 0.0 for p in prev]
    assert_close(dq, base[0] + edq, scale=s, what=what + " dq")
    assert_close(dk[:, :Tk], (base[1][:, :Tk] if accumulate else 0.0) + edk, scale=s, what=what + " dk")
    assert_close(dv[:, :Tk], (base[2][:, :Tk] if accumulate else 0.0) + edv, scale=s, what=what + " dv")
    # rows of k/v past kv_len receive no gradient: the buffers are left untouched there
    np.testing.assert_array_equal(dk[:, Tk:], prev[1][:, Tk:], err_msg=what + " dk past kv_len was written")
    np.testing.assert_array_equal(dv[:, Tk:], prev[2][:, Tk:], err_msg=what + " dv past kv_len was written")


def check_packed(rng, case, causal, scale=0.0, accumulate=False):
    B, T, NH, HS = case
    qkv = randn(rng, B, T, 3, NH, HS)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    ref_scale = None if scale <= 0 else scale
    what = f"attention packed {packed_id(case)} causal={causal}"

    out, lse = poisoned((B, T, NH, HS)), poisoned((B, NH, T))
    ops.attention_forward(qkv, causal=causal, scale=scale, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal, ref_scale)
    s = tol_scale(T, HS)
    assert_close(out, eout, scale=s, what=what + " out")
    assert_close(lse, else_, scale=s, what=what + " lse")

    dout = randn(rng, B, T, NH, HS)
    dqkv = randn(rng, *qkv.shape) if accumulate else poisoned(qkv.shape)
    prev = f64(dqkv) if accumulate else 0.0
    r = ops.attention_backward(dout, qkv, None, None, out, lse, causal=causal, scale=scale, dq=dqkv,
                               accumulate=accumulate)
    assert r[1] is None and r[2] is None
    edq, edk, edv = attention_backward(dout, q, k, v, causal, ref_scale)
    assert_close(dqkv, prev + np.stack([edq, edk, edv], axis=2), scale=s, what=what + " dqkv")


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", SEPARATE, ids=sep_id)
def test_separate(isa, threads, rng, case, causal):
    check_separate(rng, case, causal)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", PACKED, ids=packed_id)
def test_packed(isa, threads, rng, case, causal):
    check_packed(rng, case, causal)


def test_non_causal_more_queries_than_keys(isa, threads, rng):
    check_separate(rng, (2, 5, 3, -1, 2, 16), causal=False)
    check_separate(rng, (1, 19, 7, 5, 1, 7), causal=False)


def test_explicit_scale(isa, threads, rng):
    check_separate(rng, (1, 17, 20, 19, 2, 16), causal=True, scale=0.1)
    check_packed(rng, (1, 3, 2, 7), causal=True, scale=0.9)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_backward_accumulate(isa, threads, rng, causal):
    check_separate(rng, (2, 1, 40, 37, 2, 16), causal, accumulate=True)
    check_separate(rng, (1, 17, 33, 30, 2, 7), causal, accumulate=True)
    check_packed(rng, (2, 17, 2, 16), causal, accumulate=True)


def large_logit_inputs(rng, B, Tq, Tk, NH, HS=16):
    """q, k, v whose scaled scores are +-1e4 + 0.25 * small integers, all exact in float32 (scale 1/sqrt(16))."""
    q = rng.integers(-3, 4, (B, Tq, NH, HS)).astype(np.float32)
    k = rng.integers(-3, 4, (B, Tk, NH, HS)).astype(np.float32)
    sign = np.where(rng.random((B, 1, NH)) < 0.5, -1.0, 1.0)
    q[..., 0] = 1000.0 * sign
    k[..., 0] = 40.0
    return q, k, randn(rng, B, Tk, NH, HS)


@pytest.mark.parametrize("Tq,Tk,causal", [(1, 37, True), (3, 37, False), (17, 17, True), (33, 40, True)])
def test_large_logits(isa, threads, rng, Tq, Tk, causal):
    B, NH, HS = 2, 2, 16
    q, k, v = large_logit_inputs(rng, B, Tq, Tk, NH)
    what = f"attention large logits Tq={Tq} Tk={Tk} causal={causal}"
    out, lse = poisoned((B, Tq, NH, HS)), poisoned((B, NH, Tq))
    ops.attention_forward(q, k, v, causal=causal, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal)
    assert np.abs(else_).max() > 9e3
    assert np.isfinite(out).all() and np.isfinite(lse).all(), what
    assert_close(out, eout, scale=tol_scale(Tk, HS), what=what + " out")
    assert_close(lse, else_, scale=tol_scale(Tk, HS), what=what + " lse")
    # Backward recomputes p = exp(s - lse) from the float32 lse (~1e4, rounded by up to ~5e-4): a relative error of
    # |lse| * eps in every p is inherent, so the allowance scales with |lse| and the gradient's magnitude.
    dout = randn(rng, B, Tq, NH, HS)
    dq, dk, dv = poisoned(q.shape), poisoned(k.shape), poisoned(v.shape)
    ops.attention_backward(dout, q, k, v, out, lse, causal=causal, dq=dq, dk=dk, dv=dv)
    for name, got, exp in zip(("dq", "dk", "dv"), (dq, dk, dv), attention_backward(dout, q, k, v, causal)):
        assert np.isfinite(got).all(), f"{what} {name} not finite"
        assert_close(got, exp, scale=np.abs(else_).max() * max(np.abs(exp).max(), 1.0), what=f"{what} {name}")


@pytest.mark.parametrize("layout", ["separate", "packed"])
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_backward_finite_difference(isa, rng, layout, causal):
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
        out, lse = ops.attention_forward(q, k, v, causal=causal, kv_len=kv_len)
        grads = ops.attention_backward(w, q, k, v, out, lse, causal=causal, kv_len=kv_len)
        grads = [np.asarray(grads[0]), np.asarray(grads[1])[:, :kv_len], np.asarray(grads[2])[:, :kv_len]]
    else:
        out, lse = ops.attention_forward(qkv, causal=causal)
        dqkv = np.asarray(ops.attention_backward(w, qkv, None, None, out, lse, causal=causal)[0])
        grads = [dqkv[:, :, i] for i in range(3)]
    losses = [
        (q, lambda x: (attention(x, ku, vu, causal)[0] * w).sum()),
        (ku, lambda x: (attention(q, x, vu, causal)[0] * w).sum()),
        (vu, lambda x: (attention(q, ku, x, causal)[0] * w).sum()),
    ]
    for name, got, (x, loss) in zip(("dq", "dk", "dv"), grads, losses):
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        coords = rng.choice(x.size, size=8, replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"{layout} causal={causal} {name}: fd err {err}"


class num_threads:
    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.before = gptx.get_num_threads()
        gptx.set_num_threads(self.n)

    def __exit__(self, *exc):
        gptx.set_num_threads(self.before)


def attention_run(q, k, v, kv_len, causal, dout):
    out, lse = ops.attention_forward(q, k, v, causal=causal, kv_len=kv_len)
    grads = ops.attention_backward(dout, q, k, v, out, lse, causal=causal, kv_len=kv_len)
    return [np.asarray(t).copy() for t in (out, lse, *grads) if t is not None]


@pytest.mark.parametrize("layout", ["separate", "packed"])
def test_backward_thread_count_invariant(isa, rng, layout):
    B, T, NH, HS = 2, 33, 3, 16
    if layout == "separate":
        q, k, v = randn(rng, B, T, NH, HS), randn(rng, B, T + 7, NH, HS), randn(rng, B, T + 7, NH, HS)
        kv_len = T + 3
    else:
        q, k, v, kv_len = randn(rng, B, T, 3, NH, HS), None, None, -1
    dout = randn(rng, B, T, NH, HS)
    with num_threads(1):
        one = attention_run(q, k, v, kv_len, True, dout)
    with num_threads(2):
        two = attention_run(q, k, v, kv_len, True, dout)
    for name, x1, x2 in zip(("out", "lse", "dq", "dk", "dv"), one, two):
        if name in ("dq", "dk", "dv"):  # the determinism guarantee is the backward's
            np.testing.assert_array_equal(x1, x2, err_msg=f"attention_backward {layout} {name}: 1 vs 2 threads")


@pytest.mark.parametrize("Tq", [1, 33])
def test_deterministic_rerun(isa, threads, rng, Tq):
    B, Tk, NH, HS = 2, 40, 3, 16
    q, k, v = randn(rng, B, Tq, NH, HS), randn(rng, B, Tk, NH, HS), randn(rng, B, Tk, NH, HS)
    dout = randn(rng, B, Tq, NH, HS)
    first = attention_run(q, k, v, 37, True, dout)
    second = attention_run(q, k, v, 37, True, dout)
    for x1, x2 in zip(first, second):
        np.testing.assert_array_equal(x1, x2)


def test_reference_backend(reference_backend, rng):
    check_separate(rng, (2, 17, 40, 37, 2, 16), causal=True)
    check_separate(rng, (1, 5, 9, -1, 2, 7), causal=False)
    check_packed(rng, (2, 17, 2, 16), causal=True)
