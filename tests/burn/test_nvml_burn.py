"""The simulated NVML library under a (replayed) gpu-burn: it follows each GPU's burn timeline
while the burn's process lives, and answers as at rest otherwise. Real pynvml, real library."""

from __future__ import annotations

import os
import subprocess
import time

import pynvml
import pytest

from gpubox.sim import nvml, scenario

BUS = ["00000000:04:00.0", "00000000:05:00.0", "00000000:0F:00.0", "00000000:10:00.0"]
BURN_FAULTS = [n for n in scenario.names() if n.startswith("fault-burn-")]


@pytest.fixture
def gpus(tmp_path, monkeypatch):
    """``gpus(name)`` -> the four pynvml handles of that scenario (NVML initialised)."""
    monkeypatch.setenv("GPUBOX_SIM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("GPUBOX_SIM_SCENARIO", str(tmp_path / "scenario.json"))
    nvml.load_into_pynvml()
    opened = []

    def open_(name="pg199-quad-debian13"):
        while opened:
            pynvml.nvmlShutdown()
            opened.pop()
        scenario.resolve_to_file(name, tmp_path / "scenario.json")
        pynvml.nvmlInit()
        opened.append(1)
        return [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(4)]

    open_.state = tmp_path / "state"
    yield open_
    for _ in opened:
        pynvml.nvmlShutdown()


def read(h) -> dict:
    field = pynvml.nvmlDeviceGetFieldValues(h, [82])[0]
    return {
        "sm": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "reasons": pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
        "temp": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "hbm": field.value.uiVal,
        "power_mw": pynvml.nvmlDeviceGetPowerUsage(h),
        "util": pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
    }


def burn_file(state, bus, fraction, pid, duration_ms=100_000):
    """What the replay writes: the run started ``fraction`` of ``duration_ms`` ago."""
    state.mkdir(parents=True, exist_ok=True)
    start = int(time.time() * 1000 - fraction * duration_ms)
    (state / f"{bus}.burn").write_text(f"{start} {duration_ms} {pid}\n")


def test_at_rest_without_a_burn(gpus):
    h = gpus()
    assert read(h[0]) == {
        "sm": 210,
        "reasons": 1,
        "temp": 50,
        "hbm": 55,
        "power_mw": 41250,
        "util": 0,
    }


def test_follows_the_timeline_while_the_burn_lives(gpus):
    h = gpus()
    burn_file(gpus.state, BUS[2], 0.5, os.getpid())
    # gpu2's point at 0.5: 68 C, HBM 72 C, 251 W; sm_mhz 0 follows the clock: unlocked -> max
    assert read(h[2]) == {
        "sm": 1260,
        "reasons": 0,
        "temp": 68,
        "hbm": 72,
        "power_mw": 251000,
        "util": 100,
    }
    assert read(h[0])["temp"] == 50  # only the GPUs the burn uses
    (gpus.state / f"{BUS[2]}.gpu-locked-clocks").write_text("1140 1140\n")
    assert read(h[2])["sm"] == 1140  # the lock holds under load


def test_interpolates_between_points(gpus):
    h = gpus()
    burn_file(gpus.state, BUS[0], 0.75, os.getpid())
    got = read(h[0])  # between 0.5 (66 C, 70 C, 248 W) and 1.0 (72 C, 76 C, 251 W)
    assert got["temp"] in (68, 69, 70) and got["hbm"] in (72, 73, 74)
    assert 248000 < got["power_mw"] < 251000


def test_a_dead_burn_leaves_the_gpu_at_rest(gpus):
    h = gpus()
    proc = subprocess.Popen(["true"])
    proc.wait()
    burn_file(gpus.state, BUS[1], 0.5, proc.pid)  # a replay killed before it could clean up
    assert read(h[1])["temp"] == 51 and read(h[1])["power_mw"] == 42500


def test_throttle_fault_reads_slow_with_reasons(gpus):
    h = gpus("fault-burn-throttle")
    (gpus.state).mkdir(parents=True, exist_ok=True)
    (gpus.state / f"{BUS[1]}.gpu-locked-clocks").write_text("1140 1140\n")
    burn_file(gpus.state, BUS[1], 0.2, os.getpid())
    assert (read(h[1])["sm"], read(h[1])["reasons"]) == (1140, 0)
    burn_file(gpus.state, BUS[1], 0.7, os.getpid())
    got = read(h[1])
    assert (got["sm"], got["reasons"]) == (1005, 0x8 | 0x20)  # HwSlowdown, SwThermalSlowdown


@pytest.mark.parametrize("name", BURN_FAULTS)
def test_burn_faults_change_nothing_at_rest(gpus, name):
    parent = [read(x) for x in gpus()]
    assert [read(x) for x in gpus(name)] == parent
    assert scenario.diff("pg199-quad-debian13", name)  # ... but they do change the timeline
    assert all(
        k.startswith("gpus[") and ".burn" in k for k in scenario.diff("pg199-quad-debian13", name)
    )


def test_a_bad_timeline_is_refused_with_its_key(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"extends": "pg199-quad-debian13", "set": {"gpus[0].burn[1].at": 0.0}}'  # not rising
    )
    with pytest.raises(scenario.ScenarioError, match=r"gpus\[0\]\.burn: expected a list"):
        scenario.load(bad)
