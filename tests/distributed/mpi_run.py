"""Starting test jobs under MPI: where mpiexec is, whether MPI can start at all here, and one job run with a timeout."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("worker.py")


def _mpi_unavailable():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install 'gptx-engine[mpi]', part of the test extra)"
    from gptx.distributed.launch import find_mpiexec

    if find_mpiexec() is None:
        return "no mpiexec next to this Python or on PATH"
    return None


def mpi_reason():
    """Why MPI cannot start here (None when it can): checked once, by starting one rank."""
    if not hasattr(mpi_reason, "cached"):
        reason = _mpi_unavailable()
        if reason is None:
            r = run_job(1, ["-c", "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() == 1"], timeout=60,
                        script=None)
            if r.returncode != 0:
                reason = f"mpiexec cannot start a rank here: {r.stderr.strip()[-300:]}"
        mpi_reason.cached = reason
    return mpi_reason.cached


def needs_mpi():
    reason = mpi_reason()
    if reason:
        pytest.skip(reason)


def env(**extra):
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run_job(n, args, timeout=120, script=WORKER, extra_env=None, supervised=False):
    """`mpiexec -n n python [script] args` -> CompletedProcess (with .seconds); a job that outlives `timeout` is a
    test failure, never a hang."""
    from gptx.distributed.launch import mpiexec_command

    sup = [sys.executable, "-m", "gptx.distributed.supervise"] if supervised else []
    cmd = mpiexec_command(n) + sup + [sys.executable] + ([str(script)] if script else []) + [str(a) for a in args]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env(**(extra_env or {})))
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"MPI job {args} ran past {timeout} s:\n{e.stdout}\n{e.stderr}") from None
    r.seconds = time.monotonic() - t0
    return r


def check_ok(r):
    assert r.returncode == 0, f"MPI job failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r
