"""Shared fixtures: the backend an op case table runs on (tests/backends.py), every CPU kernel path (ISA) at 1 and 2
threads, fresh random inputs, NaN-poisoned outputs."""
import os

import numpy as np
import pytest

import gptx
from gptx import _core

ISAS = ("generic", "avx2", "avx512")


@pytest.fixture
def backend(request):
    """The backend given by @on_backends (tests/backends.py), selected for the test and restored afterwards."""
    b = request.param
    reason = b.unavailable()
    if reason:
        pytest.skip(reason)
    before = b.select()
    yield b
    if before is not None:
        _core.set_cpu_isa(before)


@pytest.fixture(params=ISAS)
def isa(request):
    """Run the test on one CPU kernel path; restores the previous one afterwards.

    A path this CPU cannot run is reported as skipped (not silently dropped), so a run on a machine without AVX-512
    shows exactly what it did not cover.
    """
    if request.param not in _core.available_cpu_isas():
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    before = _core.cpu_isa()
    _core.set_cpu_isa(request.param)
    yield request.param
    _core.set_cpu_isa(before)


@pytest.fixture(params=[1, 2], ids=["t1", "t2"])
def threads(request):
    """The CPU thread count for the test; None (a CUDA backend from @on_backends) leaves it alone."""
    if request.param is None:
        yield None
        return
    before = gptx.get_num_threads()
    gptx.set_num_threads(request.param)
    yield request.param
    gptx.set_num_threads(before)


@pytest.fixture
def rng(request):
    """Fresh random inputs each run; the seed is printed so a failure can be replayed with GPTX_TEST_SEED."""
    seed = int(os.environ.get("GPTX_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))
    print(f"GPTX_TEST_SEED={seed} ({request.node.nodeid})")
    return np.random.default_rng(seed)


def poisoned(shape, dtype=np.float32):
    """An output buffer full of NaN: an element the kernel forgets to write fails the comparison."""
    return np.full(shape, np.nan, dtype=dtype)


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)
