"""The report's plots as SVG, drawn with the standard library only: a heatmap (the P2P matrix),
line charts and stacked bars over boots, horizontal bars against floors, and the PCIe tree.

Each function returns one self-contained ``<svg>`` document; :func:`data_uri` makes it an
``<img src>`` so the page needs no network. Text placed with ``_text`` is escaped with :func:`esc`.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from gpubox import busid

# Verdict colours (the page's badges use the same), one colour per series, and a link's level.
PASS_C, FAIL_C, WARN_C, SKIP_C, NONE_C = "#2e7d32", "#c62828", "#ef8f00", "#9e9e9e", "#e0e0e0"
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
    "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
)  # fmt: skip
LEVEL_C = {"pass": PASS_C, "warn": WARN_C, "fail": FAIL_C, "unknown": SKIP_C}


def esc(value: Any) -> str:
    """``value`` as text safe in markup and in a quoted attribute; None as nothing."""
    return html.escape("" if value is None else str(value), quote=True)


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f"<title>{esc(title)}</title>"
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>"
    )


def data_uri(svg: str) -> str:
    """``svg`` as a ``data:`` URI for an ``<img src>``: base64, so it needs no escaping."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


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
        colour = LEVEL_C.get(ln["level"], SKIP_C)
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
