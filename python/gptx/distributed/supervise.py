"""`python -m gptx.distributed.supervise CMD...`: run one rank's command as a child and, when a signal kills it, say
which rank died before the launcher tears the job down (the launcher itself only names a process id).
`gptx train --nproc N` starts every rank this way."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def rank_from_env() -> str:
    for v in _RANK_VARS:
        if v in os.environ:
            return os.environ[v]
    return "?"


def _terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no terminal
        return False


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print("usage: python -m gptx.distributed.supervise COMMAND [ARGS...]", file=sys.stderr)
        return 2
    # close_fds=False: the rank talks to the launcher over descriptors it inherits (MPICH's PMI_FD)
    child = subprocess.Popen(argv, close_fds=False)
    for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, lambda n, _f: child.send_signal(n))
    # Ctrl-C in a terminal reaches the whole foreground process group, the rank included: forwarding it too would
    # make it a second Ctrl-C (which aborts instead of saving). Forward it only when it came from the launcher.
    signal.signal(signal.SIGINT, signal.SIG_IGN if _terminal_foreground() else lambda n, _f: child.send_signal(n))
    rc = child.wait()
    if rc < 0:
        name = signal.Signals(-rc).name
        print(f"gptx.distributed: rank {rank_from_env()} (pid {child.pid}) was killed by {name}; the job ends",
              file=sys.stderr, flush=True)
        return 128 - rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
