"""Judging each GPU's whole PCIe path: the links above its own, the error counters, ACS. No I/O.

The facts are the snapshot's (``gpus[i].pcie_path`` from :mod:`gpubox.pcie_path`, NVML's
``gpus[i].pcie.replay_counter``); the expectations are the spec's ``pcie`` (per GPU:
:meth:`gpubox.spec.NodeSpec.gpu_pcie`). Every message names the hop by role and bus id::

    home gpu2 (0f:00.0): switch uplink 0d:00.0 at Gen3 x2, expected at least Gen3 x4
    (gpus[2].pcie.uplink): ...

The GPU's own link is NVML's and :func:`gpubox.judge.pcie`'s: :func:`path` judges only the links
above it, so one narrowed link fails one check.
"""

from __future__ import annotations

from gpubox import busid
from gpubox.judge import FAIL, PASS, SKIP, WARN, Verdict, _usable, label
from gpubox.pcie_path import ACS_P2P_BITS, upstream_links
from gpubox.spec import NodeSpec, gpu_id

ROLE_WORDS = {
    "gpu": "the GPU",
    "switch_downstream": "switch downstream port",
    "switch_upstream": "switch upstream port",
    "root_port": "root port",
    "bridge": "bridge",
}
UPLINK_WORDS = {"switch_upstream": "switch uplink", "bridge": "bridge uplink"}

_WIDTH_CAUSE = (
    "the link lost lanes: reseat or replace the uplink cable (the JPCIE-to-PCIe cables of "
    "an SXM2 baseboard) or riser, check the slot's width and bifurcation in the BIOS"
)
_GEN_CAUSE = (
    "the link retrained to a lower speed to stay up: a marginal cable or riser (watch "
    "test_pcie_errors for replays and AER errors on this path) or a slot speed forced down in "
    "the BIOS"
)
_SOFT_CAUSE = (
    "a marginal link (cable, riser, connector, a cable run next to power cables): reseat or "
    "replace it; errors that keep growing end in a link that drops (XID 79)"
)
_HARD_CAUSE = (
    "an uncorrectable PCIe error: the link went down (SDES), a device stopped answering "
    "(CmpltTO) or a packet was corrupt (MalfTLP, ECRC); `dmesg | grep AER` shows when; reseat or "
    "replace the cable on that hop, then reboot (the counters start again at boot)"
)


def hop_name(hop: dict) -> str:
    """``switch downstream port 0e:10.0``."""
    return f"{ROLE_WORDS.get(hop.get('role'), 'device')} {busid.short(hop['bus_id'])}"


def uplink_name(hop: dict) -> str:
    """``switch uplink 0d:00.0``: the link above ``hop``, named by its lower end."""
    return f"{UPLINK_WORDS.get(hop.get('role'), 'link of')} {busid.short(hop['bus_id'])}"


def _link(hop: dict) -> str:
    link = hop.get("link") or {}
    return f"Gen{link.get('gen') or '?'} x{link.get('width') if link.get('width') is not None else '?'}"


def _path(spec: NodeSpec, snap: dict, index: int, check: str):
    """(gpu, path) or a skip verdict: the GPU lost or missing, no path in the snapshot, or sysfs
    without the device."""
    host, who = spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return None, None, skip
    path = gpu.get("pcie_path")
    if path is None:
        message = (
            f"{host} {who}: the snapshot has no PCIe path (the node's gpubox predates the path "
            "walk): re-run the deploy"
        )
        return None, None, Verdict(check, gpu_id(index), SKIP, message)
    if not path.get("available"):
        message = f"{host} {who}: PCIe path not readable: {path.get('reason')}"
        return None, None, Verdict(check, gpu_id(index), SKIP, message)
    return gpu, path, None


def _floor_source(spec: NodeSpec, index: int, name: str) -> str:
    gpu = spec.gpus[index] if index < len(spec.gpus) else None
    own = gpu.pcie if gpu is not None else None
    if own is not None and getattr(own, name) is not None:
        return f"gpus[{index}].pcie.{name}"
    return f"pcie.{name}"


def _capability(low: dict, port: dict | None, key: str) -> int | None:
    """What both ends of a link can do: the lower of their ``max_*``."""
    values = [(h.get("link") or {}).get(key) for h in (low, port) if h is not None]
    values = [v for v in values if v]
    return min(values) if values else None


# ---- test_pcie_path ----------------------------------------------------------------------------


def path(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    """Every link above the GPU's own, up to its root port, at least the spec's ``pcie.uplink``
    floor; without a floor, at what both its ends can (a link below that warns)."""
    check, subject, host, who = "pcie_path", gpu_id(index), spec.host, label(spec, index)
    gpu, p, skip = _path(spec, snap, index, check)
    if skip:
        return skip
    links = upstream_links(p)
    top = p["hops"][-1] if p["hops"] else None
    if not links:
        where = (
            f"right below {hop_name(top)}"
            if top and top is not p["hops"][0]
            else "on the host bridge"
        )
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: no PCIe switch above the GPU ({where}): its only link is its own, "
            "which test_pcie judges",
        )
    floor, source = spec.gpu_pcie(index).uplink, _floor_source(spec, index, "uplink")
    want = f"Gen{floor.min_gen or '-'} x{floor.min_width or '-'}"
    fails, warns, unread, seen, found = [], [], [], [], {}
    for low, port in links:
        link, name = low.get("link") or {}, uplink_name(low)
        gen, width = link.get("gen"), link.get("width")
        if gen is None and width is None:
            unread.append(name)
            continue
        found[low["bus_id"]] = {"role": low.get("role"), "gen": gen, "width": width}
        seen.append(f"{name} {_link(low)}")
        level, cause, below = uplink_level(low, port, floor)
        if level == FAIL:
            fails.append((f"{name} at {_link(low)}, expected at least {want} ({source})", cause))
        warns += [f"{name} at {b}" for b in below]
    expected = {"min_gen": floor.min_gen, "min_width": floor.min_width}
    to_root = f"path to {hop_name(top)}" if top and top.get("role") == "root_port" else "path"
    if fails:
        causes = "; ".join(dict.fromkeys(cause for _, cause in fails))
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {'; '.join(text for text, _ in fails)}: {causes}",
            expected,
            found,
        )
    if not seen:
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: the link state of {', '.join(unread)} is not exposed in sysfs "
            "(current_link_speed/width missing: an older kernel?)",
        )
    if warns:
        return Verdict(
            check,
            subject,
            WARN,
            f"{host} {who}: {'; '.join(warns)}: trained below its capability; if that is how "
            f"the node is built, state it as {source}, else {_WIDTH_CAUSE}",
            expected,
            found,
        )
    floor_text = f" (floor {want}, {source})" if floor.min_gen or floor.min_width else ""
    return Verdict(
        check,
        subject,
        PASS,
        f"{host} {who}: {to_root}: {', '.join(seen)}{floor_text}",
        expected,
        found,
    )


def uplink_level(low: dict, port: dict | None, floor) -> tuple[str, str, list[str]]:
    """(level, cause, below-capability words) of the link above ``low`` (its port: ``port``)
    against ``floor`` (a :class:`gpubox.spec.LinkFloor`): ``fail`` under the floor, ``warn``
    under what both its ends can do where the floor says nothing, else ``pass``."""
    link = low.get("link") or {}
    gen, width = link.get("gen"), link.get("width")
    if floor.min_width is not None and (width is None or width < floor.min_width):
        return FAIL, _WIDTH_CAUSE, []
    if floor.min_gen is not None and (gen is None or gen < floor.min_gen):
        return FAIL, _GEN_CAUSE, []
    below = []
    cap_gen, cap_width = _capability(low, port, "max_gen"), _capability(low, port, "max_width")
    if floor.min_width is None and cap_width and width is not None and width < cap_width:
        below.append(f"x{width} although both its ends can do x{cap_width}")
    if floor.min_gen is None and cap_gen and gen is not None and gen < cap_gen:
        below.append(f"Gen{gen} although both its ends can do Gen{cap_gen}")
    return (WARN if below else PASS), "", below


def narrow_hop(snap_gpu: dict | None) -> str | None:
    """``switch uplink 0d:00.0 at Gen3 x4``: the slowest link above the GPU's own when it is
    slower than the GPU's own link (what caps a host copy), else None."""
    p = (snap_gpu or {}).get("pcie_path") or {}
    own = (snap_gpu or {}).get("pcie") or {}
    gen, width = own.get("gen_current"), own.get("width_current")
    if not p.get("available") or not gen or not width:
        return None
    worst, worst_rate = None, gen_rate(gen) * width
    for low, _ in upstream_links(p):
        link = low.get("link") or {}
        if link.get("gen") and link.get("width"):
            rate = gen_rate(link["gen"]) * link["width"]
            if rate < worst_rate:
                worst, worst_rate = low, rate
    return f"{uplink_name(worst)} at {_link(worst)}" if worst else None


def gen_rate(gen: int) -> float:
    """GB/s per lane and direction after encoding (Gen1/2: 8b/10b, from Gen3: 128b/130b)."""
    return {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.877}.get(gen, 0.0)


# ---- test_pcie_errors --------------------------------------------------------------------------


def _counts(counter: dict) -> str:
    return (
        ", ".join(f"{k} {v}" for k, v in sorted(counter.get("by", {}).items())) or "by kind unknown"
    )


def errors(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    """NVML's replay counter and every hop's AER counters since boot: replays and correctable
    errors under their thresholds, no non-fatal or fatal error anywhere on the path."""
    check, subject, host, who = "pcie_errors", gpu_id(index), spec.host, label(spec, index)
    gpu, skip = _usable(spec, snap, index, check, host)
    if skip:
        return skip
    pc = spec.gpu_pcie(index)
    replays = (gpu.get("pcie") or {}).get("replay_counter")
    p = gpu.get("pcie_path") or {}
    hops = p.get("hops") or [] if p.get("available") else []
    problems, causes, found, unread = [], [], {"replays": replays, "aer": {}}, []
    if replays is not None and replays > pc.max_replays:
        problems.append(
            f"{replays} PCIe replays since boot (NVML), at most {pc.max_replays} "
            f"({_floor_source(spec, index, 'max_replays')})"
        )
        causes.append(_SOFT_CAUSE)
    with_aer = [h for h in hops if h.get("aer") is not None]
    unread = [hop_name(h) for h in hops if h.get("aer") is None]
    for hop in with_aer:
        aer = hop["aer"]
        totals = {
            kind: (aer.get(kind) or {}).get("total", 0)
            for kind in ("correctable", "nonfatal", "fatal")
        }
        found["aer"][hop["bus_id"]] = totals
        for kind in ("fatal", "nonfatal"):
            if totals[kind]:
                problems.append(
                    f"{hop_name(hop)}: {totals[kind]} {kind.replace('non', 'non-')} AER error(s) "
                    f"({_counts(aer[kind])}), expected none"
                )
                causes.append(_HARD_CAUSE)
        if totals["correctable"] > pc.max_correctable:
            problems.append(
                f"{hop_name(hop)}: {totals['correctable']} correctable AER errors "
                f"({_counts(aer['correctable'])}), at most {pc.max_correctable} "
                f"({_floor_source(spec, index, 'max_correctable')})"
            )
            causes.append(_SOFT_CAUSE)
    expected = {"max_replays": pc.max_replays, "max_correctable": pc.max_correctable, "fatal": 0}
    if problems:
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {'; '.join(problems)}: {'; '.join(dict.fromkeys(causes))}",
            expected,
            found,
        )
    if replays is None and not with_aer:
        why = (
            p.get("reason") if not p.get("available") else "no device on the path exposes aer_dev_*"
        )
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: no PCIe error counter readable: NVML's replay counter "
            f"{(gpu.get('errors') or {}).get('pcie.replay_counter', 'absent')}, AER: {why} "
            "(a kernel without CONFIG_PCIEAER, a VM)",
        )
    parts = []
    if replays is not None:
        parts.append(f"{replays} replays")
    if with_aer:
        parts.append(
            f"no AER errors over {len(with_aer)} hop(s)"
            if not any(sum(t.values()) for t in found["aer"].values())
            else "AER counts under the thresholds"
        )
    if unread:
        parts.append(f"AER not exposed at {', '.join(unread)}")
    return Verdict(
        check, subject, PASS, f"{host} {who}: {'; '.join(parts)} since boot", expected, found
    )


# ---- test_acs ----------------------------------------------------------------------------------


def acs(spec: NodeSpec, snap: dict, index: int) -> Verdict:
    """ACS P2P redirect and egress control off on every switch downstream port of the GPU's path,
    when a pair with this GPU is expected P2P OK (``p2p``) and ``pcie.acs`` is ``off``."""
    check, subject, host, who = "acs", gpu_id(index), spec.host, label(spec, index)
    if spec.gpu_pcie(index).acs == "any":
        return Verdict(check, subject, SKIP, f"{host} {who}: ACS not checked (pcie.acs: any)")
    peers = [
        gpu_id(j)
        for j in range(spec.gpu_count)
        if j != index
        and "OK" in (spec.p2p.expected(index, j).read, spec.p2p.expected(index, j).write)
    ]
    if not peers:
        return Verdict(
            check, subject, SKIP, f"{host} {who}: no pair with this GPU is expected P2P OK (p2p)"
        )
    gpu, p, skip = _path(spec, snap, index, check)
    if skip:
        return skip
    ports = [h for h in p["hops"] if h.get("role") == "switch_downstream"]
    if not ports:
        return Verdict(
            check,
            subject,
            PASS,
            f"{host} {who}: no switch downstream port on the path, so no switch ACS can reroute "
            "its peer traffic",
            "off",
            {},
        )
    on, unread, found = [], [], {}
    for port in ports:
        state = port.get("acs")
        if state is None:
            unread.append(hop_name(port))
            continue
        enabled = [b for b in state.get("enabled", []) if b in ACS_P2P_BITS]
        found[port["bus_id"]] = enabled
        if enabled:
            on.append(f"{hop_name(port)} ({', '.join(enabled)})")
    if on:
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: ACS on at {'; '.join(on)}, expected off: P2P with "
            f"{', '.join(peers)} is expected OK (p2p), and with ACS redirect on, peer traffic "
            "leaves the switch for the root complex (slower, or refused under an IOMMU) while NVML "
            "still says OK: set tuning.disable_acs: true and re-run the deploy (it clears ACS at "
            "every boot), or turn ACS off in the BIOS",
            "off",
            found,
        )
    if not found:
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: ACS of {', '.join(unread)} not readable (the config space past 256 "
            "bytes needs root)",
        )
    note = f"; not readable at {', '.join(unread)}" if unread else ""
    return Verdict(
        check,
        subject,
        PASS,
        f"{host} {who}: ACS redirect off at {', '.join(hop_name(pt) for pt in ports if pt['bus_id'] in found)}{note}",
        "off",
        found,
    )


PER_GPU = {"pcie_path": path, "pcie_errors": errors, "acs": acs}
