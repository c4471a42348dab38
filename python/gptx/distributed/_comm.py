"""The MPI side of gptx.distributed: the process group (mpi4py, imported only when asked for), waits with a timeout,
and the abort that takes the whole job down when one rank fails."""
from __future__ import annotations

import os
import sys
import time
import traceback

DEFAULT_TIMEOUT_S = 300.0  # a collective waiting longer than this means a rank died or hangs (GPTX_DIST_TIMEOUT)

# Environment variables a launcher sets in every rank: MPICH/Intel MPI (PMI_*), Open MPI, PMIx (Slurm), Slurm srun.
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, mpirun, srun with PMI)."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def import_mpi():
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError("gptx.distributed needs mpi4py and an MPI library: pip install 'gptx-engine[mpi]' "
                          f"(mpi4py + the mpich wheel), or mpi4py built against your cluster's MPI ({e})") from None
    return MPI


def timeout_s() -> float:
    text = os.environ.get("GPTX_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"GPTX_DIST_TIMEOUT must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"GPTX_DIST_TIMEOUT must be > 0 seconds, got {text!r}")
    return value


class Group:
    """The ranks of one job: an MPI communicator (a duplicate of COMM_WORLD, so a user's own MPI traffic never
    matches gptx's) and what the node looks like."""

    def __init__(self):
        MPI = import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.timeout = timeout_s()

    # ---- waiting ------------------------------------------------------------------------------------------------
    def wait(self, request, what: str):
        """Complete one non-blocking request, or abort the job when it takes longer than the timeout: a dead or stuck
        rank must end the run, not hang it. Polling (Test) also drives MPICH's progress engine."""
        if request.Test():
            return
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(f"{what} did not complete within {self.timeout:.0f} s: another rank died or hangs "
                           f"(GPTX_DIST_TIMEOUT sets the limit)")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def wait_all(self, requests, what: str):
        for r in requests:
            self.wait(r, what)

    # ---- failing --------------------------------------------------------------------------------------------------
    def abort(self, message: str, code: int = 1):
        """Print `message` naming this rank and end every rank of the job (MPI_Abort): the others may be blocked in a
        collective that will never complete."""
        print(f"gptx.distributed: rank {self.rank} of {self.size}: {message}; aborting the job", file=sys.stderr,
              flush=True)
        self.comm.Abort(code)


def install_excepthook(group: Group) -> None:
    """An uncaught exception on any rank prints its traceback under the rank's name and aborts the job."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, (KeyboardInterrupt, SystemExit)) or group.size == 1:
            previous(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        print(f"gptx.distributed: rank {group.rank} of {group.size} raised:\n{text}", file=sys.stderr, flush=True)
        group.comm.Abort(1)

    sys.excepthook = hook
