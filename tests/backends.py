"""The backends every op case table runs on (each CPU kernel path, the scalar C++ reference, CUDA) and how a test
moves its NumPy inputs onto one of them and its results back.

A case table is written once and decorated with @on_backends(...): pytest then runs it once per (backend, dtype,
thread count), with ids such as test_forward[cpu-avx2-t2-...] or test_forward[cuda-bfloat16-...]. A backend this
machine cannot run (an ISA the CPU lacks, CUDA without a device) is reported as skipped with the reason, never silently
dropped, so a run shows exactly what it did not cover.
"""
import numpy as np
import pytest

import gptx
from gptx import _core
from tolerances import assert_close

FLOAT_DTYPES = ("float32", "bfloat16", "float16")
HALF_DTYPES = ("bfloat16", "float16")  # stored as 16 bits, exact in float32 and float64 on the way back


class Backend:
    """One place an op can run. `kind` ("cpu" or "cuda") is the device and the tolerance table's backend key."""

    def __init__(self, id, kind, isa=None, dtypes=("float32",), thread_counts=(None,)):
        self.id = id
        self.kind = kind
        self.isa = isa  # the gptx._core CPU path ("generic", "avx2", "avx512", "reference"); None on CUDA
        self.dtypes = dtypes  # floating dtypes the ops accept here; CPU kernels are float32 only
        self.thread_counts = thread_counts  # CPU paths split work over OpenMP threads: 1 and 2 take different code

    def __repr__(self):
        return self.id

    def unavailable(self):
        """Why this machine cannot run the backend, or None. Asked when a test runs: collecting the suite never
        initialises a CUDA driver."""
        if self.kind == "cuda":
            return None if gptx.cuda.is_available() else "no CUDA device"
        if self.isa not in _core.available_cpu_isas():
            return f"this CPU cannot run the {self.isa} kernels"
        return None

    def select(self):
        """Make the CPU ops run on this path; returns what to restore afterwards."""
        if self.isa is None:
            return None
        before = _core.cpu_isa()
        _core.set_cpu_isa(self.isa)
        return before

    # ----------------------------------------------------------------------------------------------- moving data
    def put(self, x, dtype="float32"):
        """x on this backend: float arrays go through float32 and are rounded once to `dtype`; ints keep theirs.

        The CPU gets a fresh C-contiguous NumPy array (the ops take those directly and write outputs into them);
        CUDA gets a gptx.Tensor. A copy either way, so the caller's array stays a valid reference input.
        """
        a = np.array(x, copy=True, order="C")
        if a.dtype.kind == "f":
            a = a.astype(np.float32, copy=False)
        if self.kind == "cpu":
            assert dtype == "float32" or a.dtype.kind != "f", f"{self.id} runs float32 only, not {dtype}"
            return a
        t = gptx.Tensor(a).to(self.kind)
        return t.to(dtype) if a.dtype.kind == "f" and dtype != "float32" else t

    def get(self, t):
        """A float64 NumPy copy of t's values, wherever t lives."""
        if isinstance(t, gptx.Tensor):
            if str(t.dtype) in HALF_DTYPES:
                t = t.to("float32")
            t = t.to("cpu")
        return np.array(t, dtype=np.float64)

    def put_and_values(self, x, dtype="float32"):
        """(x on this backend in `dtype`, its rounded values in float64): references start from what the kernel sees."""
        t = self.put(x, dtype)
        return t, self.get(t)

    def poison(self, shape, dtype="float32"):
        """An output buffer full of NaN: an element the kernel forgets to write fails the comparison."""
        return self.full(shape, np.nan, dtype)

    def full(self, shape, value, dtype="float32"):
        if self.kind == "cpu":
            return np.full(shape, value, dtype=np.float32)
        t = gptx.Tensor.empty(list(shape), dtype, self.kind)
        t.fill_(float(value))
        return t

    # ------------------------------------------------------------------------------------------------ comparing
    def assert_close(self, got, expected, dtype="float32", scale=1.0, what=""):
        """got (on this backend) vs a float64 reference, within the (backend, dtype) row of tests/tolerances.py."""
        assert_close(self.get(got), expected, backend=self.kind, dtype=dtype, scale=scale, what=f"[{self.id}] {what}")

    def assert_equal(self, x, y, what=""):
        np.testing.assert_array_equal(self.get(x), self.get(y), err_msg=f"[{self.id}] {what}")


CPU_THREADS = (1, 2)
BACKENDS = (
    Backend("cpu-generic", "cpu", isa="generic", thread_counts=CPU_THREADS),
    Backend("cpu-avx2", "cpu", isa="avx2", thread_counts=CPU_THREADS),
    Backend("cpu-avx512", "cpu", isa="avx512", thread_counts=CPU_THREADS),
    Backend("cpu-reference", "cpu", isa="reference", thread_counts=CPU_THREADS),
    Backend("cuda", "cuda", dtypes=FLOAT_DTYPES),
)


def large(*values):
    """A case row sized for a GPU's launch geometry (every SM busy, grid-stride loops over 1M+ elements).

    It runs on every backend like any other row, but is marked `slow`: on the CPU it costs several times what the rows
    past the kernels' parallel threshold cost and exercises the same code, so `-m "not slow"` gives a quick loop.
    """
    return pytest.param(*values, marks=pytest.mark.slow)


def on_backends(dtypes=None, threads=False, kinds=("cpu", "cuda"), exclude=()):
    """Parametrise a test over every backend of `kinds`.

    dtypes: the floating dtypes this case supports; each backend runs those it has (the CPU float32, CUDA also the
        16-bit ones) and the test takes a `dtype` argument. None: float32 only, no argument.
    threads: CPU backends run at 1 and 2 threads (the test takes `threads`; None on CUDA).
    kinds: ("cpu",) or ("cuda",) for a property of one device (e.g. results independent of the thread count).
    exclude: backend ids a property does not hold for by design (say why next to the test).
    """
    names = ["backend"] + (["dtype"] if dtypes else []) + (["threads"] if threads else [])
    params = []
    for b in BACKENDS:
        if b.kind not in kinds or b.id in exclude:
            continue
        for dtype in [d for d in (dtypes or ("float32",)) if d in b.dtypes]:
            for n in (b.thread_counts if threads else (None,)):
                values = [b] + ([dtype] if dtypes else []) + ([n] if threads else [])
                pid = "-".join([b.id] + ([dtype] if dtypes else []) + ([f"t{n}"] if n else []))
                marks = [pytest.mark.gpu] if b.kind == "cuda" else []
                params.append(pytest.param(*values, id=pid, marks=marks))
    indirect = [n for n in names if n != "dtype"]
    return pytest.mark.parametrize(names, params, indirect=indirect)
