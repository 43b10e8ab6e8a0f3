"""``gpubox burn`` on this machine: the simulated NVML library and the simulated gpu-burn
(``gpubox/sim/burn_replay.py``, which forks one worker per GPU like the real tool), real
processes, real signals. No root, no container."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpubox import burn, judge_stress
from gpubox.sim import nvml, scenario
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "gpubox" / "sim" / "burn_replay.py"


@pytest.fixture
def sim(tmp_path, monkeypatch):
    """``sim(scenario_name, **stress)`` -> (spec file, NodeSpec); NVML and gpu-burn simulated."""
    library = str(nvml.library_path())
    state = tmp_path / "state"
    monkeypatch.setenv("GPUBOX_SIM_STATE_DIR", str(state))
    monkeypatch.setenv("GPUBOX_SIM_SCENARIO", str(tmp_path / "scenario.json"))
    monkeypatch.delenv("GPUBOX_NVML_LIBRARY", raising=False)

    def make(name="pg199-quad-debian13", **stress):
        scenario.resolve_to_file(name, tmp_path / "scenario.json")
        data = {
            "host": "box",
            "gpus": [{"bus_id": b} for b in ("04:00.0", "05:00.0", "0F:00.0", "10:00.0")],
            "software": {"nvml_library": library},
            "clocks": {"graphics_mhz": 1140},
            "limits": {"gpu_temp_c": 85, "hbm_temp_c": 85, "power_w": 300, "supply_w": 1400},
            "stress": {"duration_s": 3, "binary": str(REPLAY), "gflops": 12000, **stress},
        }
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        data.pop("host")
        return path, NodeSpec.from_data(data, host="box")

    make.state = state
    return make


def _lock(state: Path) -> None:
    """The lock the deploy's clock unit sets at boot: the simulated GPUs then read 1140 MHz."""
    state.mkdir(parents=True, exist_ok=True)
    for bus in ("04:00.0", "05:00.0", "0F:00.0", "10:00.0"):
        (state / f"00000000:{bus}.gpu-locked-clocks").write_text("1140 1140\n")


def burn_doc(path: Path, *args: str) -> tuple[int, dict]:
    """``gpubox burn --json`` in a fresh interpreter, as on a node. (In-process runs would share
    this test process with pyinfra's CLI, which gevent-patches threads, pipes and sleeps once any
    test module imports it.)"""
    proc = subprocess.run(
        [sys.executable, "-m", "gpubox.cli", "burn", "--spec", str(path), "--json", "--quiet"]
        + list(args),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("{"), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_command_order_and_environment():
    spec = NodeSpec.from_data({"gpu_count": 4, "stress": {"tensor_cores": True}})
    argv, env = burn.command(spec, 60, [1, 3])
    assert argv == ["/opt/gpubox/bin/gpu_burn", "-stts", "10", "-tc", "60"]  # time last
    assert env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "1,3"}
    with pytest.raises(burn.BurnError, match="expected different indices 0..3"):
        burn.burn_gpus(spec, [0, 4])


def test_healthy_burn_passes_every_check(sim):
    path, spec = sim()
    _lock(sim.state)
    rc, doc = burn_doc(path)
    assert rc == 0 and doc["ok"] is True, doc["errors"]
    assert doc["safety_stop"] is None and doc["exit_code"] == 0
    assert [r["verdict"] for r in doc["results"]] == ["OK"] * 4
    assert all(r["gflops_sustained"] > 14000 for r in doc["results"])
    assert {r["min_sm_mhz"] for r in doc["results"]} == {1140}
    tel = doc["telemetry"]["gpus"]["2"]
    assert len(tel["t"]) >= 2 and max(tel["hbm_temp_c"]) > 56  # it warmed up under load
    verdicts = judge_stress.all_verdicts(spec, doc)
    assert {v.level for v in verdicts} == {"pass"}, [v.message for v in verdicts if not v.ok]
    assert not list(sim.state.glob("*.burn"))  # the replay cleaned up


def test_hbm_over_the_ceiling_stops_the_burn_and_names_the_gpu(sim):
    path, spec = sim("fault-burn-hbm-hot", duration_s=6)
    _lock(sim.state)
    rc, doc = burn_doc(path)
    assert rc == 1 and doc["duration_s"] < 6  # stopped before the run's end
    stop = doc["safety_stop"]
    assert (stop["gpu"], stop["what"], stop["limit"]) == (2, "hbm_temp_c", 85.0)
    assert stop["value"] >= 85 and 3.0 < stop["at_s"] < 6.0
    assert stop["message"].startswith("box gpu2 (0f:00.0): HBM temperature")
    assert doc["ok"] is False and doc["exit_code"] != 0
    failed = [v for v in judge_stress.all_verdicts(spec, doc) if v.level == "fail"]
    assert [(v.check, v.subject) for v in failed] == [("burn_temperature", "gpu2")]


def test_a_gpu_already_at_its_ceiling_is_not_burned(sim):
    path, _ = sim("fault-hbm-95c")
    proc = subprocess.run(
        [sys.executable, "-m", "gpubox.cli", "burn", "--spec", str(path), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "gpubox burn: not starting: box gpu2 (0f:00.0) reads HBM 95 C at rest" in proc.stderr
    assert not list(sim.state.glob("*.burn"))


def _burn_processes(state: Path) -> list[int]:
    """Live processes of the simulated gpu-burn started with this state folder (zombies: dead)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ours = b"burn_replay.py" in cmdline and f"GPUBOX_SIM_STATE_DIR={state}".encode() in environ
        if ours and "\nState:\tZ" not in status:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM", "SIGHUP", "SIGINT"])
def test_no_gpu_burn_process_survives_the_wrapper(sim, sig):
    path, _ = sim(duration_s=60)
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "gpubox.cli", "burn", "--spec", str(path), "--json", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # like a login shell's job: the wrapper alone gets the signal
    )
    try:
        deadline = time.monotonic() + 30
        while len(_burn_processes(sim.state)) < 5:  # gpu-burn and its four workers
            assert wrapper.poll() is None, wrapper.stderr.read().decode()
            assert time.monotonic() < deadline, "the simulated gpu-burn did not start"
            time.sleep(0.1)
        victims = _burn_processes(sim.state)
        os.kill(wrapper.pid, getattr(signal, sig))
        deadline = time.monotonic() + 5
        while _burn_processes(sim.state) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _burn_processes(sim.state) == [], f"survivors of {victims} after {sig}"
        wrapper.wait(timeout=10)
        if sig != "SIGKILL":  # the wrapper stopped the burn, said so and still wrote its document
            doc = json.loads(wrapper.stdout.read())
            assert doc["interrupted"] == f"{sig} received" and doc["ok"] is False
            assert wrapper.returncode == 1
    finally:
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, signal.SIGKILL)
        for pid in _burn_processes(sim.state):
            os.kill(pid, signal.SIGKILL)


def test_killing_gpu_burn_alone_would_leave_its_workers(sim):
    """What the guard is for: the simulated gpu-burn, like the real one, leaves orphans."""
    path, spec = sim(duration_s=60)
    argv, env = burn.command(spec, 60, [0, 1, 2, 3])
    proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while len(_burn_processes(sim.state)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        time.sleep(0.3)
        assert len(_burn_processes(sim.state)) == 4
    finally:
        for pid in _burn_processes(sim.state):
            os.kill(pid, signal.SIGKILL)


def test_a_lost_session_stops_the_burn(sim, tmp_path):
    """The SSH session's process (here a shell) dies: the wrapper, re-parented, stops the burn."""
    path, _ = sim(duration_s=60)
    out = tmp_path / "burn.json"
    cmd = f"{sys.executable} -m gpubox.cli burn --spec {path} --json --quiet > {out}; true"
    shell = subprocess.Popen(["sh", "-c", cmd], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while len(_burn_processes(sim.state)) < 5:
            assert time.monotonic() < deadline, "the simulated gpu-burn did not start"
            time.sleep(0.1)
        shell.kill()  # the session goes; nothing signals the wrapper itself
        shell.wait()
        deadline = time.monotonic() + 5
        while _burn_processes(sim.state) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _burn_processes(sim.state) == []
        deadline = time.monotonic() + 10
        while not out.read_text().strip().endswith("}") and time.monotonic() < deadline:
            time.sleep(0.1)
        doc = json.loads(out.read_text())
        assert doc["interrupted"] == "lost session (the parent process went away)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
        for pid in _burn_processes(sim.state):
            os.kill(pid, signal.SIGKILL)
