"""One NVML snapshot of a node, as a versioned JSON document (``gpubox probe --json``).

The probe measures; it judges nothing. Every NVML call goes through :func:`_ask`, so a field that
NVML refuses is recorded as ``null`` with its error under the GPU's ``errors`` and the rest of the
snapshot is still taken; a GPU that answers ``GPU_IS_LOST`` is reported as lost::

    >>> doc = snapshot(library="/usr/lib/gpubox-sim/libnvidia-ml.so.1")  # doctest: +SKIP
    >>> doc["gpus"][0]["bus_id"], doc["p2p"]["0-1"]["read"]                # doctest: +SKIP
    ('0000:04:00.0', 'OK')

Which ``libnvidia-ml.so.1`` is used: the ``library`` argument, else ``$GPUBOX_NVML_LIBRARY``,
else the spec's ``software.nvml_library`` (passed in by callers), else the linker's default.

Each GPU's PCIe path above its own link (switch ports, root port: what NVML cannot see) is read
from sysfs by :mod:`gpubox.pcie_path` into the GPU's ``pcie_path``; the sysfs root is the
``sysfs_root`` argument, else ``$GPUBOX_SYSFS_ROOT``, else the spec's ``software.sysfs_root``
(passed in by callers), else ``/sys``.
"""

from __future__ import annotations

import ctypes
import os
import socket
import time
from datetime import UTC, datetime

import pynvml

from gpubox import busid, pcie_path, xid

TYPE_CHECKING = False  # no typing import at run time: `gpubox probe` starts faster
if TYPE_CHECKING:
    from typing import Any

SCHEMA = "gpubox.snapshot/1"
LIBRARY_ENV = "GPUBOX_NVML_LIBRARY"

# nvidia-smi topo -p2p legend, indexed by nvmlGpuP2PStatus_t.
P2P_CODES = ("OK", "CNS", "GNS", "TNS", "DR", "NS", "U")
# nvmlGpuP2PCapsIndex_t. Plain ints on purpose: nvidia-ml-py defines NVML_P2P_CAPS_INDEX_READ
# as a tuple (a trailing comma), which ctypes rejects.
P2P_CAPS = {"read": 0, "write": 1, "nvlink": 2, "atomics": 3}
CLOCK_EVENT_REASONS = {
    0x1: "GpuIdle",
    0x2: "ApplicationsClocksSetting",
    0x4: "SwPowerCap",
    0x8: "HwSlowdown",
    0x10: "SyncBoost",
    0x20: "SwThermalSlowdown",
    0x40: "HwThermalSlowdown",
    0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting",
}
NVLINK_MAX_LINKS = (
    18  # the most any GPU has (H100); NVML answers INVALID_ARGUMENT beyond a GPU's own
)
NVML_FI_DEV_MEMORY_TEMP = 82


class ProbeError(RuntimeError):
    """NVML could not be used at all (library missing, driver not loaded)."""


def _error_name(exc: pynvml.NVMLError) -> str:
    for name in dir(pynvml):
        if name.startswith("NVML_ERROR_") and getattr(pynvml, name) == exc.value:
            return name.removeprefix("NVML_ERROR_")
    return f"NVML_ERROR_{exc.value}"


class _Lost(Exception):
    pass


def _ask(errors: dict, field: str, call, *args):
    """Return ``call(*args)``, or record NVML's refusal under ``errors[field]`` and return None."""
    try:
        return call(*args)
    except pynvml.NVMLError as exc:
        if exc.value == pynvml.NVML_ERROR_GPU_IS_LOST:
            raise _Lost(field) from exc
        errors[field] = _error_name(exc)
        return None


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _load(library: str | None) -> str:
    """Point pynvml at ``library`` (absolute path) before nvmlInit; return what will be used."""
    library = library or os.environ.get(LIBRARY_ENV) or None
    if library:
        if not os.path.isfile(library):
            raise ProbeError(f"NVML library {library!r} does not exist")
        # nvidia-ml-py skips its own CDLL("libnvidia-ml.so.1") when nvmlLib is already set.
        current = getattr(pynvml.nvmlLib, "_name", None)
        if current != library:
            pynvml.nvmlLib = ctypes.CDLL(library)
        return library
    return "libnvidia-ml.so.1"


def snapshot(
    library: str | None = None, kernel_log: str | None = None, sysfs_root: str | None = None
) -> dict[str, Any]:
    """Take one snapshot. ``kernel_log`` replaces reading the kernel log (tests feed recorded text);
    ``sysfs_root`` is where the PCIe path walk reads sysfs (default ``/sys``)."""
    started = time.perf_counter()
    path = _load(library)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise ProbeError(
            f"NVML failed to initialise from {path}: {_error_name(exc)} ({exc}); is the NVIDIA "
            "driver installed and loaded? (a non-standard install: set software.nvml_library)"
        ) from None
    try:
        doc = _system()
        doc["nvml"]["library"] = path
        handles = []
        count = _ask(doc["errors"], "device_count", pynvml.nvmlDeviceGetCount) or 0
        for index in range(count):
            gpu, handle = _gpu(index)
            doc["gpus"].append(gpu)
            handles.append(handle)
        doc["gpu_count"] = count
        doc["p2p"] = _p2p(handles, doc["errors"])
        doc["xid_events"] = _xids(handles, doc, kernel_log)
    finally:
        pynvml.nvmlShutdown()
    _pcie_paths(doc, sysfs_root or os.environ.get(pcie_path.ROOT_ENV) or pcie_path.DEFAULT_ROOT)
    doc["probe_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return doc


def _system() -> dict[str, Any]:
    errors: dict[str, str] = {}
    driver = _ask(errors, "driver_version", pynvml.nvmlSystemGetDriverVersion)
    cuda = _ask(errors, "cuda_driver_version", pynvml.nvmlSystemGetCudaDriverVersion_v2)
    nvml = _ask(errors, "nvml_version", pynvml.nvmlSystemGetNVMLVersion)
    return {
        "schema": SCHEMA,
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "boot_id": _boot_id(),
        "nvml": {"library": None, "version": _text(nvml)},
        "driver_version": _text(driver),
        "cuda_driver_version": cuda,
        "gpu_count": 0,
        "gpus": [],
        "p2p": {},
        "xid_events": [],
        "errors": errors,
    }


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def _gpu(index: int) -> tuple[dict[str, Any], Any]:
    errors: dict[str, str] = {}
    gpu: dict[str, Any] = {"index": index, "lost": False, "errors": errors}
    try:
        handle = _ask(errors, "handle", pynvml.nvmlDeviceGetHandleByIndex, index)
        if handle is None:
            return gpu, None
        _identity(gpu, handle, errors)
        _links(gpu, handle, errors)
        _clocks(gpu, handle, errors)
        _health(gpu, handle, errors)
        gpu["nvlink"] = _nvlink(handle, errors)
        return gpu, handle
    except _Lost as lost:
        # Keep what was read before the GPU stopped answering; say where it was lost.
        gpu.update(lost=True)
        errors[str(lost)] = "GPU_IS_LOST"
        return gpu, None


def _identity(gpu, handle, errors):
    gpu["name"] = _text(_ask(errors, "name", pynvml.nvmlDeviceGetName, handle))
    gpu["uuid"] = _text(_ask(errors, "uuid", pynvml.nvmlDeviceGetUUID, handle))
    gpu["serial"] = _text(_ask(errors, "serial", pynvml.nvmlDeviceGetSerial, handle))
    pci = _ask(errors, "pci", pynvml.nvmlDeviceGetPciInfo_v3, handle)
    gpu["bus_id"] = busid.normalise(_text(pci.busId)) if pci is not None else None
    gpu["pci_device_id"] = f"0x{pci.pciDeviceId:08X}" if pci is not None else None
    gpu["pci_subsystem_id"] = f"0x{pci.pciSubSystemId:08X}" if pci is not None else None
    mem = _ask(errors, "memory", pynvml.nvmlDeviceGetMemoryInfo, handle)
    gpu["memory_total_mib"] = mem.total // (1024 * 1024) if mem is not None else None
    gpu["memory_used_mib"] = mem.used // (1024 * 1024) if mem is not None else None


def _links(gpu, handle, errors):
    gpu["pcie"] = {
        "gen_current": _ask(
            errors, "pcie.gen_current", pynvml.nvmlDeviceGetCurrPcieLinkGeneration, handle
        ),
        "gen_max": _ask(errors, "pcie.gen_max", pynvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
        "width_current": _ask(
            errors, "pcie.width_current", pynvml.nvmlDeviceGetCurrPcieLinkWidth, handle
        ),
        "width_max": _ask(errors, "pcie.width_max", pynvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
        # Link-level retransmissions since the driver loaded: a marginal cable or riser shows here
        # long before it fails.
        "replay_counter": _ask(
            errors, "pcie.replay_counter", pynvml.nvmlDeviceGetPcieReplayCounter, handle
        ),
    }


def _pcie_paths(doc: dict, root: str) -> None:
    """Every GPU's PCIe path from sysfs (each switch and root port read once)."""
    started, cache = time.perf_counter(), {}
    for gpu in doc["gpus"]:
        if gpu.get("bus_id") is None:
            gpu["pcie_path"] = {
                "available": False,
                "reason": "NVML gave no bus id for this GPU",
                "host_bridge": None,
                "hops": [],
            }
            continue
        gpu["pcie_path"] = pcie_path.walk(gpu["bus_id"], root, cache)
    doc["pcie_walk"] = {"sysfs_root": root, "ms": round((time.perf_counter() - started) * 1000, 2)}


def _clocks(gpu, handle, errors):
    def clock(name, call, kind):
        return _ask(errors, f"clocks.{name}", call, handle, kind)

    memory_mhz = clock("memory_mhz", pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_MEM)
    supported = None
    if memory_mhz is not None:
        supported = _ask(
            errors,
            "clocks.supported_graphics_mhz",
            pynvml.nvmlDeviceGetSupportedGraphicsClocks,
            handle,
            memory_mhz,
        )
    gpu["clocks"] = {
        "sm_mhz": clock("sm_mhz", pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_SM),
        "graphics_mhz": clock(
            "graphics_mhz", pynvml.nvmlDeviceGetClockInfo, pynvml.NVML_CLOCK_GRAPHICS
        ),
        "memory_mhz": memory_mhz,
        "sm_max_mhz": clock("sm_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_SM),
        "memory_max_mhz": clock(
            "memory_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, pynvml.NVML_CLOCK_MEM
        ),
        "supported_graphics_mhz": sorted(supported) if supported is not None else None,
    }
    mask = _ask(
        errors, "clock_event_reasons", pynvml.nvmlDeviceGetCurrentClocksEventReasons, handle
    )
    gpu["clock_event_reasons"] = {
        "mask": mask,
        "names": []
        if mask is None
        else [n for bit, n in CLOCK_EVENT_REASONS.items() if mask & bit],
    }


def _health(gpu, handle, errors):
    gpu["temperature_c"] = _ask(
        errors,
        "temperature_c",
        pynvml.nvmlDeviceGetTemperature,
        handle,
        pynvml.NVML_TEMPERATURE_GPU,
    )
    gpu["hbm_temperature_c"] = _memory_temperature(handle, errors)
    power = _ask(errors, "power_w", pynvml.nvmlDeviceGetPowerUsage, handle)
    gpu["power_w"] = round(power / 1000, 3) if power is not None else None
    limit = _ask(errors, "power_limit_w", pynvml.nvmlDeviceGetEnforcedPowerLimit, handle)
    gpu["power_limit_w"] = round(limit / 1000, 3) if limit is not None else None
    mode = _ask(errors, "persistence_mode", pynvml.nvmlDeviceGetPersistenceMode, handle)
    gpu["persistence_mode"] = None if mode is None else mode == pynvml.NVML_FEATURE_ENABLED
    gpu["performance_state"] = _ask(
        errors, "performance_state", pynvml.nvmlDeviceGetPerformanceState, handle
    )
    rows = _ask(errors, "remapped_rows", pynvml.nvmlDeviceGetRemappedRows, handle)
    gpu["remapped_rows"] = (
        None
        if rows is None
        else dict(zip(("correctable", "uncorrectable", "pending", "failure"), rows, strict=True))
    )
    ecc_mode = _ask(errors, "ecc.enabled", pynvml.nvmlDeviceGetEccMode, handle)
    gpu["ecc"] = {
        "enabled": None if ecc_mode is None else ecc_mode[0] == pynvml.NVML_FEATURE_ENABLED,
        "volatile_uncorrected": _ecc(handle, errors, "volatile", pynvml.NVML_VOLATILE_ECC, 1),
        "volatile_corrected": _ecc(handle, errors, "volatile", pynvml.NVML_VOLATILE_ECC, 0),
        "aggregate_uncorrected": _ecc(handle, errors, "aggregate", pynvml.NVML_AGGREGATE_ECC, 1),
        "aggregate_corrected": _ecc(handle, errors, "aggregate", pynvml.NVML_AGGREGATE_ECC, 0),
    }


def _ecc(handle, errors, scope, counter, uncorrected):
    name = f"ecc.{scope}_{'uncorrected' if uncorrected else 'corrected'}"
    return _ask(errors, name, pynvml.nvmlDeviceGetTotalEccErrors, handle, uncorrected, counter)


def _memory_temperature(handle, errors):
    values = _ask(
        errors,
        "hbm_temperature_c",
        pynvml.nvmlDeviceGetFieldValues,
        handle,
        [NVML_FI_DEV_MEMORY_TEMP],
    )
    if values is None:
        return None
    entry = values[0]
    if entry.nvmlReturn == pynvml.NVML_ERROR_GPU_IS_LOST:
        raise _Lost("hbm_temperature_c")
    if entry.nvmlReturn != pynvml.NVML_SUCCESS:
        errors["hbm_temperature_c"] = _error_name(pynvml.NVMLError(entry.nvmlReturn))
        return None
    # Memory temperature is an unsigned integer field (valueType NVML_VALUE_TYPE_UNSIGNED_INT).
    return entry.value.uiVal


def _nvlink(handle, errors):
    """``"not_supported"``, or the state of each link the GPU has (``active`` / ``inactive``)."""
    links = []
    for link in range(NVLINK_MAX_LINKS):
        try:
            state = pynvml.nvmlDeviceGetNvLinkState(handle, link)
        except pynvml.NVMLError as exc:
            if exc.value == pynvml.NVML_ERROR_GPU_IS_LOST:
                raise _Lost("nvlink") from exc
            if exc.value == pynvml.NVML_ERROR_NOT_SUPPORTED and link == 0:
                return "not_supported"
            if exc.value in (pynvml.NVML_ERROR_INVALID_ARGUMENT, pynvml.NVML_ERROR_NOT_SUPPORTED):
                break  # past this GPU's last link
            errors[f"nvlink[{link}]"] = _error_name(exc)
            continue
        links.append({"link": link, "state": "active" if state else "inactive"})
    return links


def _p2p(handles, errors) -> dict[str, dict[str, str | None]]:
    """Status for every ordered pair ``"i-j"`` and capability, as nvidia-smi topo -p2p codes."""
    matrix: dict[str, dict[str, str | None]] = {}
    for i, a in enumerate(handles):
        for j, b in enumerate(handles):
            if i == j:
                continue
            entry: dict[str, str | None] = {}
            for cap, index in P2P_CAPS.items():
                if a is None or b is None:
                    entry[cap] = None  # a lost GPU has no P2P status
                    continue
                try:
                    status = pynvml.nvmlDeviceGetP2PStatus(a, b, index)
                    entry[cap] = P2P_CODES[status] if 0 <= status < len(P2P_CODES) else "U"
                except pynvml.NVMLError as exc:
                    errors[f"p2p.{i}-{j}.{cap}"] = _error_name(exc)
                    entry[cap] = None
            matrix[f"{i}-{j}"] = entry
    return matrix


def _xids(handles, doc, kernel_log) -> list[dict[str, Any]]:
    """XID errors since boot: the kernel log (every driver logs them) plus pending NVML events."""
    by_bus = {g.get("bus_id"): g["index"] for g in doc["gpus"] if g.get("bus_id")}
    events = []
    text = kernel_log if kernel_log is not None else xid.read_kernel_log(doc["errors"])
    for event in xid.parse_kernel_log(text or ""):
        event["gpu"] = by_bus.get(event["bus_id"])
        events.append(event)
    events.extend(_nvml_xid_events(handles, doc["errors"]))
    seen, unique = set(), []
    for e in events:
        key = (e["gpu"], e["xid"])
        if key not in seen:
            seen.add(key)
            unique.append(e)
    return unique


def _nvml_xid_events(handles, errors) -> list[dict[str, Any]]:
    live = [h for h in handles if h is not None]
    if not live:
        return []
    try:
        event_set = pynvml.nvmlEventSetCreate()
    except pynvml.NVMLError as exc:
        errors["xid_events.nvml"] = _error_name(exc)
        return []
    index_of = {}
    try:
        for index, handle in enumerate(handles):
            if handle is None:
                continue
            try:
                pynvml.nvmlDeviceRegisterEvents(
                    handle, pynvml.nvmlEventTypeXidCriticalError, event_set
                )
                index_of[ctypes.cast(handle, ctypes.c_void_p).value] = index
            except pynvml.NVMLError as exc:
                errors[f"xid_events.nvml.gpu{index}"] = _error_name(exc)
        found = []
        for _ in range(64):  # bounded: never wait on a chatty GPU forever
            try:
                data = pynvml.nvmlEventSetWait_v2(event_set, 0)
            except pynvml.NVMLError:
                break  # TIMEOUT: no more pending events
            index = index_of.get(ctypes.cast(data.device, ctypes.c_void_p).value)
            found.append(
                {
                    "gpu": index,
                    "bus_id": None,
                    "xid": int(data.eventData),
                    "source": "nvml",
                    "message": None,
                }
            )
        return found
    finally:
        pynvml.nvmlEventSetFree(event_set)
