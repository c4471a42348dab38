"""add_forward (residual add) on every backend vs NumPy float64: odd sizes, in place, unaligned views, determinism."""
import numpy as np
import pytest

from backends import large, on_backends
from conftest import randn
from gptx import ops

DTYPES = ("float32", "bfloat16")
# (5, 7, 1003) and (41, 1001) cross the CPU kernels' parallel threshold; (4, 1024, 257) is 1M elements for CUDA
SHAPES = [(1,), (3,), (17,), (2, 97), (3, 5, 33), (3, 17, 33), (7, 33), (5, 7, 1003), (37, 1001), (41, 1001),
          large((4, 1024, 257))]


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_add_forward(backend, dtype, threads, rng, shape):
    (a, ra), (b, rb) = (backend.put_and_values(randn(rng, *shape, scale=s), dtype) for s in (1.0, 3.0))
    out = backend.poison(shape, dtype)
    r = ops.add_forward(a, b, out=out)
    backend.assert_close(out, ra + rb, dtype, what=f"add_forward {shape} {dtype}")
    backend.assert_equal(r, out, "the returned tensor is out")


@on_backends(dtypes=DTYPES, threads=True)
@pytest.mark.parametrize("shape", [(17,), (3, 97), (41, 1001)], ids=str)
@pytest.mark.parametrize("which", ["a", "b"])
def test_add_forward_in_place(backend, dtype, threads, rng, shape, which):
    (a, ra), (b, rb) = (backend.put_and_values(randn(rng, *shape), dtype) for _ in range(2))
    target = a if which == "a" else b
    ops.add_forward(a, b, out=target)
    backend.assert_close(target, ra + rb, dtype, what=f"add_forward in place (out is {which}) {shape} {dtype}")


@on_backends()
def test_add_forward_allocates(backend, rng):
    (a, ra), (b, rb) = (backend.put_and_values(randn(rng, 3, 17)) for _ in range(2))
    r = ops.add_forward(a, b)
    assert tuple(r.shape) == (3, 17) and str(r.dtype) == "float32"
    backend.assert_close(r, ra + rb, what="add_forward (allocated out)")


@on_backends()
def test_add_forward_unaligned(backend, rng):
    # row views starting 101 floats in: not 16-byte aligned, CUDA's element-by-element path
    (a, ra), (b, rb) = (backend.put_and_values(randn(rng, 7, 101)) for _ in range(2))
    backend.assert_close(ops.add_forward(a[1:7], b[1:7]), ra[1:] + rb[1:], what="add_forward unaligned")


@on_backends(threads=True)
def test_add_forward_deterministic(backend, threads, rng):
    a, b = backend.put(randn(rng, 41, 1001)), backend.put(randn(rng, 41, 1001))
    np.testing.assert_array_equal(backend.get(ops.add_forward(a, b)), backend.get(ops.add_forward(a, b)))
