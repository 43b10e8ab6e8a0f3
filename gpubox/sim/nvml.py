"""Build and load the simulated ``libnvidia-ml.so.1`` (source: ``nvml_sim.c`` next to this file).

Two ways to put it under an unmodified pynvml:

* another process: ``LD_LIBRARY_PATH=<library_path().parent>`` (see :func:`environment`), since
  pynvml does a plain ``CDLL("libnvidia-ml.so.1")``;
* this process: :func:`load_into_pynvml`, which sets ``pynvml.nvmlLib`` so pynvml skips loading.

Either way the library reads the resolved scenario named by ``$GPUBOX_SIM_SCENARIO`` at
``nvmlInit`` and keeps its state (locks, persistence) under ``$GPUBOX_SIM_STATE_DIR``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().with_name("nvml_sim.c")
LIBRARY_NAME = "libnvidia-ml.so.1"
CFLAGS = ("-shared", "-fPIC", "-O2", "-Wall", "-Werror")


class SimBuildError(RuntimeError):
    """The simulated library could not be built."""


def cache_root() -> Path:
    """``$GPUBOX_CACHE_DIR/sim`` (default ``~/.cache/gpubox/sim``)."""
    base = os.environ.get("GPUBOX_CACHE_DIR") or Path.home() / ".cache" / "gpubox"
    return Path(base) / "sim"


def library_path() -> Path:
    """The built library, compiled with the machine's ``cc`` on first use.

    Cached under :func:`cache_root` in a folder named after the hash of the source and flags,
    so an edited source gets a fresh build and concurrent callers never see a half-written file.
    """
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    target = cache_root() / key / LIBRARY_NAME
    if target.is_file():
        return target
    compiler = os.environ.get("CC") or "cc"
    if shutil.which(compiler) is None:
        raise SimBuildError(
            f"no C compiler {compiler!r} on PATH: the simulated NVML library is built from C "
            "source on first use; install one with 'apt-get install gcc' (Debian/Ubuntu)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{LIBRARY_NAME}.", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise SimBuildError(
                f"building {SOURCE} with {compiler} failed:\n{result.stderr.strip()}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: readers see no library or a whole one
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def load_into_pynvml(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Make this process's pynvml use the simulated library (default: :func:`library_path`).

    Call before ``pynvml.nvmlInit()``. Returns the loaded library.
    """
    import pynvml

    lib = ctypes.CDLL(os.fspath(path or library_path()))
    with pynvml.libLoadLock:
        pynvml.nvmlLib = lib
        # pynvml caches function pointers: drop those of any library loaded before.
        pynvml._nvmlGetFunctionPointer_cache.clear()
    return lib


def environment(
    scenario_file: str | os.PathLike,
    state_dir: str | os.PathLike | None = None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """An environment for a child process whose pynvml should load the simulated library."""
    env = dict(os.environ if base is None else base)
    folder = str(library_path().parent)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (folder, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["GPUBOX_SIM_SCENARIO"] = os.fspath(scenario_file)
    if state_dir is not None:
        env["GPUBOX_SIM_STATE_DIR"] = os.fspath(state_dir)
    return env


# ---- One full read of everything the simulated library serves, through pynvml ----
P2P_CAPS = ("read", "write", "nvlink", "atomics", "prop")


def _ask(fn: Any, *args: Any) -> Any:
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        return f"ERROR_{e.value}"


def _get(value: Any, attr: str) -> Any:
    """A struct member, or the error string that came back instead of the struct."""
    return value if isinstance(value, str) else getattr(value, attr)


def snapshot() -> dict[str, Any]:
    """Every value the simulated library answers, as a flat ``{key: value}`` dict.

    Assumes ``nvmlInit`` was called. An NVML error becomes the string ``"ERROR_<code>"``, so a
    fault shows up as a changed value. Keys: ``system.*``, ``count``, ``gpu[i].*`` and
    ``p2p[i][j].<cap>`` for every ordered pair (capability passed as a plain int: the
    ``NVML_P2P_CAPS_INDEX_READ`` constant is a tuple in nvidia-ml-py and ctypes rejects it).
    """
    import pynvml as n

    out: dict[str, Any] = {
        "system.driver_version": _ask(n.nvmlSystemGetDriverVersion),
        "system.cuda_driver_version": _ask(n.nvmlSystemGetCudaDriverVersion),
        "system.cuda_driver_version_v2": _ask(n.nvmlSystemGetCudaDriverVersion_v2),
        "system.nvml_version": _ask(n.nvmlSystemGetNVMLVersion),
    }
    count = out["count"] = _ask(n.nvmlDeviceGetCount)
    handles = []
    for i in range(count if isinstance(count, int) else 0):
        h = _ask(n.nvmlDeviceGetHandleByIndex, i)
        g = f"gpu[{i}]."
        if isinstance(h, str):
            out[g + "handle"] = h
            handles.append(None)
            continue
        handles.append(h)
        pci = _ask(n.nvmlDeviceGetPciInfo_v3, h)
        mem = _ask(n.nvmlDeviceGetMemoryInfo, h)
        mem2 = _ask(n.nvmlDeviceGetMemoryInfo, h, n.nvmlMemory_v2)
        util = _ask(n.nvmlDeviceGetUtilizationRates, h)
        mem_clocks = _ask(n.nvmlDeviceGetSupportedMemoryClocks, h)
        graphics_clocks = mem_clocks  # one list per supported memory clock, or the error
        if isinstance(mem_clocks, list):
            graphics_clocks = [
                _ask(n.nvmlDeviceGetSupportedGraphicsClocks, h, m) for m in mem_clocks
            ]
        hbm = fields = _ask(n.nvmlDeviceGetFieldValues, h, [n.NVML_FI_DEV_MEMORY_TEMP])
        if not isinstance(fields, str):  # the call succeeded; the entry has its own code
            ok = fields[0].nvmlReturn == n.NVML_SUCCESS
            hbm = fields[0].value.uiVal if ok else f"ERROR_{fields[0].nvmlReturn}"
        rows = _ask(n.nvmlDeviceGetRemappedRows, h)
        links = []
        for link in range(n.NVML_NVLINK_MAX_LINKS):
            state = _ask(n.nvmlDeviceGetNvLinkState, h, link)
            if state == f"ERROR_{n.NVML_ERROR_INVALID_ARGUMENT}":
                break  # past the last link
            links.append(state)
            if isinstance(state, str):
                break  # NOT_SUPPORTED: no links at all
        out.update(
            {
                g + "index": _ask(n.nvmlDeviceGetIndex, h),
                g + "name": _ask(n.nvmlDeviceGetName, h),
                g + "uuid": _ask(n.nvmlDeviceGetUUID, h),
                g + "serial": _ask(n.nvmlDeviceGetSerial, h),
                g + "pci.bus_id": _get(pci, "busId"),
                g + "pci.bus_id_legacy": _get(pci, "busIdLegacy"),
                g + "pci.domain": _get(pci, "domain"),
                g + "pci.bus": _get(pci, "bus"),
                g + "pci.device": _get(pci, "device"),
                g + "pci.device_id": _get(pci, "pciDeviceId"),
                g + "pci.subsystem_id": _get(pci, "pciSubSystemId"),
                g + "memory.total": _get(mem, "total"),
                g + "memory.used": _get(mem, "used"),
                g + "memory.free": _get(mem, "free"),
                g + "memory_v2.reserved": _get(mem2, "reserved"),
                g + "memory_v2.used": _get(mem2, "used"),
                g + "pcie.gen_current": _ask(n.nvmlDeviceGetCurrPcieLinkGeneration, h),
                g + "pcie.gen_max": _ask(n.nvmlDeviceGetMaxPcieLinkGeneration, h),
                g + "pcie.width_current": _ask(n.nvmlDeviceGetCurrPcieLinkWidth, h),
                g + "pcie.width_max": _ask(n.nvmlDeviceGetMaxPcieLinkWidth, h),
                g + "pcie.replay_counter": _ask(n.nvmlDeviceGetPcieReplayCounter, h),
                g + "clock.graphics": _ask(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_GRAPHICS),
                g + "clock.sm": _ask(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
                g + "clock.mem": _ask(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_MEM),
                g + "clock.video": _ask(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_VIDEO),
                g + "max_clock.graphics": _ask(
                    n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_GRAPHICS
                ),
                g + "max_clock.sm": _ask(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_SM),
                g + "max_clock.mem": _ask(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_MEM),
                g + "max_clock.video": _ask(n.nvmlDeviceGetMaxClockInfo, h, n.NVML_CLOCK_VIDEO),
                g + "supported_memory_clocks": mem_clocks,
                g + "supported_graphics_clocks": graphics_clocks,
                g + "clocks_event_reasons": _ask(n.nvmlDeviceGetCurrentClocksEventReasons, h),
                g + "clocks_throttle_reasons": _ask(n.nvmlDeviceGetCurrentClocksThrottleReasons, h),
                g + "temperature": _ask(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
                g + "memory_temperature": hbm,
                g + "power_usage": _ask(n.nvmlDeviceGetPowerUsage, h),
                g + "enforced_power_limit": _ask(n.nvmlDeviceGetEnforcedPowerLimit, h),
                g + "power_management_limit": _ask(n.nvmlDeviceGetPowerManagementLimit, h),
                g + "persistence_mode": _ask(n.nvmlDeviceGetPersistenceMode, h),
                g + "performance_state": _ask(n.nvmlDeviceGetPerformanceState, h),
                g + "utilization.gpu": _get(util, "gpu"),
                g + "utilization.memory": _get(util, "memory"),
                g + "ecc_mode": _ask(n.nvmlDeviceGetEccMode, h),
                g + "remapped_rows": list(rows) if isinstance(rows, tuple) else rows,
                g + "nvlink": links,
                g + "supported_event_types": _ask(n.nvmlDeviceGetSupportedEventTypes, h),
            }
        )
        for etype, ename in ((0, "corrected"), (1, "uncorrected")):
            for ctype, cname in ((0, "volatile"), (1, "aggregate")):
                out[f"{g}ecc.{cname}.{ename}"] = _ask(
                    n.nvmlDeviceGetTotalEccErrors, h, etype, ctype
                )
        out[g + "xid_events"] = _xids(h)
    for i, a in enumerate(handles):
        for j, b in enumerate(handles):
            if i != j and a is not None and b is not None:
                for cap, name in enumerate(P2P_CAPS):
                    out[f"p2p[{i}][{j}].{name}"] = _ask(n.nvmlDeviceGetP2PStatus, a, b, cap)
    return out


def _xids(handle: Any) -> list[int] | str:
    """The XID events the device delivers to a fresh event set (waits 0 ms once it is empty)."""
    import pynvml as n

    event_set = n.nvmlEventSetCreate()
    try:
        n.nvmlDeviceRegisterEvents(handle, n.nvmlEventTypeXidCriticalError, event_set)
        xids = []
        while True:
            try:
                data = n.nvmlEventSetWait_v2(event_set, 0)
            except n.NVMLError_Timeout:
                return xids
            xids.append(data.eventData)
    except n.NVMLError as e:
        return f"ERROR_{e.value}"
    finally:
        n.nvmlEventSetFree(event_set)
