"""The guard between ``gpubox burn`` and gpu-burn: gpu-burn never outlives the wrapper.

``python -m gpubox.burn_guard PROGRAM ARGS...`` runs PROGRAM and waits for it. :func:`gpubox.burn.run`
starts the guard as the leader of a new session (so the guard, PROGRAM and everything PROGRAM
forks share one process group) with ``PR_SET_PDEATHSIG`` = SIGTERM, so the wrapper's death
reaches the guard as SIGTERM however the wrapper dies, SIGKILL included. SIGTERM, SIGHUP and
SIGINT make the guard SIGKILL the whole group: gpu-burn, its per-GPU workers, its nvidia-smi
poller, and the guard itself. PROGRAM gets ``PR_SET_PDEATHSIG`` = SIGKILL too, so it dies if
the guard is killed on its own. Standard library only and nothing heavy imported: it starts in a
fraction of a second.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

GUARD_MODULE = "gpubox.burn_guard"
PARENT_ENV = "GPUBOX_BURN_PARENT"  # the wrapper's pid: a guard whose parent is already gone quits
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int, parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: this child gets ``sig`` when its parent dies (and quits if it already has)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    return preexec


def guard_main(argv: list[str]) -> int:
    """Run PROGRAM (``argv``); on SIGTERM, SIGHUP or SIGINT kill our whole process group."""

    def kill_all(_signum=None, _frame=None):
        os.killpg(0, signal.SIGKILL)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, kill_all)
    parent = int(os.environ.get(PARENT_ENV, "0") or 0)
    if parent and os.getppid() != parent:
        kill_all()
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(signal.SIGKILL, os.getpid())
        )
    except OSError as exc:
        print(f"gpubox burn: cannot start {argv[0]}: {exc.strerror or exc}", flush=True)
        return 127
    code = proc.wait()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m gpubox.burn_guard PROGRAM [ARGS...] (started by `gpubox burn`)")
        sys.exit(2)
    sys.exit(guard_main(sys.argv[1:]))
