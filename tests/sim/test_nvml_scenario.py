"""Scenario files: resolution, errors, diff; and building the simulated library."""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import pytest

from gpubox.sim import nvml, scenario
from gpubox.sim.scenario import MISSING, ScenarioError

PARENT = "pg199-quad-debian13"
SHIPPED = [
    "pg199-quad",
    "pg199-quad-debian13",
    "pg199-quad-cuda-repo",
    "fault-gpu-missing",
    "fault-gpu-lost",
    "fault-p2p-pair-cns",
    "fault-p2p-all-tns",
    "fault-gpu0-x4",
    "fault-gpu2-gen1",
    "fault-nvlink-active",
    "fault-clock-lock-ignored",
    "fault-hbm-95c",
    "fault-remapped-row-pending",
    "fault-xid-79",
    "fault-persistence-off",
    "fault-wrong-driver",
    # burn faults (a GPU's burn timeline only: NVML answers differ while gpu-burn runs)
    "fault-burn-hbm-hot",
    "fault-burn-throttle",
    "fault-burn-errors",
    "fault-burn-zero-work-ok",
    "fault-burn-over-supply",
    # PCIe path faults (the sysfs tree above the GPUs, gpubox/sim/sysfs.py; replays: NVML)
    "fault-pcie-uplink-x8",
    "fault-pcie-uplink-gen1",
    "fault-pcie-aer-correctable",
    "fault-pcie-aer-fatal",
    "fault-pcie-replays",
    "fault-pcie-acs-on",
    # benchmark replay faults (recorded tool output only; see tests/sim/test_replay.py)
    "fault-bw-gpu0-x4-slot",
    "fault-bw-p2p-off",
    "fault-bw-slow-pair",
    "fault-bw-wrong-data",
    "fault-bw-crashed",
    # multi-node fault (a rank under mpirun; see tests/integration/test_mpi.py)
    "fault-mpi-rank-fails",
]


def test_names_lists_the_shipped_scenarios():
    assert sorted(scenario.names()) == sorted(SHIPPED)


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.startswith("fault-")])
def test_every_fault_extends_the_debian13_node_with_set_only(name):
    source = json.loads((scenario.SCENARIO_DIR / f"{name}.json").read_text())
    assert source["extends"] == PARENT
    assert set(source) == {"extends", "description", "set"}
    assert scenario.diff(PARENT, name)


def test_debian13_changes_only_the_driver():
    assert scenario.diff("pg199-quad", PARENT) == {
        "system.cuda_driver_version": (12080, 12040),
        "system.driver_version": ("570.124.04", "550.163.01"),
        "system.nvml_version": ("12.570.124.04", "12.550.163.01"),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("fault-gpu0-x4", {"gpus[0].pcie.width_current": (16, 4)}),
        ("fault-gpu2-gen1", {"gpus[2].pcie.gen_current": (3, 1)}),
        ("fault-gpu-lost", {"gpus[1].lost": (False, True)}),
        ("fault-hbm-95c", {"gpus[2].memory_temperature_c": (56, 95)}),
        ("fault-clock-lock-ignored", {"gpus[3].clocks.honours_lock": (True, False)}),
        ("fault-remapped-row-pending", {"gpus[0].remapped_rows.pending": (False, True)}),
        (
            "fault-xid-79",
            {"gpus[2].xid_events": ([], MISSING), "gpus[2].xid_events[0]": (MISSING, 79)},
        ),
        ("fault-persistence-off", {f"gpus[{i}].persistence_mode": (True, False) for i in range(4)}),
        (
            "fault-p2p-pair-cns",
            {
                f"p2p.{c}[{a}][{b}]": ("OK", "CNS")
                for c in ("read", "write")
                for a, b in ((2, 3), (3, 2))
            },
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_resolved_diff_of_single_value_faults(name, expected):
    assert scenario.diff(PARENT, name) == expected


def test_resolved_layout_of_the_healthy_node():
    doc = scenario.load("pg199-quad")
    assert doc["format"] == "gpubox-nvml-sim/1" and doc["scenario"] == "pg199-quad"
    assert [g["bus_id"] for g in doc["gpus"]] == [
        "00000000:04:00.0",
        "00000000:05:00.0",
        "00000000:0F:00.0",
        "00000000:10:00.0",
    ]
    assert [g["slot"] for g in doc["gpus"]] == [0, 1, 2, 3]
    assert all("present" not in g for g in doc["gpus"])
    assert doc["p2p"]["read"] == [["X" if i == j else "OK" for j in range(4)] for i in range(4)]
    assert doc["p2p"]["nvlink"][0] == ["X", "NS", "NS", "NS"]


def test_missing_gpu_is_dropped_and_matrices_shrink():
    doc = scenario.load("fault-gpu-missing")
    assert [g["slot"] for g in doc["gpus"]] == [0, 1, 2]
    assert all(len(m) == 3 and all(len(r) == 3 for r in m) for m in doc["p2p"].values())


def test_resolve_to_file_writes_the_resolved_document(tmp_path):
    dest = scenario.resolve_to_file("fault-gpu0-x4", tmp_path / "etc" / "scenario.json")
    assert json.loads(dest.read_text()) == scenario.load("fault-gpu0-x4")
    assert [p.name for p in dest.parent.iterdir()] == ["scenario.json"]  # no temp file left


def write(folder: Path, name: str, doc: dict) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        (
            {"extends": PARENT, "set": {"gpus[0].pcie.widht": 4}},
            ["set.gpus[0].pcie.widht", "'widht'"],
        ),
        (
            {"extends": PARENT, "set": {"gpus[0].pcie.width_current": "4"}},
            ["gpus[0].pcie.width_current"],
        ),
        ({"extends": PARENT, "set": {"gpus[7].lost": True}}, ["gpus[7]", "no such item"]),
        ({"extends": PARENT, "set": {"p2p.pairs.2-2": {"read": "CNS"}}}, ["p2p.pairs.2-2"]),
        (
            {"extends": PARENT, "set": {"p2p.pairs.0-1.read": "OKAY"}},
            ["p2p.pairs.0-1.read", "OKAY"],
        ),
        ({"extends": PARENT, "set": {"gpus[1].bus_id": "0000:04:00.0"}}, ["gpus[1].bus_id"]),
        ({"extends": PARENT, "set": {"gpus[1].bus_id": "00000000:04:00.0"}}, ["gpus[*].bus_id"]),
        ({"extends": PARENT, "set": {"gpus[1].nvlink": ["up"]}}, ["gpus[1].nvlink"]),
        ({"extends": PARENT, "gpus": []}, ["gpus", "unknown key"]),
        ({"extends": "no-such-scenario"}, ["extends", "no-such-scenario"]),
        (
            {"description": "x", "system": {}, "gpus": [], "p2p": {}},
            ["system.driver_version", "missing"],
        ),
    ],
)
def test_errors_name_scenario_path_and_key(tmp_path, doc, words):
    path = write(tmp_path, "bad", doc)
    with pytest.raises(ScenarioError) as err:
        scenario.load(path)
    message = str(err.value)
    for word in ["scenario 'bad'", str(path), *words]:
        assert word in message, message


def test_extends_cycle_is_detected(tmp_path):
    write(tmp_path, "a", {"extends": "b"})
    write(tmp_path, "b", {"extends": "a"})
    with pytest.raises(ScenarioError, match=r"extends cycle: a -> b -> a"):
        scenario.load(tmp_path / "a.json")


def test_user_scenario_extends_a_shipped_one_and_creates_pair_overrides(tmp_path):
    path = write(
        tmp_path,
        "mine",
        {
            "extends": "fault-p2p-pair-cns",
            "set": {"p2p.pairs.0-1.read": "DR", "gpus[*].temperature_c": 60},
        },
    )
    changes = scenario.diff("fault-p2p-pair-cns", path)
    assert changes.pop("p2p.read[0][1]") == ("OK", "DR")
    assert {k: v[1] for k, v in changes.items()} == {
        f"gpus[{i}].temperature_c": 60 for i in range(4)
    }


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ScenarioError, match="pg199-quad-debian13"):
        scenario.load("pg199-octo")


# ---- building the library ------------------------------------------------------------------
REQUIRED_TEXT = """nvmlInit nvmlInit_v2 nvmlInitWithFlags nvmlShutdown nvmlErrorString
nvmlSystemGetDriverVersion nvmlSystemGetCudaDriverVersion nvmlSystemGetCudaDriverVersion_v2
nvmlSystemGetNVMLVersion nvmlDeviceGetCount nvmlDeviceGetCount_v2 nvmlDeviceGetHandleByIndex
nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetHandleByPciBusId nvmlDeviceGetHandleByPciBusId_v2
nvmlDeviceGetIndex nvmlDeviceGetName nvmlDeviceGetUUID nvmlDeviceGetSerial nvmlDeviceGetPciInfo
nvmlDeviceGetPciInfo_v2 nvmlDeviceGetPciInfo_v3 nvmlDeviceGetMemoryInfo nvmlDeviceGetMemoryInfo_v2
nvmlDeviceGetP2PStatus nvmlDeviceGetNvLinkState nvmlDeviceGetCurrPcieLinkGeneration
nvmlDeviceGetMaxPcieLinkGeneration nvmlDeviceGetCurrPcieLinkWidth nvmlDeviceGetMaxPcieLinkWidth
nvmlDeviceGetClockInfo nvmlDeviceGetMaxClockInfo nvmlDeviceGetSupportedGraphicsClocks
nvmlDeviceGetSupportedMemoryClocks nvmlDeviceGetCurrentClocksEventReasons
nvmlDeviceGetCurrentClocksThrottleReasons nvmlDeviceGetTemperature nvmlDeviceGetFieldValues
nvmlDeviceGetPowerUsage nvmlDeviceGetEnforcedPowerLimit nvmlDeviceGetPowerManagementLimit
nvmlDeviceGetPersistenceMode nvmlDeviceSetPersistenceMode nvmlDeviceGetRemappedRows
nvmlDeviceGetTotalEccErrors nvmlDeviceGetEccMode nvmlDeviceGetPerformanceState
nvmlDeviceGetUtilizationRates nvmlDeviceSetGpuLockedClocks nvmlDeviceResetGpuLockedClocks
nvmlDeviceSetMemoryLockedClocks nvmlDeviceResetMemoryLockedClocks nvmlEventSetCreate
nvmlDeviceRegisterEvents nvmlDeviceGetSupportedEventTypes nvmlEventSetWait nvmlEventSetWait_v2
nvmlEventSetFree"""
REQUIRED = REQUIRED_TEXT.split()


def test_library_exports_every_required_symbol():
    lib = ctypes.CDLL(str(nvml.library_path()))
    assert [s for s in REQUIRED if not hasattr(lib, s)] == []


def test_build_is_cached_by_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBOX_CACHE_DIR", str(tmp_path))
    first = nvml.library_path()
    assert first.name == "libnvidia-ml.so.1"
    assert first.parent.parent == tmp_path / "sim" and len(first.parent.name) == 16
    mtime = first.stat().st_mtime_ns
    assert nvml.library_path() == first and first.stat().st_mtime_ns == mtime  # warm: no rebuild
    assert sorted(p.name for p in first.parent.iterdir()) == ["libnvidia-ml.so.1"]


def test_missing_compiler_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBOX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "gpubox-no-such-cc")
    with pytest.raises(nvml.SimBuildError, match="apt-get install gcc"):
        nvml.library_path()


def test_compile_error_is_reported(tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return x; }\n")
    monkeypatch.setenv("GPUBOX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(nvml, "SOURCE", broken)
    with pytest.raises(nvml.SimBuildError, match="undeclared"):
        nvml.library_path()
    assert not list((tmp_path / "cache").rglob("libnvidia-ml.so.1"))
