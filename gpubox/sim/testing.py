"""Helpers for driving a simulated node from tests: deploy, check, compare (a gpubox checkout).

Used by gpubox's own integration tests; handy for anyone testing changes to tasks or checks
against ``gpubox sim`` nodes. They run the real commands (pyinfra, pytest, ssh) as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout: deploy.py, inventories/, checks/
BIN = Path(sys.executable).parent
# Fixed, so the node spec (which records the URL) is the same every run; override to run two
# test sessions side by side.
STANDIN_PORT = int(os.environ.get("GPUBOX_STANDIN_PORT", "38799"))
# The stand-in CUDA repository's port (gpubox.sim.cuda_repo), fixed for the same reason.
CUDA_REPO_PORT = int(os.environ.get("GPUBOX_CUDA_REPO_PORT", "38800"))
HEALTHY = "pg199-quad-debian13"
HEALTHY_CUDA_REPO = "pg199-quad-cuda-repo"
# The integration tests' node; another name lets two test sessions share the machine (nspawn
# machine names are machine-wide).
NODE_NAME = os.environ.get("GPUBOX_TEST_NODE_NAME", "node0")


def deploy(env, *extra, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "pyinfra"), "-y", "inventories/sim.py", "deploy.py", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def changed_ops(result: subprocess.CompletedProcess) -> list[str]:
    """Names of the operations a ``--json`` deploy reports as changed."""
    start = result.stdout.index('{"plan"')
    doc, _ = json.JSONDecoder().raw_decode(result.stdout[start:])
    return [op["name"] for op in doc["results"]["operations"] if op["success"]]


def ssh(t, command: str, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(t.ssh_command(command), capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command!r} on {t.name} exited {result.returncode}:\n{result.stderr}"
        )
    return result


def run_checks(env, *args, results: Path, marker="quick") -> tuple[int, dict]:
    """``pytest checks/ --inventory inventories/sim.py`` as a user runs it; (exit code, results)."""
    cmd = [
        str(BIN / "pytest"),
        "checks/",
        "-m",
        marker,
        "--inventory",
        "inventories/sim.py",
        "-p",
        "no:cacheprovider",
        "-q",
        "--results-json",
        str(results),
        "--junitxml",
        str(results.with_suffix(".xml")),
        *args,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert results.is_file(), f"no results written:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return proc.returncode, json.loads(results.read_text())


def failed_ids(results: dict) -> set[str]:
    return {c["id"].split("::")[-1] for c in results["checks"] if c["outcome"] == "failed"}
