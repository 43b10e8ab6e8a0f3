"""One simulated node, deployed once per test session, shared by the integration tests.

Booting and deploying a node takes minutes the first time on a machine (apt downloads ~2 GB of
Debian's NVIDIA packages into a cache that later runs reuse), so the whole session shares one
deployed node and every test leaves it as it found it (healthy scenario, lock applied).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox.sim import target
from gpubox.sim.standin import Server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STANDIN_PORT = 38799  # fixed, so the node spec (which records the URL) is the same every run
HEALTHY = "pg199-quad-debian13"

pytestmark = pytest.mark.sim


def gpubox(*args, env=None, check=True, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "gpubox"), *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"gpubox {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def sim_home(tmp_path_factory):
    """A private GPUBOX_SIM_HOME for the session; every target in it is purged at the end."""
    home = tmp_path_factory.mktemp("gpubox-sim")
    old = os.environ.get("GPUBOX_SIM_HOME")
    os.environ["GPUBOX_SIM_HOME"] = str(home)
    yield home
    for t in target.list_targets():
        target.down(t.name, purge=True)
    if old is None:
        os.environ.pop("GPUBOX_SIM_HOME", None)
    else:
        os.environ["GPUBOX_SIM_HOME"] = old


@pytest.fixture(scope="session")
def standin():
    server = Server(port=STANDIN_PORT)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def deploy_env(sim_home, standin):
    """Environment for ``pyinfra inventories/sim.py deploy.py`` against the session's node."""
    return {
        **os.environ,
        "GPUBOX_SIM_HOME": str(sim_home),
        "GPUBOX_NCCL_TESTS_URL": standin.url,
        "GPUBOX_NCCL_TESTS_SHA256": standin.sha256,
        "GPUBOX_NCCL_TESTS_VERSION": "0.0.0-standin",
    }


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


@pytest.fixture(scope="session")
def node(sim_home, deploy_env):
    """A booted simulated PG199 node with the whole deploy applied; its first deploy's output."""
    booted = target.up("node0", scenario=HEALTHY)
    first = deploy(deploy_env)
    assert first.returncode == 0, (
        f"first deploy failed:\n{first.stdout[-4000:]}\n{first.stderr[-2000:]}"
    )
    booted.first_deploy = first
    return booted


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
