"""The simulated libnvidia-ml.so.1 under the unmodified pynvml: in-process and via LD_LIBRARY_PATH.

Each test resolves a scenario into a temp file and points the library at it with
GPUBOX_SIM_SCENARIO; setters write under a temp GPUBOX_SIM_STATE_DIR.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest

from gpubox.sim import nvml, scenario

HEALTHY = "pg199-quad"
FAULT_PARENT = "pg199-quad-debian13"
CODES = {c: i for i, c in enumerate(scenario.P2P_CODES)}
CAPS = scenario.P2P_CAPS
LOCK_MHZ = 1140


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lib() -> Iterator[Path]:
    """The library, loaded into this process's pynvml; pynvml is restored afterwards."""
    path = nvml.library_path()
    saved = pynvml.nvmlLib, dict(pynvml._nvmlGetFunctionPointer_cache)
    nvml.load_into_pynvml(path)
    yield path
    pynvml.nvmlLib = saved[0]
    pynvml._nvmlGetFunctionPointer_cache.clear()
    pynvml._nvmlGetFunctionPointer_cache.update(saved[1])


@pytest.fixture
def node(lib, tmp_path, monkeypatch):
    """``node(name)``: a context manager that boots scenario ``name`` in this process."""

    @contextlib.contextmanager
    def boot(name: str, state: Path | None = None) -> Iterator[None]:
        resolved = scenario.resolve_to_file(name, tmp_path / f"{name}.json")
        monkeypatch.setenv("GPUBOX_SIM_SCENARIO", str(resolved))
        monkeypatch.setenv("GPUBOX_SIM_STATE_DIR", str(state or tmp_path / "state"))
        pynvml.nvmlInit()
        try:
            yield
        finally:
            pynvml.nvmlShutdown()

    return boot


def readout() -> dict[str, Any]:
    """Everything the library answers, unlocked, then (keys 'locked.*') with every GPU locked at
    LOCK_MHZ, so a GPU that ignores the lock shows too. Leaves no lock behind."""
    out = nvml.snapshot()
    handles = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        with contextlib.suppress(pynvml.NVMLError_GpuIsLost):
            handles.append(pynvml.nvmlDeviceGetHandleByIndex(i))
    for h in handles:
        pynvml.nvmlDeviceSetGpuLockedClocks(h, LOCK_MHZ, LOCK_MHZ)
    out.update({f"locked.{k}": v for k, v in nvml.snapshot().items()})
    for h in handles:
        pynvml.nvmlDeviceResetGpuLockedClocks(h)
    return out


def model(doc: dict, locked: bool = False) -> dict[str, Any]:
    """What nvml.snapshot() must read for a resolved scenario: an independent statement of the
    NVML answer to every scenario value."""
    system = doc["system"]
    out: dict[str, Any] = {
        "system.driver_version": system["driver_version"],
        "system.cuda_driver_version": system["cuda_driver_version"],
        "system.cuda_driver_version_v2": system["cuda_driver_version"],
        "system.nvml_version": system["nvml_version"],
        "count": len(doc["gpus"]),
    }
    lost = f"ERROR_{pynvml.NVML_ERROR_GPU_IS_LOST}"
    for i, g in enumerate(doc["gpus"]):
        p = f"gpu[{i}]."
        if g["lost"]:
            out[p + "handle"] = lost
            continue
        domain, bus, devfn = g["bus_id"].split(":")
        mib = 1 << 20
        mem = g["memory"]
        clocks = g["clocks"]
        holds = locked and clocks["honours_lock"]
        lowest, highest = (
            min(clocks["supported_graphics_mhz"]),
            max(clocks["supported_graphics_mhz"]),
        )
        graphics = min(max(LOCK_MHZ, lowest), highest) if holds else clocks["graphics_idle_mhz"]
        reasons = clocks["event_reasons_locked" if holds else "event_reasons_unlocked"]
        limit = g["power_limit_mw"]
        ecc = g["ecc"]
        rows = g["remapped_rows"]
        no = f"ERROR_{pynvml.NVML_ERROR_NOT_SUPPORTED}"
        out.update(
            {
                p + "index": i,
                p + "name": g["name"],
                p + "uuid": g["uuid"],
                p + "serial": g["serial"],
                p + "pci.bus_id": g["bus_id"],
                p + "pci.bus_id_legacy": f"{domain[-4:]}:{bus}:{devfn}",
                p + "pci.domain": int(domain, 16),
                p + "pci.bus": int(bus, 16),
                p + "pci.device": int(devfn.split(".")[0], 16),
                p + "pci.device_id": int(g["pci_device_id"], 16),
                p + "pci.subsystem_id": int(g["pci_subsystem_id"], 16),
                p + "memory.total": mem["total_mib"] * mib,
                p + "memory.used": (mem["used_mib"] + mem["reserved_mib"]) * mib,
                p + "memory.free": (mem["total_mib"] - mem["used_mib"] - mem["reserved_mib"]) * mib,
                p + "memory_v2.reserved": mem["reserved_mib"] * mib,
                p + "memory_v2.used": mem["used_mib"] * mib,
                p + "pcie.gen_current": g["pcie"]["gen_current"],
                p + "pcie.gen_max": g["pcie"]["gen_max"],
                p + "pcie.width_current": g["pcie"]["width_current"],
                p + "pcie.width_max": g["pcie"]["width_max"],
                p + "pcie.replay_counter": g["pcie"]["replay_counter"],
                p + "clock.graphics": graphics,
                p + "clock.sm": graphics,
                p + "clock.mem": clocks["memory_mhz"],
                p + "clock.video": clocks["video_idle_mhz"],
                p + "max_clock.graphics": clocks["max_graphics_mhz"],
                p + "max_clock.sm": clocks["max_graphics_mhz"],
                p + "max_clock.mem": clocks["max_memory_mhz"],
                p + "max_clock.video": clocks["max_video_mhz"],
                p + "supported_memory_clocks": clocks["supported_memory_mhz"],
                p + "supported_graphics_clocks": [clocks["supported_graphics_mhz"]]
                * len(clocks["supported_memory_mhz"]),
                p + "clocks_event_reasons": reasons,
                p + "clocks_throttle_reasons": reasons,
                p + "temperature": g["temperature_c"],
                p + "memory_temperature": g["memory_temperature_c"],
                p + "power_usage": g["power_usage_mw"],
                p + "enforced_power_limit": no if limit is None else limit,
                p + "power_management_limit": no if limit is None else limit,
                p + "persistence_mode": int(g["persistence_mode"]),
                p + "performance_state": g["pstate"],
                p + "utilization.gpu": g["utilization"]["gpu_percent"],
                p + "utilization.memory": g["utilization"]["memory_percent"],
                p + "ecc_mode": [int(ecc["enabled"])] * 2,
                p + "remapped_rows": [
                    rows["correctable"],
                    rows["uncorrectable"],
                    int(rows["pending"]),
                    int(rows["failure"]),
                ],
                p + "nvlink": [no]
                if g["nvlink"] == "not_supported"
                else [int(s == "active") for s in g["nvlink"]],
                p + "supported_event_types": 0xFF9F,  # as a real 580 driver answers
                p + "xid_events": g["xid_events"],
            }
        )
        for kind in ("corrected", "uncorrected"):
            for counter in ("volatile", "aggregate"):
                out[f"{p}ecc.{counter}.{kind}"] = ecc[counter][kind] if ecc["enabled"] else no
    for i, a in enumerate(doc["gpus"]):
        for j, b in enumerate(doc["gpus"]):
            if i != j and not a["lost"] and not b["lost"]:
                for cap in CAPS:
                    out[f"p2p[{i}][{j}].{cap}"] = CODES[doc["p2p"][cap][i][j]]
    return out


def full_model(doc: dict) -> dict[str, Any]:
    return {**model(doc), **{f"locked.{k}": v for k, v in model(doc, locked=True).items()}}


@pytest.fixture(scope="module")
def parent_readout(lib, tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("parent")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(
            "GPUBOX_SIM_SCENARIO", str(scenario.resolve_to_file(FAULT_PARENT, folder / "s.json"))
        )
        mp.setenv("GPUBOX_SIM_STATE_DIR", str(folder / "state"))
        pynvml.nvmlInit()
        try:
            return readout()
        finally:
            pynvml.nvmlShutdown()


# ---- the healthy node, field by field -------------------------------------------------------
def test_healthy_pg199_reads_back_every_scenario_value(node):
    doc = scenario.load(HEALTHY)
    with node(HEALTHY):
        got = readout()
    assert got == full_model(doc)


def test_healthy_pg199_states_the_first_users_node(node):
    """The pg199.md facts, stated literally, as a probe reads them."""
    with node(HEALTHY):
        assert pynvml.nvmlSystemGetDriverVersion() == "570.124.04"
        assert pynvml.nvmlSystemGetCudaDriverVersion() == 12080
        assert pynvml.nvmlSystemGetCudaDriverVersion_v2() == 12080
        assert pynvml.nvmlDeviceGetCount() == 4
        bus_ids = ["00000000:04:00.0", "00000000:05:00.0", "00000000:0F:00.0", "00000000:10:00.0"]
        for i, bus_id in enumerate(bus_ids):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            assert pynvml.nvmlDeviceGetName(h) == "NVIDIA DRIVE-PG199-PROD"
            pci = pynvml.nvmlDeviceGetPciInfo(h)
            assert (pci.busId, pci.pciDeviceId, pci.pciSubSystemId) == (
                bus_id,
                0x20BB10DE,
                0x14A110DE,
            )
            assert pynvml.nvmlDeviceGetMemoryInfo(h).total == 32768 * 2**20
            assert [
                pynvml.nvmlDeviceGetCurrPcieLinkGeneration(h),
                pynvml.nvmlDeviceGetCurrPcieLinkWidth(h),
                pynvml.nvmlDeviceGetMaxPcieLinkGeneration(h),
                pynvml.nvmlDeviceGetMaxPcieLinkWidth(h),
            ] == [3, 16, 3, 16]
            clocks = pynvml.nvmlDeviceGetSupportedGraphicsClocks(h, 1215)
            assert clocks == list(range(1260, 1139, -15)) and min(clocks) == 1140
            assert pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == 210
            assert (
                pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
                == pynvml.nvmlClocksEventReasonGpuIdle
            )
            assert 50 <= pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) <= 53
            hbm = pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP])[0]
            assert hbm.nvmlReturn == 0 and 54 <= hbm.value.uiVal <= 56
            assert 40000 <= pynvml.nvmlDeviceGetPowerUsage(h) <= 45000
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetEnforcedPowerLimit(h)
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetPowerManagementLimit(h)
            with pytest.raises(pynvml.NVMLError_NotSupported):
                pynvml.nvmlDeviceGetNvLinkState(h, 0)
            assert pynvml.nvmlDeviceGetPersistenceMode(h) == pynvml.NVML_FEATURE_ENABLED
            assert pynvml.nvmlDeviceGetRemappedRows(h) == (0, 0, 0, 0)
            assert pynvml.nvmlDeviceGetPerformanceState(h) == 0


def test_p2p_matrix_all_12_ordered_pairs(node):
    with node(HEALTHY):
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(4)]
        pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
        assert len(pairs) == 12
        for i, j in pairs:
            a, b = handles[i], handles[j]
            assert pynvml.nvmlDeviceGetP2PStatus(a, b, 0) == pynvml.NVML_P2P_STATUS_OK  # READ
            assert pynvml.nvmlDeviceGetP2PStatus(a, b, 1) == pynvml.NVML_P2P_STATUS_OK  # WRITE
            assert pynvml.nvmlDeviceGetP2PStatus(a, b, 2) == pynvml.NVML_P2P_STATUS_NOT_SUPPORTED
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetP2PStatus(handles[0], handles[0], 0)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            pynvml.nvmlDeviceGetP2PStatus(
                handles[0], handles[1], pynvml.NVML_P2P_CAPS_INDEX_UNKNOWN
            )


def test_p2p_caps_index_read_constant_is_a_tuple_and_ctypes_rejects_it(node):
    """nvidia-ml-py has NVML_P2P_CAPS_INDEX_READ = 0, (a tuple): it fails on real hardware too."""
    assert pynvml.NVML_P2P_CAPS_INDEX_READ == (0,)
    with node(HEALTHY):
        a, b = (pynvml.nvmlDeviceGetHandleByIndex(i) for i in (0, 1))
        with pytest.raises(ctypes.ArgumentError):
            pynvml.nvmlDeviceGetP2PStatus(a, b, pynvml.NVML_P2P_CAPS_INDEX_READ)


def test_handle_by_pci_bus_id_accepts_nvml_and_sysfs_forms(node):
    with node(HEALTHY):
        for bus_id in ("00000000:0F:00.0", "0000:0f:00.0"):
            assert pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByPciBusId(bus_id)) == 2
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetHandleByPciBusId("0000:99:00.0")


def test_two_call_protocol_and_struct_versions(node):
    with node(HEALTHY):
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        count = ctypes.c_uint(0)
        fn = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetSupportedGraphicsClocks")
        assert fn(h, ctypes.c_uint(1215), ctypes.byref(count), None) == 7  # INSUFFICIENT_SIZE
        assert count.value == 9
        with pytest.raises(pynvml.NVMLError_NotFound):
            pynvml.nvmlDeviceGetSupportedGraphicsClocks(h, 877)  # not a memory clock
        with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
            pynvml.nvmlDeviceGetMemoryInfo(h, version=0x01000028)
        assert ctypes.sizeof(pynvml.nvmlPciInfo_t) == 68
        assert ctypes.sizeof(pynvml.c_nvmlFieldValue_t) == 40
        values = pynvml.nvmlDeviceGetFieldValues(h, [pynvml.NVML_FI_DEV_MEMORY_TEMP, 91, 4])
        assert [v.nvmlReturn for v in values] == [0, 3, 3]  # per entry; the call succeeds


def test_init_is_ref_counted_and_calls_before_init_are_uninitialized(node):
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    with node(HEALTHY):
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        assert pynvml.nvmlDeviceGetCount() == 4  # one init still holds
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlSystemGetDriverVersion()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlShutdown()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot open"),
        ("{not json", "invalid JSON"),
        (json.dumps({"extends": "pg199-quad"}), "not a resolved scenario"),
        (json.dumps({"format": "gpubox-nvml-sim/1", "system": {}}), "system.driver_version"),
    ],
    ids=["missing", "not-json", "unresolved", "incomplete"],
)
def test_bad_scenario_fails_init_with_a_message(
    lib, tmp_path, monkeypatch, capfd, content, message
):
    path = tmp_path / "scenario.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("GPUBOX_SIM_SCENARIO", str(path))
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        pynvml.nvmlInit()
    err = capfd.readouterr().err
    assert "gpubox nvml-sim: cannot load scenario" in err and str(path) in err and message in err


# ---- faults: the answer that changes, and nothing else ----------------------------------------
L = r"(locked\.)?"
PAIR_WITH = r"p2p\[({0}\]\[\d|\d\]\[{0})\]\.\w+"
FAULTS: dict[str, tuple[list[str], dict[str, Any]]] = {
    # name: (full-match patterns of every key allowed and required to change, answers to check)
    "fault-gpu-missing": (
        [L + "count", L + r"gpu\[3\]\..+", L + PAIR_WITH.format(3)],
        {"count": 3, "gpu[2].pci.bus_id": "00000000:0F:00.0"},
    ),
    "fault-gpu-lost": (
        [L + r"gpu\[1\]\..+", L + PAIR_WITH.format(1)],
        {"count": 4, "gpu[1].handle": "ERROR_15"},
    ),
    "fault-p2p-pair-cns": (
        [L + r"p2p\[(2\]\[3|3\]\[2)\]\.(read|write)"],
        {"p2p[2][3].read": 1, "p2p[2][3].write": 1, "p2p[3][2].read": 1, "p2p[3][2].write": 1},
    ),
    "fault-p2p-all-tns": (
        [L + r"p2p\[\d\]\[\d\]\.(read|write)"],
        {"p2p[0][1].read": 3, "p2p[3][2].write": 3, "p2p[0][1].nvlink": 5},
    ),
    "fault-gpu0-x4": ([L + r"gpu\[0\]\.pcie\.width_current"], {"gpu[0].pcie.width_current": 4}),
    "fault-gpu2-gen1": ([L + r"gpu\[2\]\.pcie\.gen_current"], {"gpu[2].pcie.gen_current": 1}),
    "fault-nvlink-active": ([L + r"gpu\[1\]\.nvlink"], {"gpu[1].nvlink": [1] * 12}),
    "fault-clock-lock-ignored": (
        [
            r"locked\.gpu\[3\]\.(clock\.graphics|clock\.sm|clocks_event_reasons|clocks_throttle_reasons)"
        ],
        {
            "locked.gpu[3].clock.sm": 210,
            "locked.gpu[3].clocks_event_reasons": 1,
            "locked.gpu[2].clock.sm": 1140,
        },
    ),
    "fault-hbm-95c": ([L + r"gpu\[2\]\.memory_temperature"], {"gpu[2].memory_temperature": 95}),
    "fault-remapped-row-pending": (
        [L + r"gpu\[0\]\.remapped_rows"],
        {"gpu[0].remapped_rows": [0, 0, 1, 0]},
    ),
    "fault-xid-79": ([L + r"gpu\[2\]\.xid_events"], {"gpu[2].xid_events": [79]}),
    "fault-persistence-off": (
        [L + r"gpu\[[0-3]\]\.persistence_mode"],
        {f"gpu[{i}].persistence_mode": 0 for i in range(4)},
    ),
    "fault-wrong-driver": (
        [L + r"system\.(driver_version|nvml_version|cuda_driver_version(_v2)?)"],
        {"system.driver_version": "535.183.01"},
    ),
    "fault-pcie-replays": (
        [L + r"gpu\[1\]\.pcie\.replay_counter"],
        {"gpu[1].pcie.replay_counter": 1200},
    ),
}


# fault-bw-* change recorded tool output; fault-mpi-* a rank under mpirun (tests/integration/test_mpi.py)
BENCHMARK_FAULTS = sorted(n for n in scenario.names() if n.startswith(("fault-bw-", "fault-mpi-")))
# Faults of the sysfs tree above the GPUs (gpubox/sim/sysfs.py): NVML answers as before.
TREE_FAULTS = sorted(
    n for n in scenario.names() if n.startswith("fault-pcie-") and n != "fault-pcie-replays"
)


def test_every_shipped_fault_is_covered():
    # fault-burn-* change GPUs' burn timelines only: see tests/burn/test_nvml_burn.py
    nvml_faults = (
        n
        for n in scenario.names()
        if n.startswith("fault-")
        and n not in BENCHMARK_FAULTS + TREE_FAULTS
        and not n.startswith("fault-burn-")
    )
    assert sorted(FAULTS) == sorted(nvml_faults)


@pytest.mark.parametrize("name", BENCHMARK_FAULTS + TREE_FAULTS)
def test_benchmark_fault_changes_no_nvml_answer(node, parent_readout, name):
    # fault-bw-* change only recorded tool output (gpubox/sim/replay.py); the library ignores it
    with node(name):
        assert readout() == parent_readout


@pytest.mark.parametrize("name", sorted(FAULTS), ids=sorted(FAULTS))
def test_fault_changes_its_answer_and_nothing_else(node, parent_readout, name):
    patterns, answers = FAULTS[name]
    assert scenario.load(name)["description"]
    with node(name):
        got = readout()
    assert got == full_model(scenario.load(name))  # the fault's every value, as NVML answers
    for key, value in answers.items():
        assert got[key] == value, key
    changed = {
        k
        for k in got.keys() | parent_readout.keys()
        if got.get(k, "absent") != parent_readout.get(k, "absent")
    }
    stray = sorted(k for k in changed if not any(re.fullmatch(p, k) for p in patterns))
    assert not stray, f"{name} changed more than its fault: {stray[:10]}"
    for p in patterns:
        assert any(re.fullmatch(p, k) for k in changed), f"{name}: nothing matching {p} changed"


def test_lost_gpu_answers_gpu_is_lost_to_every_call(node):
    with node("fault-gpu-lost"):
        assert pynvml.nvmlDeviceGetCount() == 4
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlDeviceGetHandleByIndex(1)
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlDeviceGetHandleByPciBusId("00000000:05:00.0")
        # The C library still writes the handle: take it the way a C caller that ignores the
        # code would, and check that everything asked of it answers GPU_IS_LOST.
        lost = pynvml.c_nvmlDevice_t()
        raw = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetHandleByIndex_v2")
        assert raw(ctypes.c_uint(1), ctypes.byref(lost)) == pynvml.NVML_ERROR_GPU_IS_LOST
        other = pynvml.nvmlDeviceGetHandleByIndex(0)
        calls = [
            lambda: pynvml.nvmlDeviceGetIndex(lost),
            lambda: pynvml.nvmlDeviceGetName(lost),
            lambda: pynvml.nvmlDeviceGetUUID(lost),
            lambda: pynvml.nvmlDeviceGetPciInfo(lost),
            lambda: pynvml.nvmlDeviceGetMemoryInfo(lost),
            lambda: pynvml.nvmlDeviceGetCurrPcieLinkWidth(lost),
            lambda: pynvml.nvmlDeviceGetClockInfo(lost, 0),
            lambda: pynvml.nvmlDeviceGetTemperature(lost, 0),
            lambda: pynvml.nvmlDeviceGetFieldValues(lost, [82]),
            lambda: pynvml.nvmlDeviceGetPowerUsage(lost),
            lambda: pynvml.nvmlDeviceGetPersistenceMode(lost),
            lambda: pynvml.nvmlDeviceGetRemappedRows(lost),
            lambda: pynvml.nvmlDeviceGetNvLinkState(lost, 0),
            lambda: pynvml.nvmlDeviceSetGpuLockedClocks(lost, 1140, 1140),
            lambda: pynvml.nvmlDeviceGetP2PStatus(lost, other, 0),
            lambda: pynvml.nvmlDeviceGetP2PStatus(other, lost, 0),
        ]
        for call in calls:
            with pytest.raises(pynvml.NVMLError_GpuIsLost):
                call()


# ---- state that behaves like hardware --------------------------------------------------------
def test_lock_clamps_validates_and_clears_gpu_idle(node, tmp_path):
    with node(HEALTHY, state=tmp_path / "run"):
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        sm = lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)  # noqa: E731
        reasons = lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)  # noqa: E731
        assert (sm(), reasons()) == (210, 1)
        pynvml.nvmlDeviceSetGpuLockedClocks(h, 1200, 1260)
        assert (sm(), reasons()) == (1200, 0)
        assert (
            tmp_path / "run" / "00000000:04:00.0.gpu-locked-clocks"
        ).read_text() == "1200 1260\n"
        pynvml.nvmlDeviceSetGpuLockedClocks(h, 900, 1000)  # below the lowest: raised to it
        assert sm() == 1140
        pynvml.nvmlDeviceSetGpuLockedClocks(h, 1500, 1600)  # above the highest: lowered to it
        assert sm() == 1260
        pynvml.nvmlDeviceSetGpuLockedClocks(h, 1140, pynvml.NVML_CLOCK_LIMIT_ID_TDP)
        assert sm() == 1140
        for lo, hi in ((0, 1140), (1140, 3001), (1260, 1140)):
            with pytest.raises(pynvml.NVMLError_InvalidArgument):
                pynvml.nvmlDeviceSetGpuLockedClocks(h, lo, hi)
        assert sm() == 1140  # a rejected call changes nothing
        assert pynvml.nvmlDeviceGetClockInfo(pynvml.nvmlDeviceGetHandleByIndex(1), 1) == 210
        pynvml.nvmlDeviceResetGpuLockedClocks(h)
        assert (sm(), reasons()) == (210, 1)
        pynvml.nvmlDeviceSetMemoryLockedClocks(h, 1215, 1215)
        assert pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM) == 1215
        pynvml.nvmlDeviceResetMemoryLockedClocks(h)
        pynvml.nvmlDeviceSetPersistenceMode(h, 0)
        assert pynvml.nvmlDeviceGetPersistenceMode(h) == 0
        assert pynvml.nvmlDeviceGetPersistenceMode(pynvml.nvmlDeviceGetHandleByIndex(1)) == 1
        pynvml.nvmlDeviceSetPersistenceMode(h, 1)
        assert pynvml.nvmlDeviceGetPersistenceMode(h) == 1


def test_lock_ignored_gpu_accepts_the_call_and_stays_idle(node):
    with node("fault-clock-lock-ignored"):
        h = pynvml.nvmlDeviceGetHandleByIndex(3)
        pynvml.nvmlDeviceSetGpuLockedClocks(h, 1140, 1140)
        assert pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM) == 210
        assert (
            pynvml.nvmlDeviceGetCurrentClocksEventReasons(h) & pynvml.nvmlClocksEventReasonGpuIdle
        )


def test_unwritable_state_dir_is_no_permission(node, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with node(HEALTHY, state=blocker / "state"):
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        with pytest.raises((pynvml.NVMLError_NoPermission, pynvml.NVMLError_Unknown)):
            pynvml.nvmlDeviceSetGpuLockedClocks(h, 1140, 1140)


def test_xid_events_arrive_after_registration_then_timeout(node):
    with node("fault-xid-79"):
        gpu2 = pynvml.nvmlDeviceGetHandleByIndex(2)
        assert pynvml.nvmlDeviceGetSupportedEventTypes(gpu2) & pynvml.nvmlEventTypeXidCriticalError
        events = pynvml.nvmlEventSetCreate()
        try:
            with pytest.raises(pynvml.NVMLError_Timeout):
                pynvml.nvmlEventSetWait(events, 0)  # nothing registered yet
            with pytest.raises(pynvml.NVMLError_NotSupported):
                # 0x20 lies outside the supported mask (0xFF9F, as a real 580 driver answers)
                pynvml.nvmlDeviceRegisterEvents(gpu2, 0x20, events)
            for i in range(4):
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
                pynvml.nvmlDeviceRegisterEvents(h, pynvml.nvmlEventTypeXidCriticalError, events)
            data = pynvml.nvmlEventSetWait_v2(events, 10)
            assert pynvml.nvmlDeviceGetIndex(data.device) == 2
            assert (data.eventType, data.eventData) == (pynvml.nvmlEventTypeXidCriticalError, 79)
            with pytest.raises(pynvml.NVMLError_Timeout):
                pynvml.nvmlEventSetWait_v2(events, 1)
        finally:
            pynvml.nvmlEventSetFree(events)


# ---- another process, through LD_LIBRARY_PATH only ------------------------------------------
CHILD = """
import json, sys, pynvml
from gpubox.sim import nvml
pynvml.nvmlInit()
assert pynvml.nvmlLib._name == "libnvidia-ml.so.1", pynvml.nvmlLib._name  # the plain loader
action = sys.argv[1]
if action == "lock":
    for i in range(pynvml.nvmlDeviceGetCount()):
        pynvml.nvmlDeviceSetGpuLockedClocks(pynvml.nvmlDeviceGetHandleByIndex(i), 1140, 1140)
print(json.dumps(nvml.snapshot()))
pynvml.nvmlShutdown()
"""


def child(lib: Path, scenario_file: Path, state: Path, action: str = "read") -> dict[str, Any]:
    env = nvml.environment(scenario_file, state)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, action], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_other_process_via_ld_library_path_reads_the_same(node, lib, tmp_path):
    scenario_file = scenario.resolve_to_file(HEALTHY, tmp_path / "s.json")
    with node(HEALTHY):
        here = json.loads(json.dumps(nvml.snapshot()))  # tuples -> lists, as JSON gives them
    assert child(lib, scenario_file, tmp_path / "state") == here == model(scenario.load(HEALTHY))


def test_lock_survives_processes_and_is_gone_after_a_reboot(lib, tmp_path):
    scenario_file = scenario.resolve_to_file(FAULT_PARENT, tmp_path / "s.json")
    state = tmp_path / "run" / "gpubox-sim"
    locker = child(lib, scenario_file, state, "lock")
    later = child(lib, scenario_file, state)
    for got in (locker, later):
        assert [got[f"gpu[{i}].clock.sm"] for i in range(4)] == [1140] * 4
        assert [got[f"gpu[{i}].clocks_event_reasons"] for i in range(4)] == [0] * 4
    shutil.rmtree(tmp_path / "run")  # a reboot: /run is a fresh tmpfs
    after = child(lib, scenario_file, state)
    assert [after[f"gpu[{i}].clock.sm"] for i in range(4)] == [210] * 4
    assert [after[f"gpu[{i}].clocks_event_reasons"] for i in range(4)] == [1] * 4
