"""The bandwidth tier's measurements on this node: every run of :func:`commands.plan`, one JSON
document (what ``gpubox bench run --json`` prints and the checks judge)::

    {
      "schema": "gpubox.bench/1",
      "host": "home", "gpubox_version": "0.1.0",
      "started": "2025-11-26T07:00:00+00:00", "duration_s": 41.2,
      "log_dir": "/var/log/gpubox/bench/20251126T070000Z-4242",
      "warnings": [],
      "runs": [
        {"name": "bandwidthTest[gpu0]", "tool": "bandwidthTest", "gpus": [0],
         "size": 33554432, "command": [...], "env": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
         "exit_code": 0, "exit_meaning": "success", "timed_out": false, "duration_s": 1.9,
         "log": ".../bandwidthTest-gpu0.log", "ok": true, "errors": [], "parsed": {...}},
        ...
      ]
    }

Raw logs go to ``bench.log_dir/<UTC time>-<pid>/``; the newest :data:`KEEP_RUNS` run folders are
kept, older ones deleted. When ``bench.log_dir`` cannot be written (not root), a temporary folder
is used and a warning says so.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gpubox.bench import commands
from gpubox.bench.wrapper import Progress, run, stderr_progress
from gpubox.spec import NodeSpec

SCHEMA = "gpubox.bench/1"
KEEP_RUNS = 20
_RUN_DIR = re.compile(r"^\d{8}T\d{6}Z-\d+$")


def _run_dir(root: str) -> tuple[Path, str | None]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(root) / f"{stamp}-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        _prune(Path(root), keep=path)
        return path, None
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix=f"gpubox-bench-{stamp}-"))
        return fallback, f"cannot write {root} ({exc.strerror or exc}): raw logs are in {fallback}"


def _prune(root: Path, keep: Path) -> None:
    runs = sorted(p for p in root.iterdir() if p.is_dir() and _RUN_DIR.match(p.name))
    for old in runs[: max(0, len(runs) - KEEP_RUNS)]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def run_tier(
    spec: NodeSpec,
    tools: list[str] | tuple[str, ...] | None = None,
    log_root: str | None = None,
    progress: Progress = stderr_progress,
) -> dict:
    """Run the tier's measurements (``tools`` filters) and return the bench document."""
    from gpubox import __version__

    plan = commands.plan(spec, tools)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    log_dir, warning = _run_dir(log_root or spec.bench.log_dir)
    results = [run(inv, log_dir=log_dir, progress=progress).as_dict() for inv in plan]
    return {
        "schema": SCHEMA,
        "host": spec.host,
        "gpubox_version": __version__,
        "started": started,
        "duration_s": round(time.monotonic() - t0, 3),
        "log_dir": str(log_dir),
        "warnings": [warning] if warning else [],
        "runs": results,
    }
