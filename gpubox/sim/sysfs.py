"""The simulated node's sysfs: a scenario's ``pcie_tree`` as the folders and files the kernel shows.

:func:`render` writes, under a root folder, what ``/sys`` holds for the PCI devices of the tree
(root ports, switch ports, GPUs): ``devices/pci0000:00/<root port>/<switch up>/<switch down>/<gpu>``
with ``vendor``, ``device``, ``class``, ``current_link_speed``/``_width``,
``max_link_speed``/``_width``, ``numa_node``, ``aer_dev_correctable``/``_nonfatal``/``_fatal``
(only where the entry has AER) and a binary ``config`` (type 0/1 header, PCI Express capability
with port type and link registers, AER and ACS extended capabilities), and the
``bus/pci/devices/<bus id>`` links into that tree. Formats follow the kernel's
(drivers/pci/pci-sysfs.c, drivers/pci/pcie/aer.c) and the PCIe base spec's register layout, so
:mod:`gpubox.pcie_path` reads it exactly as it reads a real ``/sys``.

A link's state is rendered at both of its ends: a port's ``current_link_*`` are those of the
device below it (a GPU's from its NVML link, ``gpus[slot].pcie``; a switch's upstream port from
its ``gen``/``width``), so a fault changes one value and both ends agree. A GPU that is not
present is not rendered (it fell off the bus); the port above it then shows a link that is down.

:func:`install` replaces a tree atomically (a symlink swapped by rename), so a probe running at
that moment reads the old tree or the new one, never half of one.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from gpubox.sim.scenario import ACS_NAMES, AER_CORRECTABLE, AER_UNCORRECTABLE

SPEEDS = {1: "2.5 GT/s PCIe", 2: "5.0 GT/s PCIe", 3: "8.0 GT/s PCIe", 4: "16.0 GT/s PCIe"}
SPEEDS |= {5: "32.0 GT/s PCIe", 6: "64.0 GT/s PCIe"}
PORT_TYPE = {"gpu": 0x0, "root_port": 0x4, "switch_upstream": 0x5, "switch_downstream": 0x6}
CLASS = {"gpu": 0x030200}  # 3D controller; every port is a PCI-to-PCI bridge, 0x060400
ACS_CAPABILITY = 0x005F  # SV TB RR CR UF EC: what a PLX switch port or an AMD root port offers
_PCIE_CAP, _AER_AT, _ACS_AT = 0x40, 0x100, 0x148


def _gpu_bus_id(nvml_bus_id: str) -> str:
    """``00000000:04:00.0`` (NVML) -> ``0000:04:00.0`` (sysfs)."""
    domain, rest = nvml_bus_id.split(":", 1)
    return f"{int(domain, 16):04x}:{rest.lower()}"


def devices(doc: dict) -> dict[str, dict[str, Any]]:
    """Every device to render, by tree key: bus id, role, parent key, identity, link, AER, ACS,
    NUMA node, as the files will show them (links resolved from the device below each port)."""
    tree = doc.get("pcie_tree") or {}
    gpus = {g["slot"]: g for g in doc.get("gpus", [])}  # present GPUs only
    out: dict[str, dict[str, Any]] = {}
    for key, entry in tree.items():
        if entry["role"] == "gpu":
            gpu = gpus.get(entry["gpu"])
            if gpu is None:
                continue  # not on the bus
            vendor, device = gpu["pci_device_id"][6:10].lower(), gpu["pci_device_id"][2:6].lower()
            p = gpu["pcie"]
            out[key] = {
                "bus_id": _gpu_bus_id(gpu["bus_id"]),
                "vendor": vendor,
                "device": device,
                "link": (p["gen_current"], p["width_current"]),
                "max": (p["gen_max"], p["width_max"]),
                "acs": None,
                "numa_node": None,
                **{k: entry[k] for k in ("role", "parent", "aer")},
            }
        else:
            link = (entry["gen"], entry["width"]) if entry["role"] == "switch_upstream" else None
            out[key] = {
                "link": link,
                "max": (entry["max_gen"], entry["max_width"]),
                **{
                    k: entry[k]
                    for k in ("role", "parent", "bus_id", "vendor", "device", "aer", "acs")
                },
                "numa_node": entry["numa_node"],
            }
    for key, dev in out.items():  # a port shows the link below it: down (0) when nothing is there
        if dev["role"] in ("root_port", "switch_downstream"):
            child = next((d for d in out.values() if d["parent"] == key), None)
            dev["link"] = child["link"] if child else (dev["max"][0], 0)
        numa, up = dev["numa_node"], dev["parent"]
        while numa is None and up is not None:  # the NUMA node is the root port's
            numa, up = out[up]["numa_node"], out[up]["parent"]
        dev["numa"] = -1 if numa is None else numa
    return out


def config_space(dev: dict, secondary: int = 0, subordinate: int = 0) -> bytes:
    """The 4096-byte config space ``lspci -xxxx`` would show for ``dev`` (registers gpubox reads
    and what a reader needs to find them; the rest zero)."""
    data = bytearray(4096)
    bridge = dev["role"] != "gpu"
    struct.pack_into("<HH", data, 0x00, int(dev["vendor"], 16), int(dev["device"], 16))
    struct.pack_into("<HH", data, 0x04, 0x0406, 0x0010)  # memory + bus master; capabilities list
    klass = CLASS.get(dev["role"], 0x060400)
    data[0x09:0x0C] = bytes((klass & 0xFF, (klass >> 8) & 0xFF, klass >> 16))
    data[0x0E] = 0x01 if bridge else 0x00
    if bridge:
        bus = int(dev["bus_id"].split(":")[1], 16)
        data[0x18:0x1B] = bytes((bus, secondary, subordinate))
    data[0x34] = _PCIE_CAP
    port_type = PORT_TYPE[dev["role"]]
    struct.pack_into("<BBH", data, _PCIE_CAP, 0x10, 0x00, 0x0002 | port_type << 4)
    max_gen, max_width = dev["max"]
    gen, width = dev["link"]
    struct.pack_into("<I", data, _PCIE_CAP + 0x0C, max_gen | max_width << 4)  # Link Capabilities
    struct.pack_into("<H", data, _PCIE_CAP + 0x12, gen | width << 4)  # Link Status
    chain = []
    if dev["aer"] is not None:
        chain.append((_AER_AT, 0x0001))
    if dev["acs"] is not None:
        chain.append((_ACS_AT, 0x000D))
    if chain and chain[0][0] != _AER_AT:
        chain[0] = (_AER_AT, chain[0][1])  # the first extended capability sits at 0x100
    for i, (at, cap) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 0
        struct.pack_into("<I", data, at, cap | 1 << 16 | nxt << 20)
        if cap == 0x000D:
            control = sum(1 << ACS_NAMES.index(name) for name in dev["acs"])
            struct.pack_into("<HH", data, at + 4, ACS_CAPABILITY, control)
    return bytes(data)


def _aer_text(counters: dict[str, int], names: tuple[str, ...], total_key: str) -> str:
    lines = [f"{name} {counters.get(name, 0)}" for name in names]
    return "\n".join([*lines, f"{total_key} {sum(counters.values())}"]) + "\n"


def render(doc: dict, root: str | os.PathLike) -> Path:
    """Write the resolved scenario ``doc``'s PCIe tree as a sysfs under ``root``; return it."""
    root = Path(root)
    devs = devices(doc)
    folders: dict[str, Path] = {}

    def folder(key: str) -> Path:
        if key not in folders:
            dev = devs[key]
            if dev["parent"] is None:
                domain, bus = dev["bus_id"].split(":")[:2]
                base = root / "devices" / f"pci{domain}:{bus}"
            else:
                base = folder(dev["parent"])
            folders[key] = base / dev["bus_id"]
        return folders[key]

    links = root / "bus" / "pci" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    buses = {key: int(d["bus_id"].split(":")[1], 16) for key, d in devs.items()}
    for key, dev in devs.items():
        path = folder(key)
        path.mkdir(parents=True, exist_ok=True)
        below = [buses[k] for k in _descendants(devs, key)]
        (path / "config").write_bytes(
            config_space(dev, min(below, default=0), max(below, default=0))
        )
        klass = CLASS.get(dev["role"], 0x060400)
        gen, width = dev["link"]
        max_gen, max_width = dev["max"]
        files = {
            "vendor": f"0x{dev['vendor']}",
            "device": f"0x{dev['device']}",
            "class": f"0x{klass:06x}",
            "current_link_speed": SPEEDS.get(gen, "Unknown") if width else "Unknown",
            "current_link_width": str(width),
            "max_link_speed": SPEEDS.get(max_gen, "Unknown"),
            "max_link_width": str(max_width),
            "numa_node": str(dev["numa"]),
        }
        if dev["aer"] is not None:
            aer = dev["aer"]
            files["aer_dev_correctable"] = _aer_text(
                aer["correctable"], AER_CORRECTABLE, "TOTAL_ERR_COR"
            )
            files["aer_dev_nonfatal"] = _aer_text(
                aer["nonfatal"], AER_UNCORRECTABLE, "TOTAL_ERR_NONFATAL"
            )
            files["aer_dev_fatal"] = _aer_text(aer["fatal"], AER_UNCORRECTABLE, "TOTAL_ERR_FATAL")
        for name, text in files.items():
            (path / name).write_text(text + ("" if text.endswith("\n") else "\n"))
        os.symlink(os.path.relpath(path, links), links / dev["bus_id"])
    return root


def _descendants(devs: dict, key: str) -> list[str]:
    out = []
    for k, d in devs.items():
        if d["parent"] == key:
            out += [k, *_descendants(devs, k)]
    return out


def install(doc: dict, link: str | os.PathLike) -> Path:
    """Render ``doc``'s tree next to ``link`` and point ``link`` (a symlink) at it atomically;
    the previous tree is removed. Returns the new tree's folder."""
    link = Path(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f"{link.name}-", dir=link.parent))
    os.chmod(new, 0o755)
    render(doc, new)
    old = Path(os.path.realpath(link)) if link.is_symlink() else None
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)  # a tree from before trees were swapped by link
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    os.symlink(new.name, tmp)
    os.replace(tmp, link)
    if old is not None and old != new and old.parent == link.parent:
        shutil.rmtree(old, ignore_errors=True)
    return new
