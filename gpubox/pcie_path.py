"""Each GPU's PCIe path, read from sysfs: every hop from the GPU up to its root port.

NVML reports only the link between a GPU and the port right above it. A GPU behind a PCIe switch
reads Gen3 x16 there even when the switch's own uplink to the host runs at x4; sysfs knows every
hop. :func:`walk` follows the GPU's device folder up through its parents
(``/sys/bus/pci/devices/0000:0f:00.0`` is a link into ``/sys/devices/pci0000:00/0000:00:01.2/
0000:0d:00.0/0000:0e:10.0/0000:0f:00.0``) and reads, per hop, what the kernel exposes::

    >>> path = walk("0000:0f:00.0", root="/sys")                      # doctest: +SKIP
    >>> [(h["bus_id"], h["role"], h["link"]["width"]) for h in path["hops"]]  # doctest: +SKIP
    [('0000:0f:00.0', 'gpu', 16), ('0000:0e:10.0', 'switch_downstream', 16),
     ('0000:0d:00.0', 'switch_upstream', 4), ('0000:00:01.2', 'root_port', 4)]

Per hop: bus id, role (``gpu``, ``switch_downstream``, ``switch_upstream``, ``root_port``, or
``bridge`` for anything else), vendor/device/class, the link (``current_link_speed``/``_width``,
``max_link_speed``/``_width``), the AER counters since boot (``aer_dev_correctable``,
``aer_dev_nonfatal``, ``aer_dev_fatal``), ACS control (from the config space's ACS extended
capability; reading beyond its first 64 bytes needs root) and the NUMA node. A file the kernel
does not offer (a VM, a container, an older kernel, a device without AER) is listed under the
hop's ``missing`` and its value is ``None``: never an exception. This module measures; it judges
nothing (that is :mod:`gpubox.judge_pcie`).

A link's state is read at the device on its lower end (the GPU, a switch's upstream port): that
device's ``current_link_*`` describe the link above it, while a port's (root or downstream)
describe the link below it, so every link appears at both of its ends.

The root (``/sys``) is a parameter: tests and the simulated node point it at a prepared tree
(``software.sysfs_root``).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable

TYPE_CHECKING = False  # no typing import at run time: `gpubox probe` starts faster
if TYPE_CHECKING:
    from typing import Any

DEFAULT_ROOT = "/sys"
ROOT_ENV = "GPUBOX_SYSFS_ROOT"

_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
# GT/s per lane -> PCIe generation.
_GENERATIONS = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}
# PCI Express Capabilities register, Device/Port Type (PCIe base spec 7.5.3.2).
PORT_TYPES = {
    0x0: "endpoint",
    0x1: "legacy_endpoint",
    0x4: "root_port",
    0x5: "switch_upstream",
    0x6: "switch_downstream",
    0x7: "pcie_to_pci_bridge",
    0x8: "pci_to_pcie_bridge",
    0x9: "rc_integrated_endpoint",
    0xA: "rc_event_collector",
}
# ACS Control register bits (PCIe base spec 7.7.8.3). RR, CR and EC reroute or block peer-to-peer
# traffic inside a switch: with any of them on at a downstream port, "P2P" between two GPUs
# behind that switch goes up through the root complex (or is refused).
ACS_BITS = {
    0x01: "SrcValid",
    0x02: "TransBlk",
    0x04: "ReqRedir",
    0x08: "CmpltRedir",
    0x10: "UpstreamFwd",
    0x20: "EgressCtrl",
    0x40: "DirectTrans",
}
ACS_P2P_BITS = ("ReqRedir", "CmpltRedir", "EgressCtrl")
_CAP_PCIE, _EXT_CAP_AER, _EXT_CAP_ACS = 0x10, 0x0001, 0x000D
AER_FILES = {
    "correctable": ("aer_dev_correctable", "TOTAL_ERR_COR"),
    "nonfatal": ("aer_dev_nonfatal", "TOTAL_ERR_NONFATAL"),
    "fatal": ("aer_dev_fatal", "TOTAL_ERR_FATAL"),
}


def generation(speed: str | None) -> int | None:
    """PCIe generation of a sysfs link speed (``8.0 GT/s PCIe``, ``8 GT/s``, ``16.0 GT/s``)."""
    match = re.match(r"\s*([0-9.]+)\s*GT/s", speed or "")
    return _GENERATIONS.get(float(match[1])) if match else None


def _read(folder: str, name: str, missing: list[str]) -> str | None:
    try:
        with open(os.path.join(folder, name)) as f:
            return f.read().strip()
    except OSError:
        missing.append(name)
        return None


def _int(text: str | None, base: int = 10) -> int | None:
    try:
        return int(text, base) if text is not None else None
    except ValueError:
        return None


def parse_aer(text: str, total_key: str) -> dict[str, Any]:
    """One ``aer_dev_*`` file (``RxErr 0`` lines and a ``TOTAL_ERR_*`` line) -> ``{total, by}``,
    ``by`` holding only the non-zero counters."""
    by: dict[str, int] = {}
    total = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        if parts[0] == total_key:
            total = int(parts[1])
        elif int(parts[1]):
            by[parts[0]] = int(parts[1])
    return {"total": sum(by.values()) if total is None else total, "by": by}


def parse_config(data: bytes | Callable[[int, int], bytes]) -> dict[str, Any]:
    """What the config space says of a device: its PCIe port type and ACS control.

    ``data`` is the config space's bytes, or a reader ``read(offset, size) -> bytes`` that returns
    fewer bytes where the space ends (:func:`read_device` passes one over ``pread``: reading the
    whole 4 KiB costs one config cycle per dword, 2-20 ms per device on a VM, while the registers
    gpubox needs are a few dwords). Unprivileged reads of ``config`` return only its first 64
    bytes, root reads 256 (conventional space) or 4096 (extended space, where ACS and AER live);
    what was not readable is ``None``. ``bytes`` is how far the space was readable.
    """
    if callable(data):
        read = data
        size = 4096 if len(read(0x100, 4)) == 4 else 256 if len(read(0x40, 4)) == 4 else 0
        size = size or len(read(0, 64))
    else:
        size = len(data)

        def read(offset: int, n: int) -> bytes:
            return data[offset : offset + n]

    out: dict[str, Any] = {"bytes": size, "port_type": None, "acs": None, "aer_cap": None}
    if size < 64:
        return out

    def u8(offset):
        return read(offset, 1)[0] if offset + 1 <= size else 0

    def u16(offset):
        raw = read(offset, 2) if offset + 2 <= size else b""
        return struct.unpack("<H", raw)[0] if len(raw) == 2 else None

    def u32(offset):
        raw = read(offset, 4) if offset + 4 <= size else b""
        return struct.unpack("<I", raw)[0] if len(raw) == 4 else None

    status = u16(0x06) or 0
    pointer, seen = (u8(0x34) & 0xFC) if status & 0x10 else 0, 0
    while pointer >= 0x40 and pointer + 4 <= size and seen < 48:
        header = u16(pointer) or 0
        if header & 0xFF == _CAP_PCIE:
            flags = u16(pointer + 2)
            if flags is not None:
                out["port_type"] = PORT_TYPES.get((flags >> 4) & 0xF, f"type{(flags >> 4) & 0xF}")
            break
        pointer, seen = (header >> 8) & 0xFC, seen + 1
    if size <= 0x100:
        return out  # the extended space (ACS, AER capabilities) was not readable
    out["acs"], out["aer_cap"] = {"capable": False}, False
    offset, seen = 0x100, 0
    while offset >= 0x100 and offset + 4 <= size and seen < 96:
        header = u32(offset)
        if not header or header == 0xFFFFFFFF:
            break
        cap = header & 0xFFFF
        if cap == _EXT_CAP_AER:
            out["aer_cap"] = True
        elif cap == _EXT_CAP_ACS:
            capability, control = u16(offset + 4) or 0, u16(offset + 6) or 0
            out["acs"] = {
                "capable": True,
                "capability": f"0x{capability:04x}",
                "control": f"0x{control:04x}",
                "enabled": [name for bit, name in ACS_BITS.items() if control & bit],
            }
        offset, seen = (header >> 20) & 0xFFC, seen + 1
    return out


def _config(folder: str, missing: list[str]) -> dict[str, Any]:
    try:
        fd = os.open(os.path.join(folder, "config"), os.O_RDONLY)
    except OSError:
        missing.append("config")
        return parse_config(b"")
    try:

        def read(offset: int, n: int) -> bytes:
            try:
                return os.pread(fd, n, offset)
            except OSError:
                return b""

        return parse_config(read)
    finally:
        os.close(fd)


def read_device(folder: str) -> dict[str, Any]:
    """One hop: everything sysfs offers about the PCI device in ``folder``."""
    missing: list[str] = []
    vendor, device = _read(folder, "vendor", missing), _read(folder, "device", missing)
    speed = _read(folder, "current_link_speed", missing)
    width = _int(_read(folder, "current_link_width", missing))
    max_speed = _read(folder, "max_link_speed", missing)
    max_width = _int(_read(folder, "max_link_width", missing))
    link = None
    if speed is not None or width is not None:
        link = {
            "gen": generation(speed),
            "width": width,
            "max_gen": generation(max_speed),
            "max_width": max_width,
            "speed": speed,
            "max_speed": max_speed,
        }
    aer: dict[str, Any] | None = {}
    for kind, (name, total_key) in AER_FILES.items():
        text = _read(folder, name, missing)
        if text is None:
            aer = None  # without CONFIG_PCIEAER or the capability, none of the three exists
            continue
        if aer is not None:
            aer[kind] = parse_aer(text, total_key)
    config = _config(folder, missing)
    numa = _int(_read(folder, "numa_node", missing))
    return {
        "bus_id": os.path.basename(folder),
        "role": None,
        "role_from": None,
        "port_type": config["port_type"],
        "vendor": (vendor or "").removeprefix("0x") or None,
        "device": (device or "").removeprefix("0x") or None,
        "class": (_read(folder, "class", missing) or "").removeprefix("0x") or None,
        "link": link,
        "aer": aer,
        "acs": config["acs"],
        "config_bytes": config["bytes"],
        "numa_node": None if numa is None or numa < 0 else numa,
        "missing": missing,
    }


def _roles(hops: list[dict], top_is_root_port: bool) -> None:
    """Name each hop. The config space says it where readable (root); otherwise the position
    does: above the GPU, ports alternate downstream / upstream up to the root port."""
    for k, hop in enumerate(hops):
        if k == 0:
            hop["role"], hop["role_from"] = "gpu", "probe"
            continue
        kind = hop["port_type"]
        if kind in ("root_port", "switch_upstream", "switch_downstream"):
            hop["role"], hop["role_from"] = kind, "config"
        elif kind is not None:
            hop["role"], hop["role_from"] = "bridge", "config"
        elif k == len(hops) - 1 and top_is_root_port:
            hop["role"], hop["role_from"] = "root_port", "position"
        else:
            hop["role"] = "switch_downstream" if k % 2 == 1 else "switch_upstream"
            hop["role_from"] = "position"


def walk(bus_id: str, root: str = DEFAULT_ROOT, cache: dict | None = None) -> dict[str, Any]:
    """The PCIe path of the device ``bus_id`` (``0000:04:00.0``), from it up to its root port.

    ``cache`` (bus id -> hop) lets several GPUs behind one switch read it once. The result's
    ``available`` is False, with a ``reason``, when sysfs has no such device (a VM or a container
    without the host's sysfs); ``hops`` then is empty.
    """
    link = os.path.join(root, "bus", "pci", "devices", bus_id)
    try:
        real = os.path.realpath(link, strict=True)
    except OSError:
        reason = f"no {link}: this system's sysfs does not show the device (a VM or a container?)"
        return {"available": False, "reason": reason, "host_bridge": None, "hops": []}
    folders, here = [], real
    while _ADDRESS.match(os.path.basename(here)):
        folders.append(here)
        here = os.path.dirname(here)
    bridge = os.path.basename(here)
    hops = []
    for folder in folders:
        key = os.path.basename(folder)
        if cache is not None and key in cache:
            hops.append(dict(cache[key], role=None, role_from=None))
            continue
        hop = read_device(folder)
        if cache is not None:
            cache[key] = hop
        hops.append(dict(hop))
    # A device right on the host bridge (a VM's virtual bus) has no root port above it.
    _roles(hops, top_is_root_port=len(hops) > 1 and bridge.startswith("pci"))
    return {"available": True, "reason": None, "host_bridge": bridge, "hops": hops}


def upstream_links(path: dict) -> list[tuple[dict, dict | None]]:
    """The links above the GPU's own, as (lower end, port above it): each switch upstream port
    (or other bridge below a port) with its parent. The GPU's own link is NVML's (test_pcie)."""
    hops = path.get("hops") or []
    out = []
    for k in range(1, len(hops)):
        if hops[k].get("role") in ("switch_upstream", "bridge"):
            out.append((hops[k], hops[k + 1] if k + 1 < len(hops) else None))
    return out
