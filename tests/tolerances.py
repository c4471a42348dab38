"""The one tolerance table of the test suite, keyed by (backend, dtype), and the comparison that uses it.

A kernel is compared with a float64 reference. `scale` is the magnitude of the terms that were summed into one output
(e.g. sqrt(K) * |a| * |b| for a matmul of length K): reductions that reorder sums then get an absolute allowance in
proportion, in the spirit of flash-attention's rule (error at most ~2x that of a naive same-precision sum).
"""
import numpy as np

# (backend, dtype) -> (rtol, atol)
TOLERANCES = {
    ("cpu", "float32"): (2e-5, 2e-6),
    ("cpu", "bfloat16"): (1.6e-2, 1e-3),
    ("cuda", "float32"): (1e-4, 1e-5),  # TF32 paths get their own row when they exist
    ("cuda", "bfloat16"): (4e-2, 4e-3),
    ("cuda", "float16"): (5e-3, 5e-4),
}

# Finite differences of a float64 reference vs a float32 gradient: central differences with h ~ 1e-4 and float32
# kernels leave ~1e-3 relative error; this bound is separate from the kernel table above.
FINITE_DIFFERENCE_RTOL = 2e-3


def tolerance(backend="cpu", dtype="float32"):
    return TOLERANCES[(backend, dtype)]


def assert_close(actual, expected, backend="cpu", dtype="float32", scale=1.0, what=""):
    """Elementwise |actual - expected| <= atol * scale + rtol * |expected|, and no NaN anywhere."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual).any(), f"{what}: NaN in the result (an output element was not written?)"
    rtol, atol = tolerance(backend, dtype)
    err = np.abs(actual - expected)
    bound = atol * scale + rtol * np.abs(expected)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements off (backend={backend}, dtype={dtype}, "
            f"rtol={rtol}, atol={atol}*{scale:.3g}); worst at {i}: got {actual[i]!r}, expected {expected[i]!r}, "
            f"max abs err {err.max():.3g}"
        )
