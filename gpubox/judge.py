"""Judging: compare a node spec with an NVML snapshot and return verdicts. No I/O here.

Every function takes the spec, the snapshot (``gpubox.probe`` document) and a subject, and returns
a :class:`Verdict` whose message names the host, the GPU (index and bus id), what was expected,
what was found and the usual cause::

    >>> v = pcie(spec, snap, 0)                                    # doctest: +SKIP
    >>> v.message                                                  # doctest: +SKIP
    'home gpu0 (04:00.0): PCIe link Gen3 x4, expected at least Gen3 x16: link trained at x4: ...'

GPUs are matched by bus id (the spec lists them in NVML index order); a GPU the spec expects but
NVML does not show, or shows as lost, fails :func:`gpu_present` once, and every other per-GPU
verdict for it is ``skip`` so one fault reads as one failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpubox import busid
from gpubox.spec import NodeSpec, gpu_id, pair_id

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True)
class Verdict:
    check: str
    subject: str
    level: str
    message: str
    expected: Any = None
    found: Any = None

    @property
    def ok(self) -> bool:
        return self.level in (PASS, WARN, SKIP)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "level": self.level,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
        }


# ---- locating GPUs -----------------------------------------------------------------------------


def expected_bus_id(spec: NodeSpec, index: int) -> str | None:
    return spec.gpus[index].bus_id if index < len(spec.gpus) else None


def label(spec: NodeSpec, index: int) -> str:
    """``gpu2 (0f:00.0)``: how messages name a GPU."""
    bus = expected_bus_id(spec, index)
    return f"{gpu_id(index)} ({busid.short(bus)})" if bus else gpu_id(index)


def find_gpu(spec: NodeSpec, snap: dict, index: int) -> dict | None:
    """The snapshot entry for the spec's GPU ``index``: by bus id, else by NVML index."""
    bus = expected_bus_id(spec, index)
    for gpu in snap.get("gpus", []):
        if bus is not None and gpu.get("bus_id") == bus:
            return gpu
        if bus is None and gpu.get("index") == index:
            return gpu
    if bus is not None:
        # A lost GPU may have been lost before its bus id was read: fall back to its NVML index.
        for gpu in snap.get("gpus", []):
            if gpu.get("lost") and gpu.get("bus_id") is None and gpu.get("index") == index:
                return gpu
    return None


def _usable(spec, snap, index, check, host):
    """The GPU's snapshot entry, or a ``skip`` verdict when it is absent or lost."""
    gpu = find_gpu(spec, snap, index)
    if gpu is None or gpu.get("lost"):
        state = "lost" if gpu is not None else "not found"
        return None, Verdict(
            check,
            gpu_id(index),
            SKIP,
            f"{host} {label(spec, index)} is {state}: see gpu_present[{gpu_id(index)}]",
        )
    return gpu, None


def _fail(check, subject, message, expected=None, found=None):
    return Verdict(check, subject, FAIL, message, expected, found)


def _pass(check, subject, message, expected=None, found=None):
    return Verdict(check, subject, PASS, message, expected, found)


# ---- node-wide ---------------------------------------------------------------------------------


def gpu_count(spec: NodeSpec, snap: dict) -> Verdict:
    host, found, want = spec.host, snap.get("gpu_count"), spec.gpu_count
    if found == want:
        return _pass("gpu_count", "node", f"{host}: {found} GPUs visible", want, found)
    hint = (
        "a GPU is missing from the bus: check its seating, power cables and the PCIe "
        "switch uplink; `lspci -d 10de:` lists what the kernel sees"
        if (found or 0) < want
        else "more GPUs than the spec lists: update gpu_count and gpus"
    )
    missing = [label(spec, i) for i in range(want) if find_gpu(spec, snap, i) is None]
    absent = f" (not found: {', '.join(missing)})" if missing else ""
    return _fail(
        "gpu_count",
        "node",
        f"{host}: NVML shows {found} GPUs, expected {want}{absent}: {hint}",
        want,
        found,
    )


def driver_version(spec: NodeSpec, snap: dict) -> Verdict:
    host, want, found = spec.host, spec.software.driver_version, snap.get("driver_version")
    if found == want:
        return _pass("driver_version", "node", f"{host}: driver {found}", want, found)
    return _fail(
        "driver_version",
        "node",
        f"{host}: NVIDIA driver {found}, expected the pinned {want}: the driver was upgraded or "
        "downgraded outside the deploy (or the node awaits a reboot after one): re-run the deploy",
        want,
        found,
    )


# ---- per GPU -----------------------------------------------------------------------------------


def gpu_present(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "gpu_present", gpu_id(index), spec.host, label(spec, index)
    gpu = find_gpu(spec, snap, index)
    bus = expected_bus_id(spec, index)
    if gpu is None:
        seen = ", ".join(busid.short(g["bus_id"]) for g in snap.get("gpus", []) if g.get("bus_id"))
        return _fail(
            check,
            subject,
            f"{host} {who}: not found; NVML shows bus ids [{seen}]: the GPU fell off the bus or is "
            "not seated/powered; check `lspci -d 10de:` and the kernel log",
            bus,
            None,
        )
    if gpu.get("lost"):
        where = ", ".join(gpu.get("errors", {}))
        return _fail(
            check,
            subject,
            f"{host} {who}: GPU is lost (NVML answered GPU_IS_LOST at {where}): it fell off the "
            "bus (often XID 79): check power, cooling and seating, then reboot",
            "present",
            "lost",
        )
    problems = []
    if gpu.get("name") is None or not spec.name_matches(index, gpu["name"]):
        problems.append(f"name {gpu.get('name')!r}, expected {spec.gpu_name_pattern(index)!r}")
    if spec.gpu_memory_mib is not None and gpu.get("memory_total_mib") != spec.gpu_memory_mib:
        problems.append(
            f"memory {gpu.get('memory_total_mib')} MiB, expected {spec.gpu_memory_mib} MiB"
        )
    expected = {"name": spec.gpu_name_pattern(index), "memory_mib": spec.gpu_memory_mib}
    found = {"name": gpu.get("name"), "memory_mib": gpu.get("memory_total_mib")}
    if problems:
        return _fail(
            check,
            subject,
            f"{host} {who}: {'; '.join(problems)}: a different card sits in this slot, or the "
            "spec is wrong",
            expected,
            found,
        )
    message = f"{host} {who}: {gpu['name']}, {gpu.get('memory_total_mib')} MiB"
    return _pass(check, subject, message, expected, found)


def p2p(spec: NodeSpec, snap: dict, a: int, b: int) -> Verdict:
    check, subject, host = "p2p", pair_id(a, b), spec.host
    ga, skip = _usable(spec, snap, a, check, host)
    if skip:
        return Verdict(check, subject, SKIP, skip.message)
    gb, skip = _usable(spec, snap, b, check, host)
    if skip:
        return Verdict(check, subject, SKIP, skip.message)
    want = spec.p2p.expected(a, b)
    found, wrong = {}, []
    for x, y in ((ga, gb), (gb, ga)):
        entry = snap.get("p2p", {}).get(f"{x['index']}-{y['index']}", {})
        for cap in ("read", "write"):
            status = entry.get(cap)
            found[f"{x['index']}->{y['index']} {cap}"] = status
            if status != getattr(want, cap):
                wrong.append(
                    f"{cap.upper()} {gpu_id(a if x is ga else b)}->"
                    f"{gpu_id(b if x is ga else a)} is {status}"
                )
    expected = {"read": want.read, "write": want.write}
    pair = f"{label(spec, a)} <-> {label(spec, b)}"
    if not wrong:
        return _pass(
            check,
            subject,
            f"{host} {pair}: P2P READ {want.read}, WRITE {want.write}",
            expected,
            found,
        )
    hint = {
        "CNS": "the chipset/root complex refuses P2P: keep the pair behind one PCIe switch",
        "TNS": "topology not supported: ACS redirect on the switch ports or IOMMU in translated "
        "mode (try iommu=pt and disabling ACS)",
        "GNS": "the GPU does not support P2P (consumer card or driver policy)",
        "DR": "disabled by a driver registry key (NVreg_RegistryDwords)",
        "NS": "not supported on this path",
    }
    codes = {s for s in found.values() if s and s not in (want.read, want.write)}
    why = "; ".join(hint.get(c, f"status {c}") for c in sorted(codes)) or "status unknown"
    return _fail(
        check,
        subject,
        f"{host} {pair}: {', '.join(wrong)}, expected READ {want.read} and WRITE {want.write}: {why}",
        expected,
        found,
    )


def nvlink(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "nvlink", gpu_id(index), spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    state = gpu.get("nvlink")
    if spec.nvlink == "unsupported":
        if state == "not_supported":
            return _pass(
                check, subject, f"{host} {who}: NVLink reported unsupported", "not_supported", state
            )
        active = [link["link"] for link in state or [] if link["state"] == "active"]
        inactive = [link["link"] for link in state or [] if link["state"] != "active"]
        what = []
        if active:
            what.append(f"links {active} active")
        if inactive:
            what.append(f"links {inactive} present but disabled")
        return _fail(
            check,
            subject,
            f"{host} {who}: NVLink {', '.join(what) or 'state unreadable'}, expected NVML to "
            "report NVLink unsupported: this is not the GPU the spec describes (PG199 has NVLink "
            "fused off), or the spec should say nvlink: active",
            "not_supported",
            state,
        )
    links = state if isinstance(state, list) else []
    down = [link["link"] for link in links if link["state"] != "active"]
    if links and not down:
        return _pass(
            check, subject, f"{host} {who}: {len(links)} NVLink links active", "active", state
        )
    return _fail(
        check,
        subject,
        f"{host} {who}: NVLink {'unsupported' if state == 'not_supported' else f'links {down} down'}"
        ", expected every link active: reseat the NVLink bridge/board, check fabric manager",
        "active",
        state,
    )


def clock_locked(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "clock_locked", gpu_id(index), spec.host, label(spec, index)
    want = spec.clocks.graphics_mhz
    if want is None:
        return Verdict(
            check, subject, SKIP, f"{host}: no clock lock in the spec (clocks.graphics_mhz)"
        )
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    sm = gpu.get("clocks", {}).get("sm_mhz")
    reasons = gpu.get("clock_event_reasons", {}).get("names", [])
    tolerance = spec.clocks.tolerance_mhz
    if sm is not None and abs(sm - want) <= tolerance and "GpuIdle" not in reasons:
        return _pass(check, subject, f"{host} {who}: SM clock {sm} MHz, locked at {want}", want, sm)
    if "GpuIdle" in reasons:
        hint = (
            "the GPU idles at its own clock, so the lock is not in force: it was lost at a "
            "reboot or never applied; check `systemctl status gpubox-clocks`"
        )
    else:
        hint = (
            "the clock is held elsewhere: another lock (nvidia-smi -lgc), thermal or power "
            f"slowdown ({', '.join(reasons) or 'no event reason reported'})"
        )
    return _fail(
        check,
        subject,
        f"{host} {who}: SM clock {sm} MHz with event reasons [{', '.join(reasons)}], expected the "
        f"lock {want} MHz (+/-{tolerance}) and no GpuIdle: {hint}",
        want,
        {"sm_mhz": sm, "reasons": reasons},
    )


def pcie(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "pcie", gpu_id(index), spec.host, label(spec, index)
    floor = spec.gpu_pcie(index)
    if floor.min_gen is None and floor.min_width is None:
        return Verdict(check, subject, SKIP, f"{host} {who}: no PCIe floor in the spec (pcie)")
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    link = gpu.get("pcie", {})
    gen, width = link.get("gen_current"), link.get("width_current")
    want = f"Gen{floor.min_gen or '-'} x{floor.min_width or '-'}"
    found = f"Gen{gen} x{width}"
    hints = []
    if floor.min_width is not None and (width is None or width < floor.min_width):
        hints.append(
            f"link trained at x{width}: reseat the GPU/riser cable, check slot "
            "bifurcation in the BIOS"
        )
    if floor.min_gen is not None and (gen is None or gen < floor.min_gen):
        hints.append(
            f"link trained at Gen{gen}: a marginal cable/riser or a BIOS slot-speed "
            "setting (GPUs also downshift when idle: check under load)"
        )
    expected = {"min_gen": floor.min_gen, "min_width": floor.min_width}
    got = {"gen": gen, "width": width}
    if hints:
        return _fail(
            check,
            subject,
            f"{host} {who}: PCIe link {found}, expected at least {want}: " + "; ".join(hints),
            expected,
            got,
        )
    return _pass(check, subject, f"{host} {who}: PCIe link {found} (floor {want})", expected, got)


def temperature(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "temperature", gpu_id(index), spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    limits = spec.limits
    t, hbm = gpu.get("temperature_c"), gpu.get("hbm_temperature_c")
    problems = []
    if t is None or t >= limits.gpu_temp_c:
        problems.append(f"GPU {t} C (ceiling {limits.gpu_temp_c:g} C)")
    if hbm is None and "hbm_temperature_c" not in gpu.get("errors", {}):
        problems.append("HBM temperature unreadable")
    elif hbm is not None and hbm >= limits.hbm_temp_c:
        problems.append(f"HBM {hbm} C (ceiling {limits.hbm_temp_c:g} C)")
    expected = {"gpu_c": limits.gpu_temp_c, "hbm_c": limits.hbm_temp_c}
    found = {"gpu_c": t, "hbm_c": hbm}
    if problems:
        return _fail(
            check,
            subject,
            f"{host} {who}: {', '.join(problems)}, expected below the ceilings: check the "
            "heatsink mounting and paste, fans and airflow; HBM is the first part to die",
            expected,
            found,
        )
    return _pass(check, subject, f"{host} {who}: GPU {t} C, HBM {hbm} C", expected, found)


def persistence(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "persistence", gpu_id(index), spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    mode = gpu.get("persistence_mode")
    if mode:
        return _pass(check, subject, f"{host} {who}: persistence mode on", True, mode)
    return _fail(
        check,
        subject,
        f"{host} {who}: persistence mode {'off' if mode is False else 'unreadable'}, expected on: "
        "nvidia-persistenced is not running (`systemctl status nvidia-persistenced`); without it "
        "the driver unloads between jobs and clock locks are lost",
        True,
        mode,
    )


def remapped_rows(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "remapped_rows", gpu_id(index), spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    rows = gpu.get("remapped_rows")
    if rows is None:
        if "remapped_rows" in gpu.get("errors", {}):
            return Verdict(check, subject, SKIP, f"{host} {who}: row remapping not supported")
        return _fail(check, subject, f"{host} {who}: remapped rows unreadable", "readable", None)
    if rows.get("pending") or rows.get("failure"):
        what = "a row remap failed" if rows.get("failure") else "a row remap is pending"
        return _fail(
            check,
            subject,
            f"{host} {who}: {what} ({rows}), expected none pending or failed: HBM had an "
            "uncorrectable error; a pending remap is applied by a GPU reset/reboot, a failed one "
            "means the card should be replaced",
            {"pending": False, "failure": False},
            rows,
        )
    return _pass(check, subject, f"{host} {who}: no pending or failed row remaps", None, rows)


def xid(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    check, subject, host, who = "xid", gpu_id(index), spec.host, label(spec, index)
    gpu = find_gpu(spec, snap, index)
    bus = expected_bus_id(spec, index)
    events = [
        e
        for e in snap.get("xid_events", [])
        if (bus is not None and e.get("bus_id") == bus)
        or (gpu is not None and e.get("gpu") == gpu.get("index"))
    ]
    if not events:
        return _pass(check, subject, f"{host} {who}: no XID since boot", [], [])
    codes = sorted({e["xid"] for e in events})
    meaning = {
        79: "GPU fell off the bus (power, riser, overheating)",
        48: "double-bit ECC error",
        63: "row remap recorded",
        64: "row remap failed",
        74: "NVLink error",
        94: "contained ECC error",
        95: "uncontained ECC error",
        13: "graphics engine exception (often an application bug)",
        31: "GPU memory page fault (often an application bug)",
    }
    why = "; ".join(f"XID {c}: {meaning.get(c, 'see NVIDIA XID catalog')}" for c in codes)
    return _fail(
        check,
        subject,
        f"{host} {who}: XID {codes} since boot, expected none: {why}",
        [],
        [e["xid"] for e in events],
    )


PER_GPU = {
    "gpu_present": gpu_present,
    "nvlink": nvlink,
    "clock_locked": clock_locked,
    "pcie": pcie,
    "temperature": temperature,
    "persistence": persistence,
    "remapped_rows": remapped_rows,
    "xid": xid,
}


def quick(spec: NodeSpec, snap: dict) -> list[Verdict]:
    """Every quick-tier verdict that needs only the snapshot (the clock unit is a systemd fact)."""
    from gpubox import judge_pcie  # it builds on this module's helpers, so it is imported here

    out = [gpu_count(spec, snap), driver_version(spec, snap)]
    for index in range(spec.gpu_count):
        out.extend(fn(spec, snap, index) for fn in PER_GPU.values())
        out.extend(fn(spec, snap, index) for fn in judge_pcie.PER_GPU.values())
    out.extend(p2p(spec, snap, a, b) for a, b in spec.pairs())
    return out


def clock_unit(spec: NodeSpec, enabled: bool, active: bool, status: str = "") -> Verdict:
    """The boot unit that re-applies the lock must be enabled (next boot) and active (this boot)."""
    check, host = "clock_unit", spec.host
    if spec.clocks.graphics_mhz is None:
        return Verdict(check, "node", SKIP, f"{host}: no clock lock in the spec")
    found = {"enabled": enabled, "active": active}
    if enabled and active:
        return _pass(
            check, "node", f"{host}: gpubox-clocks.service enabled and active", found, found
        )
    problems = [p for p, bad in (("not enabled", not enabled), ("not active", not active)) if bad]
    return _fail(
        check,
        "node",
        f"{host}: gpubox-clocks.service {' and '.join(problems)}, expected enabled and active: "
        "without it the clock lock is lost at the next reboot; re-run the deploy, or see "
        "`journalctl -u gpubox-clocks` for why the lock failed"
        + (f" ({status})" if status else ""),
        {"enabled": True, "active": True},
        found,
    )


def _diff_paths(a, b, prefix="") -> list[str]:
    """Dotted paths where two JSON-like values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff_paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return [] if a == b else [prefix or "<root>"]


def manifest(spec: NodeSpec, doc: dict | None, live: dict[str, str | None]) -> Verdict:
    """The install manifest matches this spec, and the live package versions match the manifest.

    ``live`` maps each manifest package to the version ``dpkg-query`` reports now.
    """
    check, host = "manifest", spec.host
    if doc is None:
        return _fail(
            check,
            "node",
            f"{host}: no /etc/gpubox/manifest.json, expected the deploy's "
            "install manifest: the node was not deployed by gpubox (or the deploy did not "
            "finish): run the deploy",
            "manifest",
            None,
        )
    problems = []
    drift = _diff_paths({"host": spec.host, **spec.to_data()}, doc.get("spec") or {})
    if drift:
        problems.append(f"deployed from a different spec ({', '.join(drift[:5])} differ)")
    for name, entry in sorted(doc.get("packages", {}).items()):
        if not entry.get("matches"):
            problems.append(
                f"{name} {entry.get('installed')} does not match the pin {entry.get('pattern')}"
            )
        elif live.get(name) != entry.get("installed"):
            problems.append(
                f"{name} is now {live.get(name)}, the deploy installed {entry.get('installed')}"
            )
    for d in doc.get("downloads", []):
        if d.get("found_sha256") != d.get("sha256"):
            problems.append(f"{d['path']} sha256 {d.get('found_sha256')}, pinned {d['sha256']}")
    for b in doc.get("builds", []):
        if not b.get("inputs") or not b.get("binaries"):
            problems.append(f"build {b['path']} is missing or incomplete")
    if problems:
        return _fail(
            check,
            "node",
            f"{host}: {'; '.join(problems)}, expected the node to be exactly "
            "what its spec pins: something changed outside the deploy (apt, a manual "
            "install) or the spec changed since: re-run the deploy",
            "as pinned",
            problems,
        )
    n = len(doc.get("packages", {}))
    return _pass(check, "node", f"{host}: {n} pinned packages, downloads and builds match the spec")
