"""dropout_forward / dropout_backward on every backend: the mask is the generator's (tests/dropout_reference.py, bit
for bit, whatever the thread count), kept elements are exactly x * float32(1/(1-p)), the keep fraction is binomial."""
import numpy as np
import pytest

import dropout_reference as dref
from backends import large, on_backends
from conftest import randn
from gptx import ops

DTYPES = ("float32", "bfloat16")
SHAPES = [(1,), (3, 1), (5, 17), (7, 97), (3, 5, 33), (41, 1001), large((64, 4097))]
PS = [0.1, 0.5, 0.9]


def spec(p, rng):
    seed, step, layer, site = (int(v) for v in rng.integers(0, 2**31, size=4))
    return ops.Dropout(p, seed=seed, step=step, layer=layer % 48, site=site % 4), (seed, step, layer % 48, site % 4)


def reference_mask(p, key, shape):
    cols = shape[-1]
    rows = int(np.prod(shape)) // cols
    return dref.keep_mask(p, *key, rows, cols).reshape(shape)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_mask_and_scale(backend, dtype, threads, rng, shape, p):
    d, key = spec(p, rng)
    x, rx = backend.put_and_values(randn(rng, *shape), dtype)
    out = backend.poison(shape, dtype)
    r = ops.dropout_forward(x, d, out=out)
    backend.assert_equal(r, out, "the returned tensor is out")
    keep = reference_mask(p, key, shape)
    got = backend.get(out)
    np.testing.assert_array_equal(got != 0, keep, err_msg=f"[{backend}] mask differs from the generator's")
    expected = np.where(keep, (rx.astype(np.float32) * dref.scale(p)).astype(np.float64), 0.0)
    if dtype == "float32":  # one float32 product per kept element: exact
        np.testing.assert_array_equal(got, expected, err_msg=f"[{backend}] kept elements are not x * 1/(1-p)")
    else:
        backend.assert_close(out, expected, dtype, what=f"dropout_forward {shape} {dtype}")
    # x / (1 - p) up to the two float32 roundings (the factor, the product)
    p32 = float(np.float32(p))
    np.testing.assert_allclose(got[keep], rx[keep] / (1.0 - p32), rtol=2.5e-7 if dtype == "float32" else 1e-2)


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(3, 33), (41, 1001)], ids=str)
@pytest.mark.parametrize("in_place", ["none", "inp", "residual"])
def test_forward_residual(backend, dtype, threads, rng, shape, in_place):
    d, key = spec(0.3, rng)
    x, rx = backend.put_and_values(randn(rng, *shape), dtype)
    res, rres = backend.put_and_values(randn(rng, *shape, scale=2.0), dtype)
    out = {"none": backend.poison(shape, dtype), "inp": x, "residual": res}[in_place]
    ops.dropout_forward(x, d, residual=res, out=out)
    keep = reference_mask(0.3, key, shape)
    dropped = np.where(keep, rx.astype(np.float32) * dref.scale(0.3), np.float32(0))
    expected = (rres.astype(np.float32) + dropped.astype(np.float32)).astype(np.float64)
    if dtype == "float32":  # the product rounded, then the sum rounded: no fused multiply-add
        np.testing.assert_array_equal(backend.get(out), expected, err_msg=f"[{backend}] residual + dropout")
    else:
        backend.assert_close(out, expected, dtype, scale=4.0, what=f"dropout_forward residual {shape}")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(7, 97), (41, 1001)], ids=str)
def test_backward_is_the_forward_mask(backend, dtype, threads, rng, shape):
    d, key = spec(0.25, rng)
    dout, rd = backend.put_and_values(randn(rng, *shape), dtype)
    keep = reference_mask(0.25, key, shape)
    dinp = backend.poison(shape, dtype)
    ops.dropout_backward(dout, d, dinp=dinp)
    expected = np.where(keep, (rd.astype(np.float32) * dref.scale(0.25)).astype(np.float64), 0.0)
    backend.assert_close(dinp, expected, dtype, what="dropout_backward")
    ops.dropout_backward(dout, d, dinp=dout)  # in place
    backend.assert_equal(dout, dinp, "in place")


@on_backends(threads=True)
@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_keep_fraction_binomial(backend, threads, rng, p):
    n_rows, n_cols = 400, 1000
    d, _ = spec(p, rng)
    out = backend.get(ops.dropout_forward(backend.full((n_rows, n_cols), 1.0), d))
    n = n_rows * n_cols
    kept = np.count_nonzero(out)
    # 6 standard deviations of Binomial(n, 1 - p): a correct generator fails this about once in 5e8 runs
    assert abs(kept - n * (1 - p)) <= 6 * np.sqrt(n * p * (1 - p)), (kept, n * (1 - p))
    # every row and every column keeps its share too (no structure along either axis)
    per_row = np.count_nonzero(out, axis=1)
    assert abs(per_row.mean() - n_cols * (1 - p)) <= 6 * np.sqrt(n_cols * p * (1 - p) / n_rows)
    assert np.unique(out[out != 0]).tolist() == [float(dref.scale(p))]


@on_backends()
def test_keys_give_independent_masks(backend, rng):
    """Changing any one of seed, step, layer, site gives another mask: the two agree as often as independent draws."""
    p, n = 0.5, (200, 500)
    base = dict(seed=7, step=3, layer=2, site=1)
    ones = backend.full(n, 1.0)
    m0 = backend.get(ops.dropout_forward(ones, ops.Dropout(p, **base))) != 0
    for field in base:
        other = dict(base, **{field: base[field] + 1})
        m1 = backend.get(ops.dropout_forward(ones, ops.Dropout(p, **other))) != 0
        agree = np.mean(m0 == m1)
        assert abs(agree - 0.5) <= 6 * np.sqrt(0.25 / m0.size), (field, agree)


@on_backends(dtypes=DTYPES)
def test_p_zero_is_identity(backend, dtype, rng):
    x, rx = backend.put_and_values(randn(rng, 5, 33), dtype)
    res, rres = backend.put_and_values(randn(rng, 5, 33), dtype)
    backend.assert_equal(ops.dropout_forward(x, ops.Dropout(0.0, seed=3)), x, "p = 0 copies")
    backend.assert_close(ops.dropout_forward(x, ops.Dropout(0.0), residual=res), rx + rres, dtype, what="p = 0 add")
    backend.assert_equal(ops.dropout_forward(x, None), x, "dropout None copies")


def test_thread_count_does_not_change_masks(rng):
    import gptx

    x = randn(rng, 300, 257)
    d = ops.Dropout(0.37, seed=99, step=12345, layer=3, site=2)
    before = gptx.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            gptx.set_num_threads(n)
            results.append(np.asarray(ops.dropout_forward(x, d)).copy())
    finally:
        gptx.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_bad_probability(p):
    with pytest.raises(ValueError, match=r"dropout_forward.*dropout.*\[0, 1\)"):
        ops.dropout_forward(np.ones((2, 3), np.float32), ops.Dropout(p))
    with pytest.raises(ValueError, match=r"attention_forward.*dropout"):
        ops.attention_forward(np.ones((1, 2, 3, 1, 4), np.float32), dropout=ops.Dropout(p))


def test_bad_arguments():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="dropout_forward: argument 'dropout' must be a gptx.ops.Dropout"):
        ops.dropout_forward(x, 0.5)
    with pytest.raises(ValueError, match="dropout_forward.*residual"):
        ops.dropout_forward(x, ops.Dropout(0.5), residual=np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="dropout_backward"):
        ops.dropout_backward(np.ones((2, 3), np.int32), ops.Dropout(0.5))
    with pytest.raises(TypeError):
        ops.Dropout(0.5, seed=-1)  # the seed is an unsigned 64-bit value


def test_float32_threshold_edge():
    """p within float32 rounding of 1 is still < 1 and keeps (almost) nothing; the factor stays finite."""
    p = float(np.nextafter(np.float32(1), np.float32(0)))
    out = np.asarray(ops.dropout_forward(np.ones((4, 1000), np.float32), ops.Dropout(p, seed=1)))
    assert np.isfinite(out).all() and np.count_nonzero(out) <= 2
