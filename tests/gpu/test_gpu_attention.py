"""CUDA attention_forward / attention_backward vs NumPy float64: packed and separate q/k/v, KV-cache, lse, grads.

float32 runs the generic (FMA) kernels; bfloat16 with HS 64 / 128 runs the tensor-core kernels (other HS and
decode-sized Tq the generic ones). bf16 inputs are rounded first and the reference is computed from the rounded values.
"""
import numpy as np
import pytest

import gptx

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

from conftest import randn  # noqa: E402
from gptx import ops  # noqa: E402
from gpu_util import dev_and_values, host, poison  # noqa: E402
from reference import attention, attention_backward, f64  # noqa: E402
from tolerances import assert_close  # noqa: E402

DTYPES = ["float32", "bfloat16"]

# Separate layout: (B, Tq, Tk capacity, kv_len, NH, HS); kv_len -1 uses all of k.
SEPARATE = [
    (1, 1, 1, -1, 1, 1),
    (2, 3, 3, -1, 2, 7),
    (1, 17, 17, -1, 3, 24),
    (2, 97, 97, -1, 2, 64),
    (1, 17, 17, -1, 1, 80),
    (2, 1, 40, 37, 2, 16),
    (1, 1, 1100, 1030, 2, 64),   # KV-cache decode, long cache
    (1, 3, 64, 37, 3, 40),
    (1, 17, 97, 60, 2, 64),
    (1, 97, 140, 133, 2, 128),
    (2, 130, 200, 199, 2, 64),   # several query and key tiles, Tq < Tk
    (1, 33, 40, -1, 1, 256),
]
# Packed layout: (B, T, NH, HS)
PACKED = [(1, 1, 1, 1), (2, 3, 2, 7), (1, 17, 3, 16), (2, 97, 2, 64), (1, 129, 2, 128), (1, 17, 1, 80),
          (1, 200, 3, 64)]


def sep_id(c):
    return "B{}-Tq{}-Tk{}-kv{}-NH{}-HS{}".format(*c)


def packed_id(c):
    return "B{}-T{}-NH{}-HS{}".format(*c)


def tol_scale(Tk, HS):
    return np.sqrt(Tk + HS)


def check_separate(rng, case, causal, dtype, scale=0.0, accumulate=False):
    B, Tq, Tcap, kv_len, NH, HS = case
    q, qh = dev_and_values(randn(rng, B, Tq, NH, HS), dtype)
    k, kh = dev_and_values(randn(rng, B, Tcap, NH, HS), dtype)
    v, vh = dev_and_values(randn(rng, B, Tcap, NH, HS), dtype)
    Tk = Tcap if kv_len < 0 else kv_len
    ku, vu = kh[:, :Tk], vh[:, :Tk]
    ref_scale = None if scale <= 0 else scale
    what = f"cuda attention separate {sep_id(case)} causal={causal} {dtype}"

    out, lse = poison((B, Tq, NH, HS), dtype), poison((B, NH, Tq), "float32")
    ops.attention_forward(q, k, v, causal=causal, scale=scale, kv_len=kv_len, out=out, lse=lse)
    eout, else_, _ = attention(qh, ku, vu, causal, ref_scale)
    s = tol_scale(Tk, HS)
    assert_close(host(out), eout, backend="cuda", dtype=dtype, scale=s, what=what + " out")
    assert_close(host(lse), else_, backend="cuda", dtype=dtype, scale=s, what=what + " lse")

    dout, douth = dev_and_values(randn(rng, B, Tq, NH, HS), dtype)
    if accumulate:
        (dq, pq), (dk, pk), (dv, pv) = (dev_and_values(randn(rng, *x.shape), dtype) for x in (qh, kh, vh))
    else:
        dq, dk, dv = (poison(x.shape, dtype) for x in (qh, kh, vh))
        pq, pk, pv = (np.full(x.shape, np.nan, np.float32) for x in (qh, kh, vh))
    ops.attention_backward(dout, q, k, v, out, lse, causal=causal, scale=scale, kv_len=kv_len, dq=dq, dk=dk, dv=dv,
                           accumulate=accumulate)
    # the reference backward from the kernel's own (rounded) out is what the kernel differentiates; the float64
    # reference recomputes out, the difference is inside the tolerance
    edq, edk, edv = attention_backward(douth, qh, ku, vu, causal, ref_scale)
    gq, gk, gv = host(dq), host(dk), host(dv)
    base = [f64(x) if accumulate else 0.0 for x in (pq, pk, pv)]
    assert_close(gq, base[0] + edq, backend="cuda", dtype=dtype, scale=s, what=what + " dq")
    assert_close(gk[:, :Tk], (base[1][:, :Tk] if accumulate else 0.0) + edk, backend="cuda", dtype=dtype, scale=s,
                 what=what + " dk")
    assert_close(gv[:, :Tk], (base[2][:, :Tk] if accumulate else 0.0) + edv, backend="cuda", dtype=dtype, scale=s,
                 what=what + " dv")
    np.testing.assert_array_equal(gk[:, Tk:], pk[:, Tk:], err_msg=what + " dk past kv_len was written")
    np.testing.assert_array_equal(gv[:, Tk:], pv[:, Tk:], err_msg=what + " dv past kv_len was written")


def check_packed(rng, case, causal, dtype, scale=0.0, accumulate=False):
    B, T, NH, HS = case
    qkv, qkvh = dev_and_values(randn(rng, B, T, 3, NH, HS), dtype)
    q, k, v = qkvh[:, :, 0], qkvh[:, :, 1], qkvh[:, :, 2]
    ref_scale = None if scale <= 0 else scale
    what = f"cuda attention packed {packed_id(case)} causal={causal} {dtype}"

    out, lse = poison((B, T, NH, HS), dtype), poison((B, NH, T), "float32")
    ops.attention_forward(qkv, causal=causal, scale=scale, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal, ref_scale)
    s = tol_scale(T, HS)
    assert_close(host(out), eout, backend="cuda", dtype=dtype, scale=s, what=what + " out")
    assert_close(host(lse), else_, backend="cuda", dtype=dtype, scale=s, what=what + " lse")

    dout, douth = dev_and_values(randn(rng, B, T, NH, HS), dtype)
    if accumulate:
        dqkv, prev = dev_and_values(randn(rng, *qkvh.shape), dtype)
        prev = f64(prev)
    else:
        dqkv, prev = poison(qkvh.shape, dtype), 0.0
    ops.attention_backward(dout, qkv, None, None, out, lse, causal=causal, scale=scale, dq=dqkv,
                           accumulate=accumulate)
    edq, edk, edv = attention_backward(douth, q, k, v, causal, ref_scale)
    assert_close(host(dqkv), prev + np.stack([edq, edk, edv], axis=2), backend="cuda", dtype=dtype, scale=s,
                 what=what + " dqkv")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", SEPARATE, ids=sep_id)
def test_separate(rng, case, causal, dtype):
    check_separate(rng, case, causal, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", PACKED, ids=packed_id)
def test_packed(rng, case, causal, dtype):
    check_packed(rng, case, causal, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_causal_more_queries_than_keys(rng, dtype):
    check_separate(rng, (2, 5, 3, -1, 2, 16), causal=False, dtype=dtype)
    check_separate(rng, (1, 19, 7, 5, 1, 64), causal=False, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_explicit_scale(rng, dtype):
    check_separate(rng, (1, 17, 20, 19, 2, 16), causal=True, dtype=dtype, scale=0.1)
    check_separate(rng, (1, 70, 80, 75, 2, 64), causal=True, dtype=dtype, scale=0.1)
    check_packed(rng, (1, 3, 2, 7), causal=True, dtype=dtype, scale=0.9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
def test_backward_accumulate(rng, causal, dtype):
    check_separate(rng, (2, 1, 40, 37, 2, 16), causal, dtype, accumulate=True)
    check_separate(rng, (1, 17, 33, 30, 2, 7), causal, dtype, accumulate=True)
    check_separate(rng, (2, 130, 200, 199, 2, 64), causal, dtype, accumulate=True)
    check_packed(rng, (2, 17, 2, 16), causal, dtype, accumulate=True)
    check_packed(rng, (1, 65, 3, 128), causal, dtype, accumulate=True)


@pytest.mark.parametrize("Tq,Tk,causal", [(1, 37, True), (3, 37, False), (17, 17, True), (33, 40, True)])
def test_large_logits(rng, Tq, Tk, causal):
    """float32 scores of +-1e4: the online softmax must stay finite; backward's P = exp(s - lse) is rounded by |lse|."""
    B, NH, HS = 2, 2, 16
    q = rng.integers(-3, 4, (B, Tq, NH, HS)).astype(np.float32)
    k = rng.integers(-3, 4, (B, Tk, NH, HS)).astype(np.float32)
    sign = np.where(rng.random((B, 1, NH)) < 0.5, -1.0, 1.0)
    q[..., 0] = 1000.0 * sign
    k[..., 0] = 40.0
    v = randn(rng, B, Tk, NH, HS)
    what = f"cuda attention large logits Tq={Tq} Tk={Tk} causal={causal}"
    (qd, _), (kd, _), (vd, _) = (dev_and_values(x, "float32") for x in (q, k, v))
    out, lse = poison((B, Tq, NH, HS), "float32"), poison((B, NH, Tq), "float32")
    ops.attention_forward(qd, kd, vd, causal=causal, out=out, lse=lse)
    eout, else_, _ = attention(q, k, v, causal)
    o, l = host(out), host(lse)
    assert np.isfinite(o).all() and np.isfinite(l).all(), what
    assert_close(o, eout, backend="cuda", scale=tol_scale(Tk, HS), what=what + " out")
    assert_close(l, else_, backend="cuda", scale=tol_scale(Tk, HS), what=what + " lse")
    dout = randn(rng, B, Tq, NH, HS)
    doutd, _ = dev_and_values(dout, "float32")
    dq, dk, dv = (poison(x.shape, "float32") for x in (q, k, v))
    ops.attention_backward(doutd, qd, kd, vd, out, lse, causal=causal, dq=dq, dk=dk, dv=dv)
    for name, got, exp in zip(("dq", "dk", "dv"), (dq, dk, dv), attention_backward(dout, q, k, v, causal)):
        got = host(got)
        assert np.isfinite(got).all(), f"{what} {name} not finite"
        assert_close(got, exp, backend="cuda", scale=np.abs(else_).max() * max(np.abs(exp).max(), 1.0),
                     what=f"{what} {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("HS", [16, 64])
def test_deterministic_rerun(rng, dtype, HS):
    """No float atomics: two backward runs give identical bits."""
    B, T, NH = 2, 150, 3
    qkv, _ = dev_and_values(randn(rng, B, T, 3, NH, HS), dtype)
    dout, _ = dev_and_values(randn(rng, B, T, NH, HS), dtype)
    out, lse = ops.attention_forward(qkv, causal=True)
    runs = []
    for _ in range(2):
        dqkv = ops.attention_backward(dout, qkv, None, None, out, lse, causal=True)[0]
        runs.append(host(dqkv).copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_float16_or_type_error(rng):
    """float16 is optional for attention: it either matches the reference or raises TypeError."""
    B, T, NH, HS = 1, 33, 2, 64
    qkv, qkvh = dev_and_values(randn(rng, B, T, 3, NH, HS), "float16")
    try:
        out, lse = ops.attention_forward(qkv, causal=True)
    except TypeError:
        return
    eout, else_, _ = attention(qkvh[:, :, 0], qkvh[:, :, 1], qkvh[:, :, 2], True)
    assert_close(host(out), eout, backend="cuda", dtype="float16", scale=tol_scale(T, HS), what="float16 out")
