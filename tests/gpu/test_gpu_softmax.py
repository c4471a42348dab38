"""CUDA softmax_forward / softmax_backward vs NumPy float64: scale, causal (Tq == L and Tq < L), -inf rows, large
logits, in place, warp-per-row (L <= 1024) and block-per-row (up to the 50304-wide vocab) kernels."""
import numpy as np
import pytest

import gptx

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gptx.cuda.is_available(), reason="no CUDA device")]

from conftest import randn  # noqa: E402
from gptx import ops  # noqa: E402
from gpu_util import dev_and_values, host, poison  # noqa: E402
from reference import causal_mask, softmax, softmax_backward  # noqa: E402
from tolerances import assert_close  # noqa: E402

DTYPES = ["float32", "bfloat16"]
CASES = [
    ((1, 1), False), ((3, 17), False), ((2, 5, 97), False), ((37, 1001), False), ((9, 1024), False),
    ((5, 1025), False), ((3, 50304), False),
    ((1, 1, 1), True), ((2, 17, 17), True), ((3, 5, 17), True), ((1, 1, 97), True), ((2, 3, 97, 131), True),
    ((1, 7, 1100), True),
]
CASE_IDS = [f"{'causal' if c else 'full'}-{s}" for s, c in CASES]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_forward(rng, shape, causal, scale, dtype):
    x, xh = dev_and_values(randn(rng, *shape, scale=2.0), dtype)
    out = poison(shape, dtype)
    ops.softmax_forward(x, scale=scale, causal=causal, out=out)
    got = host(out)
    assert_close(got, softmax(xh, scale, causal), backend="cuda", dtype=dtype,
                 what=f"cuda softmax_forward {shape} causal={causal} scale={scale} {dtype}")
    if causal:
        assert (got[..., ~causal_mask(shape[-2], shape[-1])] == 0).all(), "masked entries must be exactly 0"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_forward_large_logits(rng, causal, dtype):
    shape = (4, 13, 37)
    sign = np.where(rng.random((4, 13, 1)) < 0.5, -1.0, 1.0)
    x = (1e4 * sign + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    x[0, 0, ::2] *= -1
    xd, xh = dev_and_values(x, dtype)
    out = poison(shape, dtype)
    ops.softmax_forward(xd, scale=1.0, causal=causal, out=out)
    got = host(out)
    assert np.isfinite(got).all()
    assert_close(got, softmax(xh, 1.0, causal), backend="cuda", dtype=dtype,
                 what=f"cuda softmax_forward large logits causal={causal} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("L", [19, 2000])
def test_forward_all_neg_inf_row(rng, causal, dtype, L):
    Tq = 5
    x = randn(rng, 2, Tq, L)
    x[0, 1, :] = -np.inf
    x[1, 3, : 3 + (L - Tq) + 1] = -np.inf  # every kept entry of this row
    xd, xh = dev_and_values(x, dtype)
    out = poison(x.shape, dtype)
    ops.softmax_forward(xd, causal=causal, out=out)
    got = host(out)
    assert (got[0, 1] == 0).all()
    if causal:
        assert (got[1, 3] == 0).all()
    assert_close(got, softmax(xh, 1.0, causal), backend="cuda", dtype=dtype,
                 what=f"cuda softmax_forward -inf rows causal={causal} L={L} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L", [97, 50304])
def test_forward_in_place(rng, dtype, L):
    x, xh = dev_and_values(randn(rng, 7, L), dtype)
    expected = softmax(xh, 0.5)
    ops.softmax_forward(x, scale=0.5, out=x)
    assert_close(host(x), expected, backend="cuda", dtype=dtype, what=f"cuda softmax_forward in place L={L}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,causal", CASES, ids=CASE_IDS)
def test_backward(rng, shape, causal, dtype):
    scale = 0.37
    out, outh = dev_and_values(softmax(randn(rng, *shape), scale, causal), dtype)
    dout, douth = dev_and_values(randn(rng, *shape), dtype)
    dinp = poison(shape, dtype)
    ops.softmax_backward(dout, out, scale=scale, dinp=dinp)
    assert_close(host(dinp), softmax_backward(douth, outh, scale), backend="cuda", dtype=dtype,
                 scale=np.sqrt(shape[-1]), what=f"cuda softmax_backward {shape} causal={causal} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L", [33, 50304])
def test_backward_in_place(rng, dtype, L):
    out, outh = dev_and_values(softmax(randn(rng, 5, L)), dtype)
    dout, douth = dev_and_values(randn(rng, 5, L), dtype)
    expected = softmax_backward(douth, outh, 2.0)
    ops.softmax_backward(dout, out, scale=2.0, dinp=dout)
    assert_close(host(dout), expected, backend="cuda", dtype=dtype, scale=np.sqrt(L),
                 what=f"cuda softmax_backward in place (dinp is dout) L={L}")


def test_deterministic_rerun(rng):
    x, _ = dev_and_values(randn(rng, 2, 37, 1001), "float32")
    dout, _ = dev_and_values(randn(rng, 2, 37, 1001), "float32")
    runs = []
    for _ in range(2):
        out = ops.softmax_forward(x, scale=0.3, causal=True)
        runs.append((host(out).copy(), host(ops.softmax_backward(dout, out, scale=0.3)).copy()))
    for x1, x2 in zip(*runs):
        np.testing.assert_array_equal(x1, x2)
