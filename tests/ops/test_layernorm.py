"""layernorm_forward / layernorm_backward on every backend vs NumPy float64: out/mean/rstd, dinp/dweight/dbias,
accumulate, constant rows, determinism, gradients by finite differences. Activations are float32 or (CUDA) bfloat16;
weights, mean, rstd and the parameter gradients are float32."""
import numpy as np
import pytest

import gptx
from backends import large, on_backends
from conftest import randn
from gptx import ops
from reference import central_difference, layernorm, layernorm_backward
from tolerances import FINITE_DIFFERENCE_RTOL

DTYPES = ("float32", "bfloat16")
# (leading shape, C): size 1, odd C (CUDA's scalar path), C a multiple of 8 (16-byte packs), many rows, large C.
# (197, 173) is above the CPU's parallel threshold and spans several 64-row chunks of the backward.
SHAPES = [((1,), 1), ((3,), 17), ((2, 5), 97), ((3, 11), 67), ((1,), 1003), ((197,), 173), ((64,), 768),
          ((4, 33), 1024), ((3,), 4099)]
IDS = [f"{lead}x{C}" for lead, C in SHAPES]


def inputs(rng, lead, C, offset=0.0):
    x = (randn(rng, *lead, C, scale=2.0) + np.float32(offset)).astype(np.float32)
    w = (1.0 + randn(rng, C, scale=0.3)).astype(np.float32)
    return x, w, randn(rng, C)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("offset", [0.0, 3.0])
@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_forward(backend, dtype, threads, rng, lead, C, offset):
    x, w, b = inputs(rng, lead, C, offset)
    x, rx = backend.put_and_values(x, dtype)
    bufs = backend.poison((*lead, C), dtype), backend.poison(lead), backend.poison(lead)
    r = ops.layernorm_forward(x, backend.put(w), backend.put(b), eps=1e-5, out=bufs[0], mean=bufs[1], rstd=bufs[2])
    what = f"layernorm_forward {lead}x{C} offset={offset} {dtype}"
    s = np.sqrt(C) * (1.0 + offset)  # mean / variance sum C terms of magnitude |x|
    dtypes = (dtype, "float32", "float32")  # mean and rstd are float32 whatever the activations
    for name, got, exp, dt in zip(("out", "mean", "rstd"), bufs, layernorm(rx, w, b, 1e-5), dtypes):
        backend.assert_close(got, exp, dt, s, f"{what} {name}")
    for got, buf in zip(r, bufs):
        backend.assert_equal(got, buf, what + ": the returned tensors are the buffers")


@on_backends(threads=True)
def test_forward_eps_and_constant_rows(backend, threads, rng):
    # a constant row has variance 0: rstd = 1 / sqrt(eps), out = bias
    x, w, b = inputs(rng, (4,), 37)
    x[1] = 2.5
    got = ops.layernorm_forward(*map(backend.put, (x, w, b)), eps=1e-3)
    for name, g, exp in zip(("out", "mean", "rstd"), got, layernorm(x, w, b, 1e-3)):
        backend.assert_close(g, exp, scale=np.sqrt(37), what=f"layernorm_forward eps=1e-3 constant row {name}")


def check_backward(backend, rng, lead, C, dtype, accumulate):
    x, w, b = inputs(rng, lead, C)
    x, rx = backend.put_and_values(x, dtype)
    wd = backend.put(w)
    _, mean, rstd = ops.layernorm_forward(x, wd, backend.put(b))
    dout, rdout = backend.put_and_values(randn(rng, *lead, C), dtype)
    if accumulate:
        (d0, p0), (d1, p1), (d2, p2) = (backend.put_and_values(randn(rng, *s), dt)
                                        for s, dt in (((*lead, C), dtype), ((C,), "float32"), ((C,), "float32")))
        bufs, prev = (d0, d1, d2), (p0, p1, p2)
    else:
        bufs, prev = (backend.poison((*lead, C), dtype), backend.poison((C,)), backend.poison((C,))), (0.0, 0.0, 0.0)
    r = ops.layernorm_backward(dout, x, wd, mean, rstd, dinp=bufs[0], dweight=bufs[1], dbias=bufs[2],
                               accumulate=accumulate)
    edinp, edw, edb = layernorm_backward(rdout, rx, w)
    rows = int(np.prod(lead))
    what = f"layernorm_backward {lead}x{C} {dtype} accumulate={accumulate}"
    # dinp = rstd * (dnorm - two means over C): terms of magnitude rstd * |dout * weight| (rstd is 1/sqrt(eps) at C=1)
    _, _, erstd = layernorm(rx, w, b)
    s = np.sqrt(C) * erstd.max() * np.abs(rdout * w).max()
    backend.assert_close(bufs[0], prev[0] + edinp, dtype, s, what + " dinp")
    # parameter gradients are float32, but they sum bf16-rounded products: the activation dtype's tolerance
    backend.assert_close(bufs[1], prev[1] + edw, dtype, np.sqrt(rows), what + " dweight")
    backend.assert_close(bufs[2], prev[2] + edb, dtype, np.sqrt(rows), what + " dbias")
    for got, buf in zip(r, bufs):
        backend.assert_equal(got, buf, what + ": the returned tensors are the buffers")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_backward(backend, dtype, threads, rng, lead, C):
    check_backward(backend, rng, lead, C, dtype, False)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("lead,C", [((3,), 17), ((197,), 173), ((64,), 768)], ids=["3x17", "197x173", "64x768"])
def test_backward_accumulate(backend, dtype, threads, rng, lead, C):
    check_backward(backend, rng, lead, C, dtype, True)


@pytest.mark.slow
@on_backends(threads=True)
def test_backward_many_rows(backend, threads, rng):
    # more than 64 * 1024 rows: several rows per dweight/dbias chunk on CUDA
    check_backward(backend, rng, (70001,), 7, "float32", False)


@on_backends()
def test_backward_finite_difference(backend, rng):
    lead, C = (2, 3), 7
    x, w, b = inputs(rng, lead, C)
    wgt = randn(rng, *lead, C)  # loss = sum(wgt * out)
    xd, wd = backend.put(x), backend.put(w)
    _, mean, rstd = ops.layernorm_forward(xd, wd, backend.put(b))
    grads = ops.layernorm_backward(backend.put(wgt), xd, wd, mean, rstd)
    losses = [
        (x, lambda t: (layernorm(t, w, b)[0] * wgt).sum()),
        (w, lambda t: (layernorm(x, t, b)[0] * wgt).sum()),
        (b, lambda t: (layernorm(x, w, t)[0] * wgt).sum()),
    ]
    for name, got, (t, loss) in zip(("dinp", "dweight", "dbias"), grads, losses):
        got = backend.get(got).reshape(-1)
        coords = rng.choice(t.size, size=min(8, t.size), replace=False)
        fd = central_difference(loss, t, coords)
        err = np.abs(got[coords] - fd).max()
        assert err <= FINITE_DIFFERENCE_RTOL * np.abs(got).max(), f"[{backend}] layernorm {name}: fd err {err}"


def ln_run(backend, x, w, b, dout):
    out, mean, rstd = ops.layernorm_forward(x, w, b)
    grads = ops.layernorm_backward(dout, x, w, mean, rstd)
    return [backend.get(t) for t in (out, mean, rstd, *grads)]


@on_backends(kinds=("cpu",))
def test_backward_thread_count_invariant(backend, rng):
    x, w, b = inputs(rng, (197,), 173)
    dout = randn(rng, 197, 173)
    before = gptx.get_num_threads()
    try:
        gptx.set_num_threads(1)
        one = ln_run(backend, x, w, b, dout)
        gptx.set_num_threads(2)
        two = ln_run(backend, x, w, b, dout)
    finally:
        gptx.set_num_threads(before)
    for name, x1, x2 in zip(("dinp", "dweight", "dbias"), one[3:], two[3:]):
        np.testing.assert_array_equal(x1, x2, err_msg=f"[{backend}] layernorm_backward {name}: 1 vs 2 threads")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("rows,C", [(197, 173), large(2000, 768)], ids=str)
def test_deterministic_rerun(backend, dtype, threads, rng, rows, C):
    x, w, b = inputs(rng, (rows,), C)
    x, w, b = backend.put(x, dtype), backend.put(w), backend.put(b)
    dout = backend.put(randn(rng, rows, C), dtype)
    for x1, x2 in zip(ln_run(backend, x, w, b, dout), ln_run(backend, x, w, b, dout)):
        np.testing.assert_array_equal(x1, x2)
