"""add_forward (residual add) vs NumPy float64: every ISA, 1 and 2 threads, odd sizes, in place, reference backend."""
import numpy as np
import pytest

from conftest import poisoned, randn
from gptx import ops
from tolerances import assert_close

SHAPES = [(1,), (3,), (17,), (2, 97), (3, 17, 33), (5, 7, 1003), (41, 1001)]  # last two cross the parallel threshold


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_add_forward(isa, threads, rng, shape):
    a, b = randn(rng, *shape), randn(rng, *shape, scale=3.0)
    out = poisoned(shape)
    r = ops.add_forward(a, b, out=out)
    assert_close(out, a.astype(np.float64) + b, what=f"add_forward {shape}")
    np.testing.assert_array_equal(np.asarray(r), out)


@pytest.mark.parametrize("shape", [(17,), (3, 97), (41, 1001)], ids=str)
@pytest.mark.parametrize("which", ["a", "b"])
def test_add_forward_in_place(isa, threads, rng, shape, which):
    a, b = randn(rng, *shape), randn(rng, *shape)
    expected = a.astype(np.float64) + b
    target = a if which == "a" else b
    ops.add_forward(a, b, out=target)
    assert_close(target, expected, what=f"add_forward in place (out is {which}) {shape}")


def test_add_forward_allocates(isa, rng):
    a, b = randn(rng, 3, 17), randn(rng, 3, 17)
    r = np.asarray(ops.add_forward(a, b))
    assert r.shape == (3, 17) and r.dtype == np.float32
    assert_close(r, a.astype(np.float64) + b, what="add_forward (allocated out)")


def test_add_forward_deterministic(isa, threads, rng):
    a, b = randn(rng, 41, 1001), randn(rng, 41, 1001)
    first = np.asarray(ops.add_forward(a, b)).copy()
    second = np.asarray(ops.add_forward(a, b)).copy()
    np.testing.assert_array_equal(first, second)


def test_reference_backend(reference_backend, rng):
    a, b = randn(rng, 7, 33), randn(rng, 7, 33)
    out = poisoned((7, 33))
    ops.add_forward(a, b, out=out)
    assert_close(out, a.astype(np.float64) + b, what="reference add_forward")
