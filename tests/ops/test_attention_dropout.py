"""Dropout on the attention probabilities, inside the attention kernels, on every backend: forward and backward vs a
float64 NumPy reference that applies the generator's mask (tests/dropout_reference.py), gradients at a fixed mask vs
central differences, masks independent of the thread count and of the kernel's tiling, lse unchanged."""
import numpy as np
import pytest

import dropout_reference as dref
from backends import on_backends
from conftest import randn
from gptx import ops
from reference import causal_mask, central_difference, f64
from tolerances import FINITE_DIFFERENCE_RTOL

# (B, Tq, Tk, NH, HS): decode-sized Tq (the CPU's small path), one and several key blocks (64/128), Tq < Tk
CASES = [(1, 1, 1, 1, 8), (2, 3, 3, 2, 5), (1, 3, 20, 2, 16), (2, 37, 37, 3, 16), (1, 130, 130, 2, 32),
         (1, 300, 300, 1, 64), (1, 17, 150, 2, 24)]
DTYPES = ("float32", "bfloat16")


def case_id(c):
    return "B{}-Tq{}-Tk{}-NH{}-HS{}".format(*c)


def reference(q, k, v, causal, Z, dout=None):
    """out, lse (and dq, dk, dv given dout) of attention whose probabilities are multiplied by Z (B, NH, Tq, Tk)."""
    q, k, v = f64(q), f64(k), f64(v)
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if causal:
        s = np.where(causal_mask(s.shape[-2], s.shape[-1]), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    e = np.exp(s - m)
    l = e.sum(axis=-1, keepdims=True)
    p = e / l
    out = np.einsum("bhqk,bkhd->bqhd", p * Z, v)
    lse = (m + np.log(l))[..., 0]
    if dout is None:
        return out, lse
    dout = f64(dout)
    dv = np.einsum("bhqk,bqhd->bkhd", p * Z, dout)
    dpz = np.einsum("bqhd,bkhd->bhqk", dout, v)
    dp = dpz * Z
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = np.einsum("bhqk,bkhd->bqhd", ds, k) * scale
    dk = np.einsum("bhqk,bqhd->bkhd", ds, q) * scale
    return out, lse, dq, dk, dv


def mask_factors(p, key, B, NH, Tq, Tk):
    """Z (B, NH, Tq, Tk): row (b * NH + h) * Tq + i, column j of the generator, as the kernels key it."""
    return dref.factors(p, *key, B * NH * Tq, Tk).reshape(B, NH, Tq, Tk)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_backward_vs_masked_reference(backend, dtype, threads, rng, case, causal):
    B, Tq, Tk, NH, HS = case
    if causal and Tq > Tk:
        pytest.skip("causal needs Tq <= Tk")
    p, key = 0.3, (int(rng.integers(2**32)), int(rng.integers(1000)), 2, 1)
    d = ops.Dropout(p, seed=key[0], step=key[1], layer=key[2], site=key[3])
    q, rq = backend.put_and_values(randn(rng, B, Tq, NH, HS), dtype)
    k, rk = backend.put_and_values(randn(rng, B, Tk, NH, HS), dtype)
    v, rv = backend.put_and_values(randn(rng, B, Tk, NH, HS), dtype)
    dout, rdo = backend.put_and_values(randn(rng, B, Tq, NH, HS), dtype)
    Z = mask_factors(p, key, B, NH, Tq, Tk)
    eout, else_, edq, edk, edv = reference(rq, rk, rv, causal, Z, rdo)
    what = f"attention dropout {case_id(case)} causal={causal} {dtype}"
    out, lse = backend.poison((B, Tq, NH, HS), dtype), backend.poison((B, NH, Tq))
    ops.attention_forward(q, k, v, causal=causal, out=out, lse=lse, dropout=d)
    s = np.sqrt(Tk) * 1.5  # sums over up to Tk keys, with factors up to 1/(1-p)
    backend.assert_close(out, eout, dtype, s, what + " out")
    backend.assert_close(lse, else_, dtype, s, what + " lse (the undropped scores')")
    dq, dk, dv = ops.attention_backward(dout, q, k, v, out, lse, causal=causal, dropout=d)
    for name, got, exp in (("dq", dq, edq), ("dk", dk, edk), ("dv", dv, edv)):
        backend.assert_close(got, exp, dtype, s * max(1.0, np.abs(exp).max()), f"{what} {name}")


@on_backends(threads=True)
@pytest.mark.parametrize("T", [5, 70, 200])
def test_packed_layout(backend, threads, rng, T):
    B, NH, HS = 2, 2, 16
    qkv, rqkv = backend.put_and_values(randn(rng, B, T, 3, NH, HS))
    d = ops.Dropout(0.5, seed=3, step=4, layer=5, site=1)
    Z = mask_factors(0.5, (3, 4, 5, 1), B, NH, T, T)
    dout, rdo = backend.put_and_values(randn(rng, B, T, NH, HS))
    eout, _, edq, edk, edv = reference(rqkv[:, :, 0], rqkv[:, :, 1], rqkv[:, :, 2], True, Z, rdo)
    out, lse = ops.attention_forward(qkv, dropout=d)
    backend.assert_close(out, eout, scale=np.sqrt(T) * 2, what="packed out")
    dqkv = ops.attention_backward(dout, qkv, None, None, out, lse, dropout=d)[0]
    backend.assert_close(dqkv, np.stack([edq, edk, edv], axis=2), scale=np.sqrt(T) * 2 * max(1, np.abs(edq).max()),
                         what="packed dqkv")


@on_backends()
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("Tq", [4, 40])
def test_gradient_at_fixed_mask_vs_finite_differences(backend, rng, causal, Tq):
    """The kernels' gradient of loss = sum(w * out) with the mask held fixed, against central differences of the
    float64 reference that applies the same mask."""
    B, NH, HS, p = 1, 2, 3, 0.4
    key = (11, 2, 0, 1)
    d = ops.Dropout(p, seed=11, step=2, layer=0, site=1)
    qkv = randn(rng, B, Tq, 3, NH, HS)
    q, k, v = (np.ascontiguousarray(qkv[:, :, i]) for i in range(3))
    w = randn(rng, B, Tq, NH, HS)
    Z = mask_factors(p, key, B, NH, Tq, Tq)
    qd, kd, vd = map(backend.put, (q, k, v))
    out, lse = ops.attention_forward(qd, kd, vd, causal=causal, dropout=d)
    grads = ops.attention_backward(backend.put(w), qd, kd, vd, out, lse, causal=causal, dropout=d)
    losses = [
        (q, lambda x: (reference(x, k, v, causal, Z)[0] * w).sum()),
        (k, lambda x: (reference(q, x, v, causal, Z)[0] * w).sum()),
        (v, lambda x: (reference(q, k, x, causal, Z)[0] * w).sum()),
    ]
    for name, got, (x, loss) in zip(("dq", "dk", "dv"), grads, losses):
        got = backend.get(got).reshape(-1)
        coords = rng.choice(x.size, size=10, replace=False)
        fd = central_difference(loss, x, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * max(np.abs(got).max(), 1e-3), f"[{backend}] {name}: {err}"


def test_thread_count_and_path_do_not_change_the_mask(rng):
    """Every CPU path (whose tilings differ) and both thread counts apply the same mask: outputs agree to rounding,
    and a row's dropped keys are the same (checked through v = one-hot columns: out[.., j] = Z_ij P_ij)."""
    import gptx
    from gptx import _core

    B, T, NH = 1, 150, 2
    HS = T  # v_j = e_j: out[b, i, h, j] = P_ij Z_ij exactly shows the mask
    q = randn(rng, B, T, NH, HS) * 0.1
    k = randn(rng, B, T, NH, HS) * 0.1
    v = np.zeros((B, T, NH, HS), np.float32)
    for j in range(T):
        v[0, j, :, j] = 1.0
    d = ops.Dropout(0.5, seed=5, step=6, layer=7, site=1)
    Z = mask_factors(0.5, (5, 6, 7, 1), B, NH, T, T)
    kept_ref = np.transpose(Z, (0, 2, 1, 3)) != 0  # (B, T, NH, T)
    visible = np.transpose(np.broadcast_to(causal_mask(T, T), (B, NH, T, T)), (0, 2, 1, 3))
    before_isa, before_threads = _core.cpu_isa(), gptx.get_num_threads()
    try:
        outs = []
        for isa in _core.available_cpu_isas():
            _core.set_cpu_isa(isa)
            for n in (1, 2):
                gptx.set_num_threads(n)
                out = np.asarray(ops.attention_forward(q, k, v, dropout=d)[0]).copy()
                np.testing.assert_array_equal(out != 0, kept_ref & visible, err_msg=f"{isa} t{n}")
                outs.append(out)
    finally:
        _core.set_cpu_isa(before_isa)
        gptx.set_num_threads(before_threads)
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], rtol=1e-5, atol=1e-7)


@on_backends()
def test_dropout_zero_is_the_plain_kernel(backend, rng):
    qkv = backend.put(randn(rng, 2, 45, 3, 2, 16))
    a = ops.attention_forward(qkv)
    b = ops.attention_forward(qkv, dropout=ops.Dropout(0.0, seed=9))
    backend.assert_equal(a[0], b[0], "p = 0: the same output")
    backend.assert_equal(a[1], b[1], "p = 0: the same lse")
