"""``pytest checks/ -m stress`` on this machine (the plugin's local mode), against the simulated
NVML and gpu-burn: the healthy node passes, each burn fault fails exactly its checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox.sim import nvml, scenario

ROOT = Path(__file__).resolve().parents[2]
BUS = ("04:00.0", "05:00.0", "0F:00.0", "10:00.0")

# scenario -> the checks that must fail (every other stress check passes or is skipped)
FAILS = {
    "pg199-quad-debian13": set(),
    "fault-burn-hbm-hot": {"test_burn_temperature[gpu2]"},
    "fault-burn-throttle": {"test_burn_clock_held[gpu1]"},
    "fault-burn-errors": {"test_burn_errors[gpu3]"},
    "fault-burn-zero-work-ok": {"test_burn_errors[gpu0]", "test_burn_throughput[gpu0]"},
    "fault-burn-over-supply": {"test_burn_supply_budget[simlocal]"},
}


def test_every_burn_fault_is_in_the_table():
    assert {n for n in scenario.names() if n.startswith("fault-burn-")} == set(FAILS) - {
        "pg199-quad-debian13"
    }


@pytest.mark.parametrize("name", sorted(FAILS))
def test_stress_checks(tmp_path, name):
    state = tmp_path / "state"
    state.mkdir()
    for bus in BUS:  # the lock the clock unit sets at boot
        (state / f"00000000:{bus}.gpu-locked-clocks").write_text("1140 1140\n")
    scenario.resolve_to_file(name, tmp_path / "scenario.json")
    # the home node's expectations (inventories/home.py), on this machine
    spec = {
        "host": "simlocal",
        "gpus": [{"bus_id": b} for b in BUS],
        "software": {"nvml_library": str(nvml.library_path())},
        "clocks": {"graphics_mhz": 1140},
        "limits": {"gpu_temp_c": 85, "hbm_temp_c": 85, "power_w": 300, "supply_w": 1400},
        "stress": {
            "duration_s": 6,
            "gflops": 12000,
            "binary": str(ROOT / "gpubox" / "sim" / "burn_replay.py"),
        },
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "GPUBOX_SIM_SCENARIO": str(tmp_path / "scenario.json"),
        "GPUBOX_SIM_STATE_DIR": str(state),
    }
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "checks/", "-m", "stress", "-q", "-p"),
            *("no:cacheprovider", "--node-spec", str(tmp_path / "spec.json")),
            *("--results-json", str(results), "--junitxml", str(tmp_path / "junit.xml")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(results.read_text())
    outcomes = {c["id"].split("::")[-1]: c["outcome"] for c in doc["checks"]}
    assert len(outcomes) == 21, proc.stdout[-3000:]  # 5 per GPU and the supply budget
    failed = {k for k, v in outcomes.items() if v == "failed"}
    assert failed == FAILS[name], proc.stdout[-3000:]
    assert proc.returncode == (1 if FAILS[name] else 0)
    burn = doc["hosts"]["simlocal"]["burn"]  # for the report: time series per GPU
    assert burn["schema"] == "gpubox.burn/1"
    assert set(burn["telemetry"]["gpus"]) == {"0", "1", "2", "3"}
    if name == "fault-burn-hbm-hot":
        assert burn["safety_stop"]["gpu"] == 2
        message = next(
            c["message"] for c in doc["checks"] if c["id"].endswith("test_burn_temperature[gpu2]")
        )
        assert message.startswith("simlocal gpu2 (0f:00.0): HBM reached")
        assert "the safety stop ended the burn" in message
        skipped = {k for k, v in outcomes.items() if v == "skipped"}
        assert len(skipped) == 20  # a cut-short burn proves nothing else
