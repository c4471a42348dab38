"""CUDA layernorm_forward/_backward vs NumPy float64 (float32 and bfloat16 activations; weights float32)."""
import numpy as np
import pytest

import gptx
from conftest import randn
from gptx import ops
from gpu_util import dev, host, poison
from reference import f64, layernorm, layernorm_backward
from tolerances import assert_close

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

DTYPES = ["float32", "bfloat16"]
# (leading shape, C): size 1, odd C (scalar path), C a multiple of 8 (16-byte packs), many rows, large C
SHAPES = [((1,), 1), ((3,), 17), ((2, 5), 97), ((197,), 173), ((64,), 768), ((4, 33), 1024), ((3,), 4099)]
IDS = [f"{lead}x{C}" for lead, C in SHAPES]


def inputs(rng, lead, C, dtype, offset=0.0):
    x = dev((randn(rng, *lead, C, scale=2.0) + np.float32(offset)).astype(np.float32), dtype)
    w = (1.0 + randn(rng, C, scale=0.3)).astype(np.float32)
    b = randn(rng, C)
    return x, w, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 3.0])
@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_forward(rng, lead, C, offset, dtype):
    x, w, b = inputs(rng, lead, C, dtype, offset)
    out, mean, rstd = poison((*lead, C), dtype), poison(lead), poison(lead)
    ops.layernorm_forward(x, dev(w), dev(b), eps=1e-5, out=out, mean=mean, rstd=rstd)
    eout, emean, erstd = layernorm(host(x), w, b, 1e-5)
    what = f"cuda layernorm_forward {dtype} {lead}x{C} offset={offset}"
    s = np.sqrt(C) * (1.0 + offset)
    assert_close(host(out), eout, backend="cuda", dtype=dtype, scale=s, what=what + " out")
    assert_close(host(mean), emean, backend="cuda", dtype="float32", scale=s, what=what + " mean")
    assert_close(host(rstd), erstd, backend="cuda", dtype="float32", scale=s, what=what + " rstd")


def test_forward_constant_row(rng):
    x, w, b = inputs(rng, (4,), 37, "float32")
    xn = host(x).astype(np.float32)
    xn[1] = 2.5
    out, mean, rstd = ops.layernorm_forward(dev(xn), dev(w), dev(b), eps=1e-3)
    for name, got, exp in zip(("out", "mean", "rstd"), (out, mean, rstd), layernorm(xn, w, b, 1e-3)):
        assert_close(host(got), exp, backend="cuda", scale=np.sqrt(37), what=f"cuda layernorm constant row {name}")


def check_backward(rng, lead, C, dtype, accumulate):
    x, w, b = inputs(rng, lead, C, dtype)
    _, mean, rstd = ops.layernorm_forward(x, dev(w), dev(b))
    dout = dev(randn(rng, *lead, C), dtype)
    if accumulate:
        bufs = (dev(randn(rng, *lead, C), dtype), dev(randn(rng, C)), dev(randn(rng, C)))
        prev = [host(t) for t in bufs]
    else:
        bufs = (poison((*lead, C), dtype), poison((C,)), poison((C,)))
        prev = [0.0, 0.0, 0.0]
    ops.layernorm_backward(dout, x, dev(w), mean, rstd, dinp=bufs[0], dweight=bufs[1], dbias=bufs[2],
                           accumulate=accumulate)
    xd, dd = host(x), host(dout)
    edinp, edw, edb = layernorm_backward(dd, xd, w)
    _, _, erstd = layernorm(xd, w, b)
    rows = int(np.prod(lead))
    what = f"cuda layernorm_backward {dtype} {lead}x{C} accumulate={accumulate}"
    s = np.sqrt(C) * erstd.max() * np.abs(dd * w).max()
    assert_close(host(bufs[0]), prev[0] + edinp, backend="cuda", dtype=dtype, scale=s, what=what + " dinp")
    # parameter gradients are float32, but they sum bf16-rounded products: the activation dtype's tolerance
    assert_close(host(bufs[1]), prev[1] + edw, backend="cuda", dtype=dtype, scale=np.sqrt(rows), what=what + " dw")
    assert_close(host(bufs[2]), prev[2] + edb, backend="cuda", dtype=dtype, scale=np.sqrt(rows), what=what + " db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,C", SHAPES, ids=IDS)
def test_backward(rng, lead, C, dtype):
    check_backward(rng, lead, C, dtype, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,C", [((3,), 17), ((197,), 173), ((64,), 768)], ids=["3x17", "197x173", "64x768"])
def test_backward_accumulate(rng, lead, C, dtype):
    check_backward(rng, lead, C, dtype, True)


def test_backward_many_rows(rng):
    # more than 64 * 1024 rows: several rows per dweight/dbias chunk
    check_backward(rng, (70001,), 7, "float32", False)


def test_deterministic_rerun(rng):
    x, w, b = inputs(rng, (2000,), 768, "bfloat16")
    dout = dev(randn(rng, 2000, 768), "bfloat16")

    def run():
        out, mean, rstd = ops.layernorm_forward(x, dev(w), dev(b))
        grads = ops.layernorm_backward(dout, x, dev(w), mean, rstd)
        return [host(t) for t in (out, mean, rstd, *grads)]

    for a, c in zip(run(), run()):
        np.testing.assert_array_equal(a, c)
