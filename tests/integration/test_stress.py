"""The stress tier against the deployed simulated node: ``pytest checks/ -m stress`` over SSH
with the node's simulated gpu-burn and NVML following each scenario's burn timeline; the wrapper
killed on the node (SIGKILL, SIGTERM, SIGHUP) and its SSH session dropped leave no gpu-burn."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from gpubox.sim import scenario, target
from gpubox.sim.testing import HEALTHY, failed_ids, run_checks, ssh

pytestmark = pytest.mark.sim

GPUBOX = "/opt/gpubox/venv/bin/gpubox"
# The node's gpu_burn (the simulated one runs as /usr/lib/gpubox-sim/bin/gpu_burn, its guard names
# it too); [g]: pgrep must not match the shell that runs it.
REPLAY = "'[g]pu_burn -stts'"

# scenario -> the stress checks it must fail ("{node}" is the node's name)
FAILS = {
    HEALTHY: set(),
    "fault-burn-hbm-hot": {"test_burn_temperature[gpu2]"},
    "fault-burn-throttle": {"test_burn_clock_held[gpu1]"},
    "fault-burn-errors": {"test_burn_errors[gpu3]"},
    "fault-burn-zero-work-ok": {"test_burn_errors[gpu0]", "test_burn_throughput[gpu0]"},
    "fault-burn-over-supply": {"test_burn_supply_budget[{node}]"},
}


def test_every_burn_fault_is_covered():
    assert set(FAILS) - {HEALTHY} == {n for n in scenario.names() if "fault-burn-" in n}


@pytest.mark.parametrize("name", sorted(FAILS))
def test_burn_fails_exactly_its_checks(node, deploy_env, tmp_path, name):
    target.set_scenario(node.name, name)
    try:
        rc, results = run_checks(deploy_env, results=tmp_path / f"{name}.json", marker="stress")
    finally:
        target.set_scenario(node.name, HEALTHY)
    expected = {i.format(node=node.name) for i in FAILS[name]}
    assert failed_ids(results) == expected
    assert rc == (1 if expected else 0)
    assert sum(results["counts"].values()) == 21  # 5 checks per GPU and the supply budget
    burn = results["hosts"][node.name]["burn"]  # the report's time series
    assert set(burn["telemetry"]["gpus"]) == {"0", "1", "2", "3"}
    if name == "fault-burn-hbm-hot":
        stop = burn["safety_stop"]
        assert (stop["gpu"], stop["what"]) == (2, "hbm_temp_c")
        message = next(
            c["message"] for c in results["checks"] if c["id"].endswith("temperature[gpu2]")
        )
        assert message.startswith(f"{node.name} gpu2 (0f:00.0): HBM reached")
        assert "safety stop ended the burn" in message
        assert burn["duration_s"] < burn["seconds"]  # stopped early
    for check in results["checks"]:
        if check["outcome"] == "failed":
            assert check["message"].startswith(node.name)


def _replays(node) -> list[int]:
    out = ssh(node, f"pgrep -f {REPLAY} || true").stdout
    return [int(p) for p in out.split()]


def _wait(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGHUP"])
def test_no_gpu_burn_survives_the_wrapper_on_the_node(node, sig):
    assert _replays(node) == []
    pid = ssh(
        node, f"setsid {GPUBOX} burn --seconds 120 --quiet >/dev/null 2>&1 < /dev/null & echo $!"
    ).stdout.strip()
    try:
        # the guard, gpu-burn and its 4 workers
        _wait(lambda: len(_replays(node)) >= 6, 60, "gpu-burn and its 4 workers did not start")
        ssh(node, f"kill -{sig.removeprefix('SIG')} {pid}")
        _wait(lambda: _replays(node) == [], 10, f"gpu-burn processes survived {sig}")
    finally:
        ssh(node, f"pkill -KILL -f {REPLAY} || true", check=False)


def test_a_lost_ssh_session_stops_the_burn(node):
    assert _replays(node) == []
    client = subprocess.Popen(
        node.ssh_command(f"{GPUBOX} burn --seconds 120"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(_replays(node)) >= 6, 60, "gpu-burn and its 4 workers did not start")
        client.send_signal(signal.SIGKILL)  # the laptop lid closes: the connection just drops
        client.wait(timeout=10)
        _wait(lambda: _replays(node) == [], 15, "gpu-burn kept running after the session died")
    finally:
        if client.poll() is None:
            client.kill()
        ssh(node, f"pkill -KILL -f {REPLAY} || true", check=False)
