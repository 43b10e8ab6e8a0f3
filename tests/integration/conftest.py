"""One simulated node, deployed once per test session, shared by the integration tests.

Booting and deploying a node takes minutes the first time on a machine (apt downloads ~2 GB of
Debian's NVIDIA packages into a cache that later runs reuse), so the whole session shares one
deployed node and every test leaves it as it found it (healthy scenario, lock applied).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gpubox.sim import target
from gpubox.sim.standin import Server
from gpubox.sim.testing import BIN, HEALTHY, NODE_NAME, STANDIN_PORT, deploy


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
    """A private GPUBOX_SIM_HOME for the session; every target in it is purged at the end.

    ``GPUBOX_TEST_KEEP_NODE=DIR`` keeps the deployed node in DIR between sessions (stopped, not
    purged), for quick iterations while developing; CI never sets it.
    """
    keep = os.environ.get("GPUBOX_TEST_KEEP_NODE")
    home = Path(keep) if keep else tmp_path_factory.mktemp("gpubox-sim")
    old = os.environ.get("GPUBOX_SIM_HOME")
    os.environ["GPUBOX_SIM_HOME"] = str(home)
    yield home
    for t in target.list_targets():
        target.down(t.name, purge=not keep)
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
    return {**os.environ, "GPUBOX_SIM_HOME": str(sim_home), **standin.env()}


@pytest.fixture(scope="session")
def node(sim_home, deploy_env):
    """A booted simulated PG199 node with the whole deploy applied; its first deploy's output."""
    booted = target.up(NODE_NAME, scenario=HEALTHY)
    first = deploy(deploy_env)
    assert first.returncode == 0, (
        f"first deploy failed:\n{first.stdout[-4000:]}\n{first.stderr[-2000:]}"
    )
    booted.first_deploy = first
    # The first deploy installed the driver and says the node must reboot to load it (the
    # clock lock waits for that boot): do what a user does.
    if "reboot the node to load it" in first.stdout + first.stderr:
        booted = target.reboot(booted.name)
        booted.first_deploy = first
    return booted


@pytest.fixture(scope="session")
def _second_node(node, deploy_env):
    """The cluster's second node, booted healthy and deployed once per session."""
    second = target.up(NODE_NAME + "b", scenario=HEALTHY)
    result = deploy(deploy_env)
    assert result.returncode == 0, (
        f"deploy of {second.name} failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    )
    if "reboot the node to load it" in result.stdout + result.stderr:
        second = target.reboot(second.name)
    return second


@pytest.fixture(scope="module")
def cluster(node, _second_node):
    """Two deployed simulated nodes, ``[node, second]`` (Slurm and multi-node tests).

    ``inventories/sim.py`` deploys and checks every running target, so the second node runs only
    while a module that asks for the cluster does: it is stopped (kept, deployed) after each, and
    the single-node tests that follow see one node, as they expect.
    """
    second = target.get_target(_second_node.name)
    if not second.running:  # stopped by the module before
        second = target.up(second.name)
    yield [node, second]
    target.down(second.name)
