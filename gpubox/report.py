"""``gpubox report``: one self-contained HTML page per node from its boot records, and a
one-screen terminal summary.

The page needs no network to be viewed: styles are inline and every plot is an SVG drawn here
(standard library only) and embedded as ``<img src="data:image/svg+xml;base64,...">``. Its
sections, with stable ids for scripts and tests:

=====================  =============================================================================
``#summary``           host, latest boot, PASS/FAIL (``data-ok``), counts
``#escalated``         only when a GPU failed the same way at several consecutive boots
                       (``li.escalation``, ``data-gpu``, ``data-check``, ``data-boots``)
``#changes``           what changed against the previous boot (``#changes-previous``) and the
                       calibrated baseline (``#changes-baseline``)
``#gpus``              per GPU: bus id, name, PCIe link, SM clock, temperatures, persistence
``#p2p-heatmap``       ``data-kind="bandwidth"``: the P2P GB/s matrix when the bandwidth tier ran;
                       else ``data-kind="status"``: NVML's P2P READ/WRITE status per ordered pair
``#expected-vs-found`` one row per check of the latest boot, failures first (``tr.check``,
                       ``data-check``, ``data-outcome``): expected, found, verdict, message
``#host-bandwidth``    h2d/d2h GB/s per GPU against its floor (when measured)
``#allreduce``         nccl-tests all_reduce busbw against ``floors.allreduce`` (when measured)
``#trends``            plots across boots: ``#trend-checks``, ``#trend-clocks``,
                       ``#trend-temperature``, ``#trend-bandwidth`` (when measured)
``#boot-history``      every boot (``tr.boot``, ``data-boot-id``) with its changes
=====================  =============================================================================
"""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import UTC, datetime
from typing import Any

from gpubox import busid, history
from gpubox.records import Record, short_boot_id

PASS_C, FAIL_C, WARN_C, SKIP_C, NONE_C = "#2e7d32", "#c62828", "#ef8f00", "#9e9e9e", "#e0e0e0"
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip
_P2P_KEY = re.compile(r"^p2p\[gpu(\d+)-gpu(\d+)\]$")
_HOST_KEY = re.compile(r"^(h2d|d2h)\[gpu(\d+)\]$")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ---- SVG ------------------------------------------------------------------------------------------


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f"<title>{esc(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def img(svg: str, element_id: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return (
        f'<img id="{element_id}" class="plot" alt="{esc(alt)}" '
        f'src="data:image/svg+xml;base64,{data}">'
    )


def _text(x, y, text, anchor="middle", size=12, fill="#222", weight="normal") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
        f'fill="{fill}" font-weight="{weight}">{esc(text)}</text>'
    )


def _text_width(text: str, size: float) -> int:
    """A generous width of ``text`` in bold sans-serif at ``size`` px (0.66 em a character:
    wider than the average of DejaVu/Liberation Sans bold, so a title never overflows)."""
    return math.ceil(len(text) * size * 0.66)


def _label_step(n: int, plot_w: float, label_px: float = 28) -> int:
    """Label every k-th boot so that the labels do not overlap."""
    return max(1, math.ceil(n * label_px / plot_w))


def heatmap(labels: list[str], cells: dict[tuple[int, int], tuple[str, str]], title: str) -> str:
    """A square matrix: ``cells[(row, col)] = (text, fill colour)``; the diagonal is blank."""
    n = len(labels)
    cell, left, top = 92, 70, 48
    # Wide enough for the title too: one GPU's matrix is narrower than its title.
    width, height = max(left + n * cell + 20, _text_width(title, 13) + 24), top + n * cell + 20
    body = [_text(width / 2, 20, title, size=13, weight="bold")]
    for i, name in enumerate(labels):
        body.append(_text(left + i * cell + cell / 2, top - 8, name))
        body.append(_text(left - 8, top + i * cell + cell / 2 + 4, name, anchor="end"))
    for i in range(n):
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            text, fill = cells.get((i, j), ("", NONE_C if i != j else "#fafafa"))
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}" '
                'stroke="#ffffff"/>'
            )
            for k, line in enumerate(text.split("\n")):
                body.append(
                    _text(x + cell / 2 - 1, y + cell / 2 - 2 + (k - 0.3) * 15, line, fill="#fff")
                )
    return _svg(width, height, body, title)


def line_chart(
    x_labels: list[str],
    series: dict[str, list[float | None]],
    title: str,
    unit: str,
    refs: dict[str, float] | None = None,
) -> str:
    """Lines over boots; ``refs`` draws dashed horizontal reference lines (floors, limits)."""
    width, height = 820, 280
    left, right, top, bottom = 56, 190, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    values += list((refs or {}).values())
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    n = max(1, len(x_labels))

    def px(i):
        return left + (plot_w * (i + 0.5) / n)

    def py(v):
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    body = [_text(left + plot_w / 2, 20, title, size=13, weight="bold")]
    body.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#bbb"/>'
    )
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        y = py(v)
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        digits = 0 if hi - lo > 20 else 1 if hi - lo > 2 else 2
        body.append(_text(left - 6, y + 4, f"{v:.{digits}f}", anchor="end", size=11))
    body.append(_text(14, top + plot_h / 2, unit, size=11))
    step = _label_step(n, plot_w)
    for i, label in enumerate(x_labels):
        if i % step == 0:
            body.append(_text(px(i), top + plot_h + 16, label, size=10))
    body.append(_text(left + plot_w / 2, height - 8, "boot # (oldest left)", size=11))
    legend_y = top + 4
    for name, value in (refs or {}).items():
        y = py(value)
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{FAIL_C}" stroke-dasharray="6 4"/>'
        )
        body.append(
            _text(
                left + plot_w + 8,
                legend_y + 4,
                f"- - {name} {value:g}",
                anchor="start",
                size=11,
                fill=FAIL_C,
            )
        )
        legend_y += 16
    for k, (name, vs) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        points = [(px(i), py(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            body.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
        for x, y in points:
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>')
        body.append(
            f'<rect x="{left + plot_w + 8}" y="{legend_y - 6}" width="12" height="4" fill="{colour}"/>'
        )
        short = name if len(name) <= 26 else name[:25] + "…"
        body.append(_text(left + plot_w + 26, legend_y, short, anchor="start", size=11))
        legend_y += 16
    return _svg(width, height, body, title)


def stacked_bars(x_labels: list[str], stacks: dict[str, tuple[str, list[int]]], title: str) -> str:
    """Bars over boots: ``stacks[name] = (colour, counts per boot)``, stacked bottom-up."""
    width, height = 820, 240
    left, right, top, bottom = 56, 190, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(x_labels))
    totals = [sum(s[1][i] for s in stacks.values()) for i in range(len(x_labels))]
    hi = max(totals or [1]) or 1
    body = [_text(left + plot_w / 2, 20, title, size=13, weight="bold")]
    bar = plot_w / n
    for i, label in enumerate(x_labels):
        y = top + plot_h
        for _name, (colour, counts) in stacks.items():
            h = counts[i] / hi * plot_h
            if h > 0:
                body.append(
                    f'<rect x="{left + i * bar + bar * 0.15:.1f}" y="{y - h:.1f}" '
                    f'width="{bar * 0.7:.1f}" height="{h:.1f}" fill="{colour}"/>'
                )
            y -= h
        if i % _label_step(n, plot_w) == 0:
            body.append(_text(left + i * bar + bar / 2, top + plot_h + 16, label, size=10))
    for k in range(5):
        v = hi * k / 4
        y = top + plot_h - v / hi * plot_h
        body.append(_text(left - 6, y + 4, f"{v:.0f}", anchor="end", size=11))
    body.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#999"/>'
    )
    body.append(_text(left + plot_w / 2, height - 8, "boot # (oldest left)", size=11))
    legend_y = top + 4
    for name, (colour, _counts) in stacks.items():
        body.append(
            f'<rect x="{left + plot_w + 8}" y="{legend_y - 9}" width="12" height="12" fill="{colour}"/>'
        )
        body.append(_text(left + plot_w + 26, legend_y + 1, name, anchor="start", size=11))
        legend_y += 18
    return _svg(width, height, body, title)


def hbars(rows: list[tuple[str, float, float | None, str]], title: str, unit: str) -> str:
    """Horizontal bars ``(label, value, floor, colour)``; each floor a dark tick on its bar."""
    width = 820
    left, top, row_h = 110, 34, 24
    height = top + row_h * len(rows) + 30
    plot_w = width - left - 120
    hi = max([v for _l, v, _f, _c in rows] + [f or 0 for _l, _v, f, _c in rows] + [1e-9]) * 1.1
    body = [_text(width / 2, 20, title, size=13, weight="bold")]
    for k, (label, value, floor, colour) in enumerate(rows):
        y = top + k * row_h
        w = value / hi * plot_w
        body.append(_text(left - 8, y + 15, label, anchor="end"))
        body.append(
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}"/>'
        )
        body.append(_text(left + w + 6, y + 15, f"{value:.1f} {unit}", anchor="start", size=11))
        if floor:
            fx = left + floor / hi * plot_w
            body.append(
                f'<line x1="{fx:.1f}" x2="{fx:.1f}" y1="{y}" y2="{y + row_h - 2}" stroke="#000" '
                'stroke-width="2"/>'
            )
    body.append(_text(left, height - 8, "black tick: floor", anchor="start", size=11))
    return _svg(width, height, body, title)


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


def _outcome_colour(outcome: str | None) -> str:
    return {"passed": PASS_C, "failed": FAIL_C, "skipped": SKIP_C}.get(outcome or "", WARN_C)


# ---- sections --------------------------------------------------------------------------------------


def _section_summary(doc: dict, latest: Record) -> str:
    meta = latest.meta
    ok = bool(meta.get("ok"))
    word = "PASS" if ok else "FAIL"
    counts = history.counts_text(meta.get("counts") or {})
    boots = doc.get("boots", [])
    return (
        f'<header id="summary" class="{"status-pass" if ok else "status-fail"}" '
        f'data-host="{esc(meta.get("host"))}" data-boot-id="{esc(latest.boot_id)}" '
        f'data-ok="{str(ok).lower()}">'
        f'<h1>{esc(meta.get("host"))} <span class="badge {"pass" if ok else "fail"}">{word}</span></h1>'
        f"<p>Latest boot <code>{esc(latest.boot_id)}</code>, checked "
        f"{esc(history.when(meta.get('finished')))} UTC ({esc(', '.join(meta.get('tiers') or []))} "
        f"tier): <strong>{esc(counts)}</strong>. {len(boots)} boot record(s) in "
        f"<code>{esc(doc.get('runs_dir'))}</code>.</p>"
        + (f'<p class="error">{esc(meta["error"])}</p>' if meta.get("error") else "")
        + "</header>"
    )


def _section_escalated(entry: dict) -> str:
    """The first thing on the page when a GPU failed the same way at several boots in a row."""
    escalated = entry.get("escalated") or []
    if not escalated:
        return ""
    items = "".join(
        f'<li class="escalation" data-gpu="{esc(e["gpu"])}" data-check="{esc(e["check"])}" '
        f'data-boots="{esc(e["boots"])}">{esc(e["text"])}</li>'
        for e in escalated
    )
    return (
        '<section id="escalated" class="status-fail"><h2>Needs hardware attention</h2>'
        f"<p>Failed the same way at {history.ESCALATE_AFTER} or more consecutive boots: "
        "rebooting again will not fix it (reseat, swap or RMA the part, and check its cable and "
        f"slot).</p><ul>{items}</ul></section>"
    )


def _section_changes(entry: dict) -> str:
    def items(changes, empty):
        if not changes:
            return f'<li class="none">{esc(empty)}</li>'
        return "".join(
            f'<li class="change" data-kind="{esc(c["kind"])}">{esc(c["text"])}</li>'
            for c in changes
        )

    previous = "first record: nothing to compare with" if entry.get("first") else "no change"
    if not entry.get("has_baseline"):
        against = "no calibrated baseline on the node (gpubox calibrate)"
    elif not entry.get("measured"):
        against = "no bandwidth measured at this boot (the baseline holds bandwidth figures)"
    else:
        against = "every measurement within 10% of the baseline"
    return (
        '<section id="changes"><h2>What changed at this boot</h2>'
        '<h3>Against the previous boot</h3><ul id="changes-previous">'
        + items(entry.get("changes"), previous)
        + '</ul><h3>Against the calibrated baseline</h3><ul id="changes-baseline">'
        + items(entry.get("baseline_changes"), against)
        + "</ul></section>"
    )


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


def _section_checks(latest: Record) -> str:
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
            f'<tr class="check {esc(outcome)}" data-check="{esc(short)}" '
            f'data-outcome="{esc(outcome)}"><td class="id"><code>{esc(short)}</code></td>'
            f'<td class="expected">{esc(_fmt(v.get("expected")))}</td>'
            f'<td class="found">{esc(_fmt(v.get("found")))}</td>'
            f'<td class="verdict"><span class="badge {esc(level)}">{esc(level)}</span></td>'
            f'<td class="message">{esc(message)}</td></tr>'
        )
    if not rows:
        rows.append('<tr><td colspan="5">no check results in this record</td></tr>')
    return (
        '<section id="checks"><h2>Expected vs found</h2>'
        "<p>Every check of the latest boot: what the node spec expects, what the node showed.</p>"
        '<table id="expected-vs-found"><thead><tr><th>check</th><th>expected</th><th>found</th>'
        "<th>verdict</th><th>message</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _section_gpus(latest: Record) -> str:
    spec = _spec(latest)
    snap = history.snapshot(latest.results, latest.meta.get("host"))
    lock = (spec.get("clocks") or {}).get("graphics_mhz")
    limits = spec.get("limits") or {}
    pcie = spec.get("pcie") or {}
    want_link = f"Gen{pcie.get('min_gen') or '-'} x{pcie.get('min_width') or '-'}"
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
        name = f"gpu{index}"
        if gpu is None:
            rows.append(
                f'<tr class="gpu failed" data-gpu="{name}"><td>{name}</td><td>{esc(bus)}</td>'
                '<td colspan="6">not found by NVML</td></tr>'
            )
            continue
        if gpu.get("lost"):
            rows.append(
                f'<tr class="gpu failed" data-gpu="{name}"><td>{name}</td><td>{esc(bus)}</td>'
                '<td colspan="6">lost (GPU_IS_LOST)</td></tr>'
            )
            continue
        link = gpu.get("pcie") or {}
        clocks = gpu.get("clocks") or {}
        reasons = (gpu.get("clock_event_reasons") or {}).get("names") or []
        rows.append(
            f'<tr class="gpu" data-gpu="{name}"><td>{name}</td><td>{esc(bus)}</td>'
            f"<td>{esc(gpu.get('name'))}</td>"
            f"<td>Gen{esc(link.get('gen_current'))} x{esc(link.get('width_current'))} "
            f'<span class="want">(floor {esc(want_link)})</span></td>'
            f"<td>{esc(clocks.get('sm_mhz'))} MHz {esc('[' + ', '.join(reasons) + ']' if reasons else '')} "
            f'<span class="want">(lock {esc(lock or "none")})</span></td>'
            f"<td>{esc(gpu.get('temperature_c'))} C "
            f'<span class="want">(max {esc(limits.get("gpu_temp_c"))})</span></td>'
            f"<td>{esc(gpu.get('hbm_temperature_c'))} C "
            f'<span class="want">(max {esc(limits.get("hbm_temp_c"))})</span></td>'
            f"<td>{esc(_fmt(gpu.get('persistence_mode')))}</td></tr>"
        )
    return (
        '<section id="gpus-section"><h2>GPUs</h2><table id="gpus"><thead><tr><th>GPU</th>'
        "<th>bus id</th><th>name</th><th>PCIe link</th><th>SM clock</th><th>GPU temp</th>"
        "<th>HBM temp</th><th>persistence</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


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


_LEVEL_C = {"pass": PASS_C, "warn": WARN_C, "fail": FAIL_C, "unknown": SKIP_C}


def pcie_tree_svg(links: list[dict], boxes: dict[str, dict], title: str) -> str:
    """Root ports on top, switches in the middle, GPUs below; each link coloured by its level."""
    gpus = sorted(
        (b for b, box in boxes.items() if box["kind"] == "gpu"), key=lambda b: boxes[b]["label"]
    )
    col, top, row, box_w, box_h = 150, 48, 110, 132, 40
    width = max(len(gpus) * col + 40, _text_width(title, 13) + 24)
    x: dict[str, float] = {b: 20 + i * col + col / 2 for i, b in enumerate(gpus)}
    parent = {ln["lower"]: ln["upper"] for ln in links}
    for _ in range(4):  # switches, then root ports: centred over what hangs below them
        for b in boxes:
            below = [x[c] for c, p in parent.items() if p == b and c in x]
            if below and b not in gpus:
                x[b] = sum(below) / len(below)
    level_y = {"root": top, "switch": top + row, "gpu": top + 2 * row}
    body = [_text(width / 2, 20, title, size=13, weight="bold")]
    for ln in links:
        if ln["upper"] not in x or ln["lower"] not in x:
            continue
        x1, y1 = x[ln["upper"]], level_y[boxes[ln["upper"]]["kind"]] + box_h
        x2, y2 = x[ln["lower"]], level_y[boxes[ln["lower"]]["kind"]]
        colour = _LEVEL_C.get(ln["level"], SKIP_C)
        body.append(
            f'<line x1="{x1:.1f}" y1="{y1}" x2="{x2:.1f}" y2="{y2}" stroke="{colour}" '
            'stroke-width="5"/>'
        )
        # The label beside the line, on its outer side, so two links from one switch never meet.
        left = x2 < x1 - 1
        lx, ly = x1 + (x2 - x1) * 0.6 + (-8 if left else 8), y1 + (y2 - y1) * 0.6 + 4
        body.append(
            _text(lx, ly, ln["text"], anchor="end" if left else "start", fill=colour, weight="bold")
        )
    for b, box in boxes.items():
        if b not in x:
            continue
        y = level_y[box["kind"]]
        fill = {"root": "#eceff1", "switch": "#e3f2fd", "gpu": "#f1f8e9"}[box["kind"]]
        body.append(
            f'<rect x="{x[b] - box_w / 2:.1f}" y="{y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{fill}" stroke="#607d8b"/>'
        )
        body.append(
            _text(
                x[b],
                y + 16,
                box["label"].split(" ")[-1] if box["kind"] != "gpu" else box["label"],
                weight="bold",
            )
        )
        sub = {"root": "root port", "switch": "PCIe switch"}.get(box["kind"], busid.short(b))
        body.append(_text(x[b], y + 31, sub, size=11, fill="#555"))
    return _svg(int(width), top + 2 * row + box_h + 16, body, title)


def _section_pcie(latest: Record) -> str:
    links, boxes, why = _pcie_links(latest)
    if not boxes:
        return (
            '<section id="pcie"><h2>PCIe paths</h2>'
            f'<p id="pcie-tree" data-kind="none">PCIe paths not readable: {esc(why)}</p></section>'
        )
    title = "PCIe tree: root ports, switches, GPUs (links coloured against their floors)"
    rows = "".join(
        f'<tr class="link {esc(ln["level"])}" data-link="{esc(ln["id"])}" data-level="{esc(ln["level"])}">'
        f"<td>{esc(ln['kind'])}</td><td>{esc(ln['text'])}</td><td>{esc(', '.join(ln['gpus']))}</td>"
        f'<td style="color:{_LEVEL_C.get(ln["level"], SKIP_C)}">{esc(ln["level"])}</td></tr>'
        for ln in sorted(links, key=lambda ln: (ln["gpus"][0], ln["kind"]))
    )
    return (
        '<section id="pcie"><h2>PCIe paths</h2>'
        f'<figure id="pcie-tree" data-kind="tree">{img(pcie_tree_svg(links, boxes, title), "pcie-tree-img", title)}'
        "<figcaption>Each GPU's own link as NVML reads it, each switch's uplink as sysfs reads it; "
        "green: at or above its floor (or its capability), amber: below its capability, red: "
        "below its floor.</figcaption></figure>"
        '<table id="pcie-links" class="compact"><thead><tr><th>link</th><th>now</th><th>GPUs</th>'
        f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _section_p2p(latest: Record) -> str:
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
            rows.append(
                f'<tr data-pair="gpu{a}-gpu{b}"><td>gpu{a}-gpu{b}</td><td>{value:.2f}</td>'
                f"<td>{esc(_fmt(floor))}</td></tr>"
            )
        table = (
            '<table id="p2p-matrix" class="compact"><thead><tr><th>pair</th><th>GB/s</th>'
            "<th>floor</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
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
                rows.append(
                    f'<tr data-pair="gpu{i}-gpu{j}"><td>gpu{i} -> gpu{j}</td><td>{esc(read)}</td>'
                    f"<td>{esc(write)}</td></tr>"
                )
        table = (
            '<table id="p2p-matrix" class="compact"><thead><tr><th>pair</th><th>READ</th>'
            "<th>WRITE</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
    title = "P2P bandwidth (GB/s)" if kind == "bandwidth" else "NVML P2P status (READ / WRITE)"
    svg = heatmap(labels, cells, title)
    return (
        '<section id="p2p"><h2>P2P</h2>'
        f'<figure id="p2p-heatmap" data-kind="{kind}">{img(svg, "p2p-heatmap-img", title)}'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
        f"<details><summary>the numbers</summary>{table}</details></section>"
    )


def _section_host_bandwidth(latest: Record) -> str:
    bench = history.measurements(latest.results, latest.meta.get("host"))
    found = sorted(
        ((m[1], int(m[2]), v) for k, v in bench.items() if (m := _HOST_KEY.match(k))),
        key=lambda t: (t[1], t[0] != "h2d"),
    )
    if not found:
        return (
            '<section id="host-bandwidth"><h2>Host bandwidth per GPU</h2>'
            '<p class="none">No host bandwidth in this record: the bandwidth tier did not run at '
            "this boot (acceptance.bandwidth, or `gpubox accept --bandwidth`).</p></section>"
        )
    rows, bars = [], []
    for direction, index, value in found:
        floor, detail = host_floor(latest, direction, index)
        colour = FAIL_C if floor and value < floor else PASS_C
        bars.append((f"{direction} gpu{index}", value, floor, colour))
        rows.append(
            f'<tr data-measurement="{direction}[gpu{index}]" class="{"failed" if colour == FAIL_C else "passed"}">'
            f"<td>gpu{index}</td><td>{direction}</td><td>{value:.2f}</td><td>{esc(_fmt(floor))}</td>"
            f"<td>{esc(detail)}</td></tr>"
        )
    svg = hbars(bars, "host <-> device bandwidth (GB/s)", "GB/s")
    return (
        '<section id="host-bandwidth"><h2>Host bandwidth per GPU</h2>'
        f"<figure>{img(svg, 'host-bandwidth-img', 'host bandwidth per GPU')}</figure>"
        '<table id="host-bandwidth-table"><thead><tr><th>GPU</th><th>direction</th><th>GB/s</th>'
        "<th>floor</th><th>floor from</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _section_allreduce(latest: Record) -> str:
    bench = history.measurements(latest.results, latest.meta.get("host"))
    found = {k: v for k, v in bench.items() if k.startswith("allreduce[")}
    if not found:
        return (
            '<section id="allreduce"><h2>all_reduce (nccl-tests)</h2>'
            '<p class="none">No all_reduce results in this record: the bandwidth tier did not run '
            "at this boot.</p></section>"
        )
    floors: dict[str, float] = {}
    spec = _spec_obj(latest)
    if spec is not None:
        try:
            from gpubox import floors as floors_mod

            floors = {floors_mod.allreduce_key(f): f.busbw_gbps for f in spec.floors.allreduce}
        except Exception:
            floors = {}
    rows = []
    for key, value in sorted(found.items()):
        floor = floors.get(key)
        ok = floor is None or value >= floor
        rows.append(
            f'<tr data-measurement="{esc(key)}" class="{"passed" if ok else "failed"}">'
            f"<td><code>{esc(key)}</code></td><td>{value:.2f}</td><td>{esc(_fmt(floor))}</td></tr>"
        )
    return (
        '<section id="allreduce"><h2>all_reduce (nccl-tests)</h2>'
        '<table id="allreduce-table"><thead><tr><th>GPUs @ size</th><th>busbw GB/s</th>'
        "<th>floor</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


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


def _section_trends(recs: list[Record]) -> str:
    labels = [str(n) for n in range(1, len(recs) + 1)]  # the # of the boot history table
    counts = [r.meta.get("counts") or {} for r in recs]
    figures = [
        img(
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
    figures.append(
        img(
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
    figures.append(
        img(
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
                figures.append(img(line_chart(labels, series, title, "GB/s"), element, title))
    else:
        figures.append('<p class="none">No bandwidth measured in any record yet.</p>')
    return (
        '<section id="trends"><h2>Trends across boots</h2>'
        + "".join(f"<figure>{f}</figure>" for f in figures)
        + "</section>"
    )


def _section_boots(doc: dict) -> str:
    rows = []
    for n, b in reversed(list(enumerate(doc.get("boots", []), 1))):
        changes = [e["text"] for e in b.get("escalated", [])]
        changes += [c["text"] for c in b.get("changes", [])]
        changes += [f"vs baseline: {c['text']}" for c in b.get("baseline_changes", [])]
        text = "<br>".join(esc(t) for t in changes) or (
            "first record" if b.get("first") else "no change"
        )
        ok = b.get("ok")
        rows.append(
            f'<tr class="boot {"passed" if ok else "failed"}" data-boot-id="{esc(b["boot_id"])}">'
            f"<td>{n}</td><td><code>{esc(short_boot_id(b['boot_id']))}</code></td>"
            f"<td>{esc(history.when(b.get('finished')))}</td>"
            f'<td><span class="badge {"pass" if ok else "fail"}">{"PASS" if ok else "FAIL"}</span></td>'
            f'<td>{esc(history.counts_text(b.get("counts") or {}))}</td><td class="changes">{text}</td></tr>'
        )
    return (
        '<section id="boots"><h2>Boot history (newest first)</h2><table id="boot-history">'
        "<thead><tr><th>#</th><th>boot</th><th>checked (UTC)</th><th>result</th><th>checks</th>"
        "<th>changes vs the previous boot</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
header{border-left:8px solid #999;padding:4px 16px;margin-bottom:16px}
section#escalated{border:2px solid #c62828;padding:0 12px}
header.status-pass{border-color:#2e7d32}header.status-fail{border-color:#c62828}
h1{margin:8px 0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5}tr.failed td{background:#fdecea}td.message{color:#555}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
background:#9e9e9e}.badge.pass{background:#2e7d32}.badge.fail{background:#c62828}
.badge.warn{background:#ef8f00}.badge.skip{background:#9e9e9e}
.want{color:#777;font-size:12px}.none{color:#777}.error{color:#c62828}
ul li.change{margin:2px 0}figure{margin:12px 0}img.plot{max-width:100%;border:1px solid #eee}
table.compact{width:auto}footer{margin-top:40px;color:#666;font-size:13px}
"""


def _burn_of(latest: Record, host: str, burn: dict | None) -> dict | None:
    """The burn to show: the one given, else the stress tier's in the latest record's results."""
    if burn is not None:
        return burn
    hosts = (latest.results or {}).get("hosts", {}) if latest is not None else {}
    entry = hosts.get(host) or next(iter(hosts.values()), {})
    return entry.get("burn") if isinstance(entry, dict) else None


def _section_burn(burn: dict | None) -> str:
    """The burn as time series per GPU: SM clock, temperature, HBM temperature, power, Gflop/s."""
    if not burn or not burn.get("telemetry"):
        return ""
    gpus = burn["telemetry"].get("gpus", {})
    limits = burn.get("limits", {})
    charts = [
        ("sm_mhz", "SM clock", "MHz", None),
        ("temp_c", "GPU temperature", "C", limits.get("gpu_temp_c")),
        ("hbm_temp_c", "HBM temperature", "C", limits.get("hbm_temp_c")),
        ("power_w", "power", "W", limits.get("power_w")),
    ]
    figures = []
    for key, title, unit, ceiling in charts:
        series = {f"gpu{g}": list(gpus[g].get(key, [])) for g in sorted(gpus, key=int)}
        longest = max((len(v) for v in series.values()), default=0)
        first = next(iter(gpus.values()), {})
        labels = [f"{t:.0f}s" for t in first.get("t", [])][:longest] or [
            str(i) for i in range(longest)
        ]
        refs = {"ceiling": ceiling} if ceiling else None
        svg = line_chart(labels, series, f"burn: {title} per GPU", unit, refs)
        figures.append(img(svg, f"burn-{key.replace('_', '-')}", f"burn {title} per GPU"))
    thr = burn.get("throughput", {})
    if thr:
        series = {f"gpu{g}": list(thr[g].get("gflops", [])) for g in sorted(thr, key=int)}
        first = thr[sorted(thr, key=int)[0]]
        labels = [f"{t:.0f}s" for t in first.get("t", [])]
        svg = line_chart(labels, series, "burn: throughput per GPU", "Gflop/s")
        figures.append(img(svg, "burn-gflops", "burn throughput per GPU"))
    stop = burn.get("safety_stop")
    note = (
        f'<p id="burn-safety-stop" class="status-fail">Safety stop: {esc(stop.get("message"))}</p>'
        if stop
        else ""
    )
    return (
        f'<section id="burn" data-ok="{str(bool(burn.get("ok"))).lower()}"><h2>Burn (gpu-burn)</h2>'
        + note
        + "".join(figures)
        + "</section>"
    )


def render_html(doc: dict, burn: dict | None = None) -> str:
    """The page for one host's ``--full`` history document (and a burn document, if given)."""
    recs = history.records_of(doc)
    host = doc.get("host") or "?"
    if not recs:
        body = (
            f'<header id="summary" class="status-none" data-host="{esc(host)}" data-ok="none">'
            f"<h1>{esc(host)}</h1><p>No boot record yet in <code>{esc(doc.get('runs_dir'))}</code>: "
            "the acceptance unit has not run (reboot, or run <code>gpubox accept</code>).</p></header>"
        )
    else:
        latest, entry = recs[-1], doc["boots"][-1]
        body = "".join(
            [
                _section_summary(doc, latest),
                _section_escalated(entry),
                _section_changes(entry),
                _section_gpus(latest),
                _section_pcie(latest),
                _section_p2p(latest),
                _section_checks(latest),
                _section_host_bandwidth(latest),
                _section_allreduce(latest),
                _section_burn(_burn_of(latest, host, burn)),
                _section_trends(recs),
                _section_boots(doc),
            ]
        )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>gpubox report: {esc(host)}</title><style>{CSS}</style></head><body>"
        + body
        + f"<footer>gpubox report of {esc(host)}, generated {generated} UTC from the node's boot "
        "records (<code>gpubox history</code>). Self-contained: no network needed.</footer>"
        "</body></html>\n"
    )


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
