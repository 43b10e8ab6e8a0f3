"""The probe, judge and parsers against output recorded on a real GPU (one H100, driver 580).

Recorded with ``scripts/real-gpu-check.sh`` on a lent H100 machine (read-only: no clock lock,
no persistence change); UUID, serial, host name and boot id anonymised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox import judge
from gpubox.parsers import parse
from gpubox.spec import NodeSpec

DATA = Path(__file__).resolve().parents[1] / "data"
REAL = json.loads((DATA / "probe-h100-driver580.json").read_text())

H100 = {  # what that machine is, written by hand from the driver's own report
    "software": {"driver_version": "580.159.04"},
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_memory_mib": 81559,
    "gpus": [{"bus_id": "00:06.0"}],
    "pcie": {"min_gen": 5, "min_width": 16},
    "nvlink": "unsupported",
}


def _keys(value, prefix=""):
    if isinstance(value, dict):
        out = set()
        for k, v in value.items():
            out |= _keys(v, f"{prefix}.{k}" if prefix else k)
        return out
    return {prefix}


@pytest.fixture(scope="module")
def simulated():
    """The probe's document through the simulated library (healthy PG199 scenario)."""
    from gpubox.sim import nvml, scenario

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"gpubox-real-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    scenario.resolve_to_file("pg199-quad-debian13", tmp / "scenario.json")
    env = {
        **os.environ,
        "GPUBOX_SIM_SCENARIO": str(tmp / "scenario.json"),
        "GPUBOX_SIM_STATE_DIR": str(tmp),
    }
    out = subprocess.run(
        [sys.executable, "-m", "gpubox", "probe", "--json", "--library", str(nvml.library_path())],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


# What the probe reads that it did not yet read when the H100's snapshot was recorded (the PCIe
# path walk and NVML's replay counter): compared again once a real GPU is recorded anew.
NEWER_GPU_KEYS = {"pcie.replay_counter", "pcie_path.available", "pcie_path.reason"}
NEWER_GPU_KEYS |= {"pcie_path.host_bridge", "pcie_path.hops"}
NEWER_KEYS = {"pcie_walk"}


def test_real_document_has_the_fields_the_simulated_one_has(simulated):
    real_gpu, sim_gpu = REAL["gpus"][0], simulated["gpus"][0]
    # The PG199 has no power limit (NVML: NOT_SUPPORTED, recorded under errors); the H100 has.
    assert _keys(real_gpu) == _keys(sim_gpu) - {"errors.power_limit_w"} - NEWER_GPU_KEYS
    assert set(REAL) == set(simulated) - NEWER_KEYS
    for key in ("temperature_c", "hbm_temperature_c", "memory_total_mib", "performance_state"):
        assert type(real_gpu[key]) is type(sim_gpu[key]), key
    assert real_gpu["errors"] == {} and REAL["errors"] == {}


def test_real_values_are_what_the_driver_reported():
    gpu = REAL["gpus"][0]
    assert REAL["driver_version"] == "580.159.04" and REAL["cuda_driver_version"] == 13000
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["bus_id"] == "0000:00:06.0"
    assert gpu["pci_device_id"] == "0x233010DE"
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16}
    # Idle and unlocked: the SM clock sits at the lowest supported clock with GpuIdle, which is
    # exactly what the clock-lock check reads as "no lock in force".
    assert gpu["clocks"]["sm_mhz"] == gpu["clocks"]["supported_graphics_mhz"][0] == 345
    assert gpu["clock_event_reasons"] == {"mask": 1, "names": ["GpuIdle"]}
    assert gpu["nvlink"] == "not_supported"  # a single H100 in a VM: NVML answers NOT_SUPPORTED
    assert gpu["power_limit_w"] == 700.0 and gpu["hbm_temperature_c"] == 38


def test_every_quick_verdict_passes_on_the_healthy_real_gpu():
    spec = NodeSpec.from_data(H100, host="h100")
    verdicts = judge.quick(spec, REAL)
    failed = [v.message for v in verdicts if v.level == judge.FAIL]
    assert failed == []
    assert {v.check for v in verdicts if v.level == judge.PASS} >= {
        "gpu_count",
        "driver_version",
        "gpu_present",
        "nvlink",
        "pcie",
        "temperature",
        "persistence",
        "remapped_rows",
        "xid",
    }


def test_a_clock_lock_expectation_fails_on_the_unlocked_real_gpu():
    spec = NodeSpec.from_data({**H100, "clocks": {"graphics_mhz": 1410}}, host="h100")
    verdict = judge.clock_locked(spec, REAL, 0)
    assert verdict.level == judge.FAIL
    assert "SM clock 345 MHz" in verdict.message and "GpuIdle" in verdict.message


def test_bandwidth_test_output_from_the_real_gpu_parses():
    doc = parse("bandwidthTest", (DATA / "bandwidthTest-h100-range-32MiB.txt").read_text())
    assert doc["ok"] is True
    got = {(r["direction"], r["memory"]): r["gbps"] for r in doc["results"]}
    assert got[("h2d", "pinned")] == 54.9 and got[("d2h", "pinned")] == 51.5
    assert got[("d2d", None)] == 2624.6 or got.get(("d2d", "pinned")) == 2624.6
