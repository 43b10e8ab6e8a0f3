"""``gpubox report``: one self-contained HTML page per node from its boot records, and a
one-screen terminal summary.

This module works out what each section of the page shows (from the ``--full`` history document,
with the spec's floors); the markup is in Jinja2 templates shipped in the package under
``gpubox/templates/report/``: ``page.html.j2`` (the page), ``sections.html.j2`` (one macro per
section, in page order) and ``report.css``, rendered with autoescaping. The plots are drawn by
:mod:`gpubox.report_svg`. The terminal summary is plain text built here.

The page needs no network to be viewed: styles are inline and every plot is an SVG (standard
library only) embedded as ``<img src="data:image/svg+xml;base64,...">``. Its sections, with
stable ids for scripts and tests:

=====================  =============================================================================
``#summary``           host, latest boot, PASS/FAIL (``data-ok``), counts
``#escalated``         only when a GPU failed the same way at several consecutive boots
                       (``li.escalation``, ``data-gpu``, ``data-check``, ``data-boots``)
``#changes``           what changed against the previous boot (``#changes-previous``) and the
                       calibrated baseline (``#changes-baseline``)
``#gpus``              per GPU: bus id, name, PCIe link, SM clock, temperatures, persistence
``#pcie``              the PCIe tree (``#pcie-tree``, ``data-kind="tree"``, or ``"none"`` when
                       the paths are not readable) and its links (``#pcie-links``: ``tr.link``,
                       ``data-link``, ``data-level``), each judged against its floor
``#p2p-heatmap``       ``data-kind="bandwidth"``: the P2P GB/s matrix when the bandwidth tier ran;
                       else ``data-kind="status"``: NVML's P2P READ/WRITE status per ordered pair
``#expected-vs-found`` one row per check of the latest boot, failures first (``tr.check``,
                       ``data-check``, ``data-outcome``): expected, found, verdict, message
``#host-bandwidth``    h2d/d2h GB/s per GPU against its floor (when measured)
``#allreduce``         nccl-tests all_reduce busbw against ``floors.allreduce`` (when measured)
``#burn``              only with a burn: time series per GPU (``#burn-sm-mhz``, ``#burn-temp-c``,
                       ``#burn-hbm-temp-c``, ``#burn-power-w``, ``#burn-gflops``; ``data-ok``,
                       ``#burn-safety-stop``)
``#trends``            plots across boots: ``#trend-checks``, ``#trend-clocks``,
                       ``#trend-temperature``, ``#trend-bandwidth``, ``#trend-p2p`` (when measured)
``#boot-history``      every boot (``tr.boot``, ``data-boot-id``) with its changes
=====================  =============================================================================
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from jinja2.ext import Extension
from markupsafe import Markup

from gpubox import history
from gpubox.records import Record, short_boot_id
from gpubox.report_svg import (
    FAIL_C,
    LEVEL_C,
    NONE_C,
    PALETTE,
    PASS_C,
    SKIP_C,
    data_uri,
    esc,
    hbars,
    heatmap,
    line_chart,
    pcie_tree_svg,
    stacked_bars,
)

_P2P_KEY = re.compile(r"^p2p\[gpu(\d+)-gpu(\d+)\]$")
_HOST_KEY = re.compile(r"^(h2d|d2h)\[gpu(\d+)\]$")


# ---- what the latest record says -----------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value) if value else "[]"
    return str(value)


def _spec(record: Record) -> dict:
    return history.host_entry(record.results, record.meta.get("host")).get("spec") or {}


def _spec_obj(record: Record):
    from gpubox.spec import NodeSpec

    try:
        return NodeSpec.from_data(_spec(record), host=record.meta.get("host") or "node")
    except Exception:  # a record from another gpubox version: plots without floors
        return None


class _BaselineView:
    """What :mod:`gpubox.floors` asks of a baseline, from the medians a record kept."""

    def __init__(self, meta: dict):
        b = meta.get("baseline") or {}
        self.path = b.get("path", "baseline")
        self.margin = b.get("margin") or 0.0
        self._m = {
            k: {"median": v, "floor": (b.get("floors") or {}).get(k)}
            for k, v in (b.get("medians") or {}).items()
            if v
        }

    def get(self, key):
        entry = self._m.get(key)
        return entry if entry and entry.get("floor") else None


def host_floor(record: Record, direction: str, index: int) -> tuple[float | None, str]:
    spec = _spec_obj(record)
    if spec is None:
        return None, "unknown"
    try:
        from gpubox import floors

        f = floors.host_floor(
            spec,
            history.snapshot(record.results, record.meta.get("host")),
            direction,
            index,
            _BaselineView(record.meta),
        )
        return f.gbps, f.detail
    except Exception:
        per = spec.floors.h2d_gbps if direction == "h2d" else spec.floors.d2h_gbps
        value = per.get(index)
        return value, "spec" if value else "none"


def p2p_floor(record: Record, a: int, b: int) -> float | None:
    spec = _spec_obj(record)
    if spec is None:
        return None
    try:
        from gpubox import floors

        snap = history.snapshot(record.results, record.meta.get("host"))
        return floors.p2p_floor(spec, snap, a, b, _BaselineView(record.meta)).gbps
    except Exception:
        return spec.floors.p2p_gbps.get(a, b)


# ---- sections: what each shows (their markup: templates/report/sections.html.j2) -----------------


def _section_summary(doc: dict, latest: Record) -> dict:
    meta = latest.meta
    return {
        "host": meta.get("host"),
        "boot_id": latest.boot_id,
        "ok": bool(meta.get("ok")),
        "checked": history.when(meta.get("finished")),
        "tiers": ", ".join(meta.get("tiers") or []),
        "counts": history.counts_text(meta.get("counts") or {}),
        "boots": len(doc.get("boots", [])),
        "runs_dir": doc.get("runs_dir"),
        "error": meta.get("error"),
    }


def _section_escalated(entry: dict) -> dict:
    """The first thing on the page when a GPU failed the same way at several boots in a row."""
    return {"escalated": entry.get("escalated") or [], "after": history.ESCALATE_AFTER}


def _section_changes(entry: dict) -> dict:
    if not entry.get("has_baseline"):
        against = "no calibrated baseline on the node (gpubox calibrate)"
    elif not entry.get("measured"):
        against = "no bandwidth measured at this boot (the baseline holds bandwidth figures)"
    else:
        against = "every measurement within 10% of the baseline"
    return {
        "previous": entry.get("changes") or [],
        "previous_empty": "first record: nothing to compare with"
        if entry.get("first")
        else "no change",
        "baseline": entry.get("baseline_changes") or [],
        "baseline_empty": against,
    }


# What an empty parameter set means, by the parameter (pytest names such a test NAME[NOTSET]).
_NOTHING_TO_CHECK = {
    "pair": "no GPU pairs: the spec lists fewer than two GPUs",
    "gpu": "no GPUs: the spec lists none",
    "allreduce": "no all_reduce floors: floors.allreduce is empty",
}
_EMPTY_SET = re.compile(r"got empty parameter set\W+(?:for\W+)?\(?([^)\]]*)")


def _nothing_to_check(check: dict) -> tuple[str, str] | None:
    """``(name, why)`` for a test pytest skipped for an empty parameter set (``test_p2p[NOTSET]``
    on a one-GPU node), else None."""
    short = check["id"].split("::")[-1]
    if not short.endswith("[NOTSET]"):
        return None
    name = short.removesuffix("[NOTSET]")
    m = _EMPTY_SET.search(check.get("message") or "")
    params = re.findall(r"\w+", m.group(1)) if m else []
    why = next((_NOTHING_TO_CHECK[p] for p in params if p in _NOTHING_TO_CHECK), None)
    return name, f"skipped: {why or 'nothing to check (an empty parameter set)'}"


def _section_checks(latest: Record) -> dict:
    rows = []
    checks = (latest.results or {}).get("checks", [])
    for c in sorted(checks, key=lambda c: c.get("outcome") != "failed"):  # failures first
        v = c.get("verdict") or {}
        outcome = c.get("outcome")
        level = v.get("level") or {"passed": "pass", "failed": "fail", "skipped": "skip"}.get(
            outcome, outcome
        )
        short, message = c["id"].split("::")[-1], c.get("message")
        if empty := _nothing_to_check(c):
            short, message = empty
        rows.append(
            {
                "name": short,
                "outcome": outcome,
                "expected": _fmt(v.get("expected")),
                "found": _fmt(v.get("found")),
                "level": level,
                "message": message,
            }
        )
    return {"rows": rows}


def _section_gpus(latest: Record) -> dict:
    spec = _spec(latest)
    snap = history.snapshot(latest.results, latest.meta.get("host"))
    limits = spec.get("limits") or {}
    pcie = spec.get("pcie") or {}
    by_bus = {g.get("bus_id"): g for g in snap.get("gpus", [])}
    rows = []
    expected = [g.get("bus_id") for g in spec.get("gpus") or []]
    extra = [b for b in by_bus if b not in expected]
    for index, bus in enumerate(expected + extra):
        gpu = by_bus.get(bus)
        if gpu is None and bus is not None:
            # A lost GPU may have no bus id: find it by index.
            gpu = next(
                (g for g in snap.get("gpus", []) if g.get("lost") and g.get("index") == index),
                None,
            )
        row = {"name": f"gpu{index}", "bus": bus, "state": None}
        if gpu is None:
            rows.append({**row, "state": "not found by NVML"})
            continue
        if gpu.get("lost"):
            rows.append({**row, "state": "lost (GPU_IS_LOST)"})
            continue
        link = gpu.get("pcie") or {}
        reasons = (gpu.get("clock_event_reasons") or {}).get("names") or []
        rows.append(
            {
                **row,
                "model": gpu.get("name"),
                "gen": link.get("gen_current"),
                "width": link.get("width_current"),
                "sm_mhz": (gpu.get("clocks") or {}).get("sm_mhz"),
                "reasons": "[" + ", ".join(reasons) + "]" if reasons else "",
                "temp": gpu.get("temperature_c"),
                "hbm_temp": gpu.get("hbm_temperature_c"),
                "persistence": _fmt(gpu.get("persistence_mode")),
            }
        )
    return {
        "rows": rows,
        "floor": f"Gen{pcie.get('min_gen') or '-'} x{pcie.get('min_width') or '-'}",
        "lock": (spec.get("clocks") or {}).get("graphics_mhz") or "none",
        "gpu_max": limits.get("gpu_temp_c"),
        "hbm_max": limits.get("hbm_temp_c"),
    }


def _pcie_links(latest: Record) -> tuple[list[dict], dict[str, dict], str | None]:
    """Every link of every GPU's PCIe path, judged against the spec: (links, boxes, why none).

    A link is ``{id, upper, lower, text, level, gpus, kind, aer}`` (``upper``/``lower``: box ids);
    a box is a root port, a switch (its upstream port with its downstream ports) or a GPU."""
    from gpubox import judge_pcie

    spec = _spec_obj(latest)
    snap = history.snapshot(latest.results, latest.meta.get("host"))
    boxes: dict[str, dict] = {}
    links: dict[str, dict] = {}
    reason = None
    for gpu in snap.get("gpus", []):
        path = gpu.get("pcie_path") or {}
        hops = path.get("hops") or []
        if not path.get("available") or not hops:
            reason = reason or path.get("reason") or "the snapshot has no PCIe path"
            continue
        index = gpu.get("index")
        name = f"gpu{index}"
        box_of: dict[str, str] = {}
        for k, hop in enumerate(hops):
            role = hop.get("role")
            if role == "switch_downstream" and k + 1 < len(hops):
                box_of[hop["bus_id"]] = hops[k + 1]["bus_id"]  # drawn inside its switch
            else:
                box_of[hop["bus_id"]] = hop["bus_id"]
            if box_of[hop["bus_id"]] == hop["bus_id"]:
                kind = {"gpu": "gpu", "root_port": "root"}.get(role, "switch")
                label = name if role == "gpu" else judge_pcie.hop_name(hop)
                boxes.setdefault(hop["bus_id"], {"kind": kind, "label": label})
        floor = spec.gpu_pcie(index) if spec is not None and index is not None else None
        own = gpu.get("pcie") or {}
        for k, hop in enumerate(hops[:-1]):
            if hop.get("role") not in ("gpu", "switch_upstream", "bridge"):
                continue
            upper = box_of[hops[k + 1]["bus_id"]]
            if hop.get("role") == "gpu":
                gen, width = own.get("gen_current"), own.get("width_current")
                text, level = f"Gen{gen} x{width}", "unknown"
                if floor is not None and (floor.min_gen or floor.min_width):
                    low = (floor.min_gen and (gen or 0) < floor.min_gen) or (
                        floor.min_width and (width or 0) < floor.min_width
                    )
                    level = "fail" if low else "pass"
                kind = "gpu link (NVML)"
            else:
                text = f"Gen{(hop.get('link') or {}).get('gen')} x{(hop.get('link') or {}).get('width')}"
                level = "unknown"
                if floor is not None:
                    level = judge_pcie.uplink_level(hop, hops[k + 1], floor.uplink)[0]
                kind = judge_pcie.uplink_name(hop)
            entry = links.setdefault(
                hop["bus_id"],
                {"id": hop["bus_id"], "upper": upper, "lower": box_of[hop["bus_id"]], "text": text,
                 "level": level, "gpus": [], "kind": kind},
            )  # fmt: skip
            entry["gpus"].append(name)
            order = ["pass", "unknown", "warn", "fail"]
            if order.index(level) > order.index(entry["level"]):
                entry["level"] = level  # a shared uplink takes the strictest GPU's floor
    return list(links.values()), boxes, (None if boxes else reason)


def _section_pcie(latest: Record) -> dict:
    links, boxes, why = _pcie_links(latest)
    if not boxes:
        return {"links": [], "tree": None, "title": None, "why": why}
    title = "PCIe tree: root ports, switches, GPUs (links coloured against their floors)"
    rows = [
        {
            "id": ln["id"],
            "kind": ln["kind"],
            "text": ln["text"],
            "gpus": ", ".join(ln["gpus"]),
            "level": ln["level"],
            "colour": LEVEL_C.get(ln["level"], SKIP_C),
        }
        for ln in sorted(links, key=lambda ln: (ln["gpus"][0], ln["kind"]))
    ]
    return {"links": rows, "tree": pcie_tree_svg(links, boxes, title), "title": title, "why": why}


def _section_p2p(latest: Record) -> dict:
    host = latest.meta.get("host")
    snap = history.snapshot(latest.results, host)
    n = max(snap.get("gpu_count") or 0, len(_spec(latest).get("gpus") or []))
    labels = [f"gpu{i}" for i in range(n)]
    bench = history.measurements(latest.results, host)
    p2p_bw = {}
    for key, value in bench.items():
        m = _P2P_KEY.match(key)
        if m:
            p2p_bw[(int(m[1]), int(m[2]))] = value
    cells: dict[tuple[int, int], tuple[str, str]] = {}
    rows = []
    if p2p_bw:
        kind = "bandwidth"
        caption = (
            "P2P bandwidth, GB/s, bidirectional per pair (p2pBandwidthLatencyTest); red: under "
            "its floor"
        )
        for (a, b), value in sorted(p2p_bw.items()):
            floor = p2p_floor(latest, a, b)
            colour = FAIL_C if floor and value < floor else PASS_C
            text = f"{value:.1f}" + (f"\nfloor {floor:.1f}" if floor else "")
            cells[(a, b)] = cells[(b, a)] = (text, colour)
            rows.append({"a": a, "b": b, "gbps": f"{value:.2f}", "floor": _fmt(floor)})
    else:
        kind = "status"
        caption = (
            "NVML P2P READ/WRITE status per ordered pair (row -> column); no P2P bandwidth was "
            "measured in this record. Green: OK; red: any other code (CNS, TNS, GNS, DR, NS)"
        )
        matrix = snap.get("p2p") or {}
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                entry = matrix.get(f"{i}-{j}") or {}
                read, write = entry.get("read"), entry.get("write")
                if read is None and write is None:
                    cells[(i, j)] = ("n/a", NONE_C)
                    continue
                colour = PASS_C if read == "OK" and write == "OK" else FAIL_C
                cells[(i, j)] = (f"R {read}\nW {write}", colour)
                rows.append({"a": i, "b": j, "read": read, "write": write})
    title = "P2P bandwidth (GB/s)" if kind == "bandwidth" else "NVML P2P status (READ / WRITE)"
    return {
        "kind": kind,
        "heatmap": heatmap(labels, cells, title),
        "title": title,
        "caption": caption,
        "rows": rows,
    }


def _section_host_bandwidth(latest: Record) -> dict:
    bench = history.measurements(latest.results, latest.meta.get("host"))
    found = sorted(
        ((m[1], int(m[2]), v) for k, v in bench.items() if (m := _HOST_KEY.match(k))),
        key=lambda t: (t[1], t[0] != "h2d"),
    )
    rows, bars = [], []
    for direction, index, value in found:
        floor, detail = host_floor(latest, direction, index)
        ok = not (floor and value < floor)
        bars.append((f"{direction} gpu{index}", value, floor, PASS_C if ok else FAIL_C))
        rows.append(
            {
                "gpu": index,
                "direction": direction,
                "gbps": f"{value:.2f}",
                "floor": _fmt(floor),
                "detail": detail,
                "ok": ok,
            }
        )
    svg = hbars(bars, "host <-> device bandwidth (GB/s)", "GB/s") if rows else None
    return {"rows": rows, "bars": svg}


def _section_allreduce(latest: Record) -> dict:
    bench = history.measurements(latest.results, latest.meta.get("host"))
    found = {k: v for k, v in bench.items() if k.startswith("allreduce[")}
    floors: dict[str, float] = {}
    spec = _spec_obj(latest) if found else None
    if spec is not None:
        try:
            from gpubox import floors as floors_mod

            floors = {floors_mod.allreduce_key(f): f.busbw_gbps for f in spec.floors.allreduce}
        except Exception:
            floors = {}
    rows = []
    for key, value in sorted(found.items()):
        floor = floors.get(key)
        rows.append(
            {
                "key": key,
                "gbps": f"{value:.2f}",
                "floor": _fmt(floor),
                "ok": floor is None or value >= floor,
            }
        )
    return {"rows": rows}


def _per_gpu_series(recs: list[Record], path: tuple[str, ...]) -> dict[str, list[float | None]]:
    series: dict[str, list[float | None]] = {}
    for n, record in enumerate(recs):
        snap = history.snapshot(record.results, record.meta.get("host"))
        for gpu in snap.get("gpus", []):
            value: Any = gpu
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            name = f"gpu{gpu.get('index')}"
            series.setdefault(name, [None] * len(recs))[n] = value
    return series


def _gpu_order(key: str) -> tuple:
    """``h2d[gpu2]`` sorts by GPU, then direction; other keys by name."""
    m = _HOST_KEY.match(key)
    return (int(m[2]), m[1] != "h2d") if m else (999, False, key)


def _plot(svg: str, element_id: str, alt: str) -> dict:
    return {"svg": svg, "id": element_id, "alt": alt}


def _section_trends(recs: list[Record]) -> dict:
    """Plots across boots; ``None`` in ``plots`` stands for "no bandwidth measured yet"."""
    labels = [str(n) for n in range(1, len(recs) + 1)]  # the # of the boot history table
    counts = [r.meta.get("counts") or {} for r in recs]
    plots: list[dict | None] = [
        _plot(
            stacked_bars(
                labels,
                {
                    "passed": (PASS_C, [c.get("passed", 0) for c in counts]),
                    "failed": (FAIL_C, [c.get("failed", 0) + c.get("error", 0) for c in counts]),
                    "skipped": (SKIP_C, [c.get("skipped", 0) for c in counts]),
                },
                "checks per boot",
            ),
            "trend-checks",
            "checks per boot",
        )
    ]
    spec = _spec(recs[-1])
    lock = (spec.get("clocks") or {}).get("graphics_mhz")
    clocks = _per_gpu_series(recs, ("clocks", "sm_mhz"))
    plots.append(
        _plot(
            line_chart(
                labels, clocks, "SM clock at the check", "MHz", {"lock": lock} if lock else None
            ),
            "trend-clocks",
            "SM clock per boot",
        )
    )
    temps = {
        **{f"{k} GPU": v for k, v in _per_gpu_series(recs, ("temperature_c",)).items()},
        **{f"{k} HBM": v for k, v in _per_gpu_series(recs, ("hbm_temperature_c",)).items()},
    }
    limit = (spec.get("limits") or {}).get("hbm_temp_c")
    plots.append(
        _plot(
            line_chart(
                labels,
                temps,
                "temperatures at the check",
                "C",
                {"HBM max": limit} if limit else None,
            ),
            "trend-temperature",
            "temperatures per boot",
        )
    )
    bench_series: dict[str, list[float | None]] = {}
    for n, record in enumerate(recs):
        for key, value in history.measurements(record.results, record.meta.get("host")).items():
            bench_series.setdefault(key, [None] * len(recs))[n] = value
    if bench_series:
        host_keys = sorted((k for k in bench_series if _HOST_KEY.match(k)), key=_gpu_order)
        other = sorted((k for k in bench_series if not _HOST_KEY.match(k)), key=_gpu_order)
        for element, keys, title in (
            ("trend-bandwidth", host_keys, "host <-> device bandwidth"),
            ("trend-p2p", other, "P2P and all_reduce bandwidth"),
        ):
            if keys:
                series = {k: bench_series[k] for k in keys[: len(PALETTE)]}
                plots.append(_plot(line_chart(labels, series, title, "GB/s"), element, title))
    else:
        plots.append(None)
    return {"plots": plots}


def _section_boots(doc: dict) -> dict:
    rows = []
    for n, b in reversed(list(enumerate(doc.get("boots", []), 1))):
        changes = [e["text"] for e in b.get("escalated", [])]
        changes += [c["text"] for c in b.get("changes", [])]
        changes += [f"vs baseline: {c['text']}" for c in b.get("baseline_changes", [])]
        rows.append(
            {
                "n": n,
                "boot_id": b["boot_id"],
                "short_id": short_boot_id(b["boot_id"]),
                "checked": history.when(b.get("finished")),
                "ok": b.get("ok"),
                "counts": history.counts_text(b.get("counts") or {}),
                "changes": changes,
                "none": "first record" if b.get("first") else "no change",
            }
        )
    return {"rows": rows}


def _burn_of(latest: Record, host: str, burn: dict | None) -> dict | None:
    """The burn to show: the one given, else the stress tier's in the latest record's results."""
    if burn is not None:
        return burn
    hosts = (latest.results or {}).get("hosts", {}) if latest is not None else {}
    entry = hosts.get(host) or next(iter(hosts.values()), {})
    return entry.get("burn") if isinstance(entry, dict) else None


def _section_burn(burn: dict | None) -> dict:
    """The burn as time series per GPU: SM clock, temperature, HBM temperature, power, Gflop/s."""
    if not burn or not burn.get("telemetry"):
        return {"shown": False, "ok": False, "safety_stop": None, "plots": []}
    gpus = burn["telemetry"].get("gpus", {})
    limits = burn.get("limits", {})
    charts = [
        ("sm_mhz", "SM clock", "MHz", None),
        ("temp_c", "GPU temperature", "C", limits.get("gpu_temp_c")),
        ("hbm_temp_c", "HBM temperature", "C", limits.get("hbm_temp_c")),
        ("power_w", "power", "W", limits.get("power_w")),
    ]
    plots = []
    for key, title, unit, ceiling in charts:
        series = {f"gpu{g}": list(gpus[g].get(key, [])) for g in sorted(gpus, key=int)}
        longest = max((len(v) for v in series.values()), default=0)
        first = next(iter(gpus.values()), {})
        labels = [f"{t:.0f}s" for t in first.get("t", [])][:longest] or [
            str(i) for i in range(longest)
        ]
        refs = {"ceiling": ceiling} if ceiling else None
        svg = line_chart(labels, series, f"burn: {title} per GPU", unit, refs)
        plots.append(_plot(svg, f"burn-{key.replace('_', '-')}", f"burn {title} per GPU"))
    thr = burn.get("throughput", {})
    if thr:
        series = {f"gpu{g}": list(thr[g].get("gflops", [])) for g in sorted(thr, key=int)}
        first = thr[sorted(thr, key=int)[0]]
        labels = [f"{t:.0f}s" for t in first.get("t", [])]
        svg = line_chart(labels, series, "burn: throughput per GPU", "Gflop/s")
        plots.append(_plot(svg, "burn-gflops", "burn throughput per GPU"))
    stop = burn.get("safety_stop")
    return {
        "shown": True,
        "ok": bool(burn.get("ok")),
        "safety_stop": stop.get("message") if stop else None,
        "plots": plots,
    }


# ---- the page: Jinja2, autoescaped ---------------------------------------------------------------


def _escape(value: Any) -> Markup:
    """What every ``{{ value }}`` of a template outputs: markup (a macro's output) as it is, None
    as nothing, anything else escaped as :func:`html.escape` does (``&quot;``, ``&#x27;``)."""
    if hasattr(value, "__html__"):
        return value
    return Markup(esc(value))


class _JoinLines(Extension):
    """The HTML templates' lines are joined as written (a newline and the indentation after it
    are dropped), so a template puts one element a line while the page stays compact and no stray
    whitespace enters a cell's text. The stylesheet keeps its lines."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        if not (name or "").endswith(".html.j2"):
            return source
        return re.sub(r"\n[ \t]*", "", source)


_ENV = Environment(
    loader=PackageLoader("gpubox", "templates/report"),
    autoescape=True,
    finalize=_escape,
    undefined=StrictUndefined,
    keep_trailing_newline=True,  # the stylesheet's last line ends with a newline
    extensions=[_JoinLines],
)
_ENV.filters["data_uri"] = data_uri


def render_html(doc: dict, burn: dict | None = None) -> str:
    """The page for one host's ``--full`` history document (and a burn document, if given)."""
    recs = history.records_of(doc)
    host = doc.get("host") or "?"
    sections = None
    if recs:
        latest, entry = recs[-1], doc["boots"][-1]
        sections = {
            "summary": _section_summary(doc, latest),
            "escalated": _section_escalated(entry),
            "changes": _section_changes(entry),
            "gpus": _section_gpus(latest),
            "pcie": _section_pcie(latest),
            "p2p": _section_p2p(latest),
            "checks": _section_checks(latest),
            "host_bandwidth": _section_host_bandwidth(latest),
            "allreduce": _section_allreduce(latest),
            "burn": _section_burn(_burn_of(latest, host, burn)),
            "trends": _section_trends(recs),
            "boots": _section_boots(doc),
        }
    page = _ENV.get_template("page.html.j2").render(
        host=host,
        runs_dir=doc.get("runs_dir"),
        sections=sections,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
    )
    return page + "\n"


# ---- terminal -------------------------------------------------------------------------------------

_SPARK = "▁▂▃▄▅▆▇█"


def _spark(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1
    return "".join(_SPARK[int((v - lo) / span * (len(_SPARK) - 1))] for v in values)


def render_terminal(doc: dict, width: int = 100) -> str:
    """One screen: verdict, changes, failed checks, GPUs, P2P, the recent trend."""
    recs = history.records_of(doc)
    host = doc.get("host") or "?"
    if not recs:
        return f"{host}: no boot record yet in {doc.get('runs_dir')}\n"
    latest, entry = recs[-1], doc["boots"][-1]
    meta = latest.meta
    out = [
        f"{host}  {'PASS' if meta.get('ok') else 'FAIL'}  boot {short_boot_id(latest.boot_id)}  "
        f"{history.when(meta.get('finished'))} UTC  {history.counts_text(meta.get('counts') or {})}"
    ]
    if meta.get("error"):
        out.append(f"  ! {meta['error']}")
    out += [f"  !! {e['text']}"[:width] for e in entry.get("escalated", [])]
    changes = [c["text"] for c in entry.get("changes", [])]
    changes += [f"vs baseline: {c['text']}" for c in entry.get("baseline_changes", [])]
    if entry.get("first") or not changes:
        out.append("changes: " + ("first record" if entry.get("first") else "none"))
    else:
        out.append("changes:")
    out += [f"  {t}"[:width] for t in changes[:8]]
    failed = [c for c in (latest.results or {}).get("checks", []) if c.get("outcome") == "failed"]
    if failed:
        out.append(f"failed ({len(failed)}):")
        for c in failed[:8]:
            out.append(f"  {c['id'].split('::')[-1]}: {c.get('message') or ''}"[:width])
        if len(failed) > 8:
            out.append(f"  ... and {len(failed) - 8} more")
    snap = history.snapshot(latest.results, meta.get("host"))
    bench = history.measurements(latest.results, meta.get("host"))
    out.append("GPU   bus id        link      SM MHz  GPU C  HBM C  h2d/d2h GB/s")
    for gpu in snap.get("gpus", []):
        i = gpu.get("index")
        if gpu.get("lost"):
            out.append(f"gpu{i}  LOST")
            continue
        link = gpu.get("pcie") or {}
        bw = "/".join(
            f"{bench[k]:.1f}" if k in bench else "-" for k in (f"h2d[gpu{i}]", f"d2h[gpu{i}]")
        )
        out.append(
            f"gpu{i:<2} {str(gpu.get('bus_id'))[5:]:13} Gen{link.get('gen_current')} "
            f"x{str(link.get('width_current')):<4} {str((gpu.get('clocks') or {}).get('sm_mhz')):>6}  "
            f"{str(gpu.get('temperature_c')):>5}  {str(gpu.get('hbm_temperature_c')):>5}  {bw}"
        )
    matrix = snap.get("p2p") or {}
    n = snap.get("gpu_count") or 0
    if n:
        out.append("P2P " + ("GB/s" if any(_P2P_KEY.match(k) for k in bench) else "READ/WRITE"))
        out.append("      " + "".join(f"{f'gpu{j}':>9}" for j in range(n)))
        for i in range(n):
            cells = []
            for j in range(n):
                if i == j:
                    cells.append(f"{'-':>9}")
                    continue
                key = f"p2p[gpu{min(i, j)}-gpu{max(i, j)}]"
                if key in bench:
                    cells.append(f"{bench[key]:>9.1f}")
                else:
                    e = matrix.get(f"{i}-{j}") or {}
                    cells.append(f"{str(e.get('read'))}/{str(e.get('write'))}".rjust(9))
            out.append(f"gpu{i:<3}" + "".join(cells))
    passed = [(r.meta.get("counts") or {}).get("passed", 0) for r in recs[-30:]]
    oks = "".join("✓" if r.meta.get("ok") else "✗" for r in recs[-30:])
    out.append(f"last {len(passed)} boots: {oks}  passed checks {_spark(passed)}")
    return "\n".join(out) + "\n"


def write(path: str, text: str) -> None:
    from gpubox.records import write_file_atomic

    write_file_atomic(path, text)
