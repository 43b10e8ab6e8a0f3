"""Parse the output of cuda-samples ``p2pBandwidthLatencyTest``.

>>> out = parse('''Bidirectional P2P=Enabled Bandwidth Matrix (GB/s)
...    D\\\\D     0      1
...      0 533.34   6.10
...      1   6.10 534.01''')
>>> out["ok"], out["matrices"]["Bidirectional P2P=Enabled Bandwidth Matrix (GB/s)"][0]
(True, [533.34, 6.1])

Keys: ``ok`` (no error line, at least one matrix, none cut short), ``n_gpus``, ``devices``
[{index, name, bus_id "dddd:bb:dd", pci_bus_id, pci_device_id, pci_domain_id}],
``can_access`` {"0-1": bool}, ``connectivity`` (the 0/1 "P2P Connectivity Matrix" or None),
``matrices`` {title exactly as printed: square list of rows, None for missing cells},
``cpu_matrices`` {latency title: the CPU sub-table printed under it}, ``errors``,
``warnings``. For a latency title, ``matrices`` holds the GPU sub-table.

A file that ends inside a matrix (truncated paste) keeps the rows it has, fills the rest with
None, warns and sets ``ok`` false; a short row with more output after it is a ParseError.
"""

from __future__ import annotations

import re

from gpubox.parsers.common import ParseError, clean_lines, is_prompt_line, parse_number

TOOL = "p2pBandwidthLatencyTest"

_BANNER = re.compile(r"^\[P2P \(Peer-to-Peer\) GPU Bandwidth Latency Test\]")
_DEVICE = re.compile(
    r"^Device:\s*(\d+),\s*(.+?),\s*pciBusID:\s*([0-9a-fA-F]+),\s*pciDeviceID:\s*([0-9a-fA-F]+),"
    r"\s*pciDomainID:\s*([0-9a-fA-F]+)"
)
_ACCESS = re.compile(r"^Device=(\d+) (CAN|CANNOT) Access Peer Device=(\d+)")
_CONNECTIVITY = "P2P Connectivity Matrix"
_TITLE = re.compile(r"^(?:Unidirectional |Bidirectional )?P2P=\w+ .*Matrix \((?:GB/s|us)\)$")
_COLUMNS = re.compile(r"^(D\\D|GPU|CPU)((?:\s+\d+)+)$")
_ROW = re.compile(r"^(\d+)\s+(.*)$")
_ERRORS = re.compile(r"Cuda failure|CUDA error|cudaError|Failed to |Segmentation fault")
_QUIET = re.compile(r"^(?:\*\*\*NOTE:|NOTE: |So you can see lesser Bandwidth)")


class _Matrix:
    """One table being filled: its title, whether it is the CPU latency part, its rows."""

    def __init__(self, title: str, kind: str, size: int, line_no: int) -> None:
        self.title, self.kind, self.size, self.line_no = title, kind, size, line_no
        self.rows: dict[int, list[float | None]] = {}

    def square(self) -> list[list[float | None]]:
        return [self.rows.get(i, [None] * self.size) for i in range(self.size)]

    def complete(self) -> bool:
        return len(self.rows) == self.size and all(None not in r for r in self.rows.values())


def parse(text: str) -> dict:
    """Parse p2pBandwidthLatencyTest output; see the module docstring for the keys."""
    out: dict = {
        "ok": False,
        "n_gpus": None,
        "devices": [],
        "can_access": {},
        "connectivity": None,
        "matrices": {},
        "cpu_matrices": {},
        "errors": [],
        "warnings": [],
    }
    title: str | None = None
    tables: list[_Matrix] = []
    current: _Matrix | None = None
    short_row: tuple[int, str] | None = None  # a row cut short: fine only at the very end
    recognized = False
    first_text: tuple[int, str] | None = None

    for no, raw in clean_lines(text):
        line = raw.strip()
        if not line:
            current = None
            continue
        if first_text is None:
            first_text = (no, raw)
        if short_row is not None:
            no, found = short_row
            raise ParseError(TOOL, no, f"a complete matrix row under {title!r}", found)
        if current is not None and (m := _ROW.match(line)):
            short_row = _add_row(current, m, no, raw)
            continue
        current = None
        if _BANNER.match(line):
            recognized = True
        elif m := _DEVICE.match(line):
            recognized = True
            out["devices"].append(_device(m))
        elif m := _ACCESS.match(line):
            recognized = True
            out["can_access"][f"{m.group(1)}-{m.group(3)}"] = m.group(2) == "CAN"
        elif line == _CONNECTIVITY or _TITLE.match(line):
            recognized = True
            title = line
        elif (m := _COLUMNS.match(line)) and title is not None:
            columns = [int(c) for c in m.group(2).split()]
            if columns != list(range(len(columns))):
                raise ParseError(TOOL, no, "column labels 0 1 2 ...", raw)
            kind = "cpu" if m.group(1) == "CPU" else "main"
            current = _Matrix(title, kind, len(columns), no)
            tables.append(current)
        elif _ERRORS.search(line):
            out["errors"].append(line)
        elif not (_QUIET.match(line) or is_prompt_line(line)):
            out["warnings"].append(f"line {no}: ignored {line[:120]!r}")

    if not recognized:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL, no, "p2pBandwidthLatencyTest output (banner, 'Device: N, ...' or a matrix)", found
        )

    incomplete = False
    for table in tables:
        if not table.complete():
            incomplete = True
            out["warnings"].append(
                f"line {table.line_no}: {table.title!r} ({table.kind}) is incomplete "
                f"({len(table.rows)} of {table.size} rows; output truncated?)"
            )
        if table.title == _CONNECTIVITY:
            out["connectivity"] = [[_int(v) for v in row] for row in table.square()]
        elif table.kind == "cpu":
            out["cpu_matrices"][table.title] = table.square()
        else:
            out["matrices"][table.title] = table.square()

    out["n_gpus"] = len(out["devices"]) or (tables[0].size if tables else None)
    out["ok"] = bool(out["matrices"]) and not out["errors"] and not incomplete
    return out


def _add_row(table: _Matrix, m: re.Match, no: int, raw: str) -> tuple[int, str] | None:
    """Store one row; return ``(no, raw)`` when the row is short (only allowed at the end)."""
    index, cells = int(m.group(1)), m.group(2).split()
    expected = f"row label 0..{table.size - 1} and {table.size} numbers under {table.title!r}"
    if index >= table.size or index in table.rows or len(cells) > table.size:
        raise ParseError(TOOL, no, expected, raw)
    try:
        values = [parse_number(c) for c in cells]
    except ValueError:
        raise ParseError(TOOL, no, expected, raw) from None
    table.rows[index] = values + [None] * (table.size - len(values))
    return (no, raw) if len(values) < table.size else None


def _device(m: re.Match) -> dict:
    bus, dev, dom = (int(m.group(i), 16) for i in (3, 4, 5))
    return {
        "index": int(m.group(1)),
        "name": m.group(2).strip(),
        "bus_id": f"{dom:04x}:{bus:02x}:{dev:02x}",
        "pci_bus_id": m.group(3),
        "pci_device_id": m.group(4),
        "pci_domain_id": m.group(5),
    }


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
