"""Parse the output of cuda-samples ``bandwidthTest`` (quick/range/shmoo tables and ``--csv``).

>>> out = parse('''[CUDA Bandwidth Test] - Starting...
... Running on...
...
...  Device 0: NVIDIA A100 80GB PCIe
...  Quick Mode
...
...  Host to Device Bandwidth, 1 Device(s)
...  PINNED Memory Transfers
...    Transfer Size (Bytes)\tBandwidth(GB/s)
...    32000000\t\t\t17.3
...
... Result = PASS''')
>>> out["ok"], out["results"][0]["direction"], out["results"][0]["gbps"]
(True, 'h2d', 17.3)

Keys: ``ok`` (every ``Result =`` line says PASS, at least one does, no CUDA error, and at
least one figure was read and none was left unread: a run whose tables could not be read is
never ok, whatever its ``Result =`` line says; ``errors`` then names the lines that were not
understood),
``result`` ("PASS"/"FAIL"/None), ``devices`` [{index, name}], ``results`` [{device,
direction h2d|d2h|d2d, memory pinned|pageable|None (d2d), write_combined, size_bytes, gbps,
num_devices, printed {value, unit}}], ``errors``, ``warnings``. Several runs in one paste are
concatenated in order.

``device`` is the index from the run's ``Device N:`` line; with ``--device=all`` several
devices are listed and the figure is their sum, so ``device`` is None (``num_devices`` > 1).

Units: CUDA <= 10 printed ``Bandwidth(MB/s)``; ``gbps`` is that value / 1000. (The old
samples computed MB as 2**20 bytes, so the exact decimal figure is 4.9 % higher; the printed
value and unit are kept under ``printed`` for anyone who needs that.)
"""

from __future__ import annotations

import re

from gpubox.parsers.common import ParseError, clean_lines, failure_kind, is_prompt_line

TOOL = "bandwidthTest"

_BANNER = re.compile(r"^\[CUDA Bandwidth Test\] - Starting")
_RUNNING_ON = re.compile(r"^Running on\.\.\.")
_DEVICE = re.compile(r"^Device (\d+): (.+)$")
_SECTION = re.compile(r"^(Host to Device|Device to Host|Device to Device) Bandwidth, (\d+) Device")
_MEMORY = re.compile(r"^(PINNED|PAGEABLE) Memory Transfers")
_TABLE_HEADER = re.compile(r"Transfer Size \(Bytes\)\s+Bandwidth\((GB|MB)/s\)")
_TABLE_ROW = re.compile(r"^(\d+)\s+(\d+(?:\.\d+)?)$")
_CSV = re.compile(
    r"^bandwidthTest-(H2D|D2H|D2D)(?:-(Pinned|Paged|Pageable)(-WriteCombined)?)?,"
    r"\s*Bandwidth\s*=\s*(\d+(?:\.\d+)?)\s*(GB|MB)/s,\s*Time\s*=\s*\S+\s*s,"
    r"\s*Size\s*=\s*(\d+)\s*bytes,\s*NumDevsUsed\s*=\s*(\d+)"
)
_RESULT = re.compile(r"^Result = (PASS|FAIL)")
_DEVICE_FLAG = re.compile(r"--device=(\d+)\b")
_ERRORS = re.compile(
    r"returned \d+$|^-> |CUDA error at |code=\d+\(cuda\w+\)|^!+No devices found|"
    r"Not enough memory|^Error: |^Invalid (?:memory )?mode|^Illegal argument|^Must specify"
)
_QUIET = re.compile(r"^(?:Quick|Range|Shmoo) Mode$|^NOTE: |^\.+$|^!+Cumulative Bandwidth")
_DIRECTIONS = {
    "Host to Device": "h2d",
    "Device to Host": "d2h",
    "Device to Device": "d2d",
    "H2D": "h2d",
    "D2H": "d2h",
    "D2D": "d2d",
}
_MEMORIES = {"PINNED": "pinned", "PAGEABLE": "pageable", "Pinned": "pinned"}
_MEMORIES |= {"Paged": "pageable", "Pageable": "pageable"}


class _Run:
    """What the current run printed so far: its devices and the table being read."""

    def __init__(self, device_flag: int | None = None) -> None:
        self.devices: list[int] = []
        self.device_flag = device_flag
        self.direction: str | None = None
        self.num_devices: int | None = None
        self.memory: str | None = None
        self.write_combined = False
        self.unit: str | None = None  # set while inside a table

    def device(self) -> int | None:
        if len(self.devices) == 1:
            return self.devices[0]
        if not self.devices:
            return self.device_flag
        return None  # --device=all: the figure is a sum over devices


def parse(text: str) -> dict:
    """Parse bandwidthTest output; see the module docstring for the keys."""
    out: dict = {
        "ok": False,
        "result": None,
        "devices": [],
        "results": [],
        "errors": [],
        "warnings": [],
    }
    run = _Run()
    statuses: list[str] = []
    recognized = False
    first_text: tuple[int, str] | None = None
    device_flag: int | None = None
    unread: list[tuple[int, str]] = []  # lines not understood, for the error that names them
    stray: list[tuple[int, str]] = []  # figures printed outside a table the parser could read

    for no, raw in clean_lines(text):
        line = raw.strip()
        if not line:
            run.unit = None  # a blank line ends a table
            continue
        if first_text is None:
            first_text = (no, raw)
        if is_prompt_line(line):
            m = _DEVICE_FLAG.search(line)
            device_flag = int(m.group(1)) if m else None
            continue
        if run.unit is not None and line[0].isdigit():
            m = _TABLE_ROW.match(line)
            if not m:
                raise ParseError(TOOL, no, "a '<size in bytes>  <bandwidth>' table row", raw)
            out["results"].append(_result(run, int(m.group(1)), float(m.group(2)), run.unit))
            continue
        run.unit = None
        if _BANNER.match(line):
            recognized = True
            run = _Run(device_flag)
        elif _RUNNING_ON.match(line):
            if run.devices:  # a second run whose banner was not pasted
                run = _Run(device_flag)
        elif m := _DEVICE.match(line):
            index = int(m.group(1))
            run.devices.append(index)
            if not any(d["index"] == index for d in out["devices"]):
                out["devices"].append({"index": index, "name": m.group(2).strip()})
        elif m := _SECTION.match(line):
            recognized = True
            run.direction = _DIRECTIONS[m.group(1)]
            run.num_devices = int(m.group(2))
            run.memory, run.write_combined = None, False
        elif m := _MEMORY.match(line):
            recognized = True
            run.memory, run.write_combined = _MEMORIES[m.group(1)], False
        elif h := _TABLE_HEADER.search(line):
            # The tool prints its write-combined note without a newline, so the note and the
            # table header share one line.
            recognized = True
            run.write_combined = "Write-Combined" in line
            run.unit = h.group(1)
        elif line.startswith("bandwidthTest-"):
            recognized = True
            out["results"].append(_csv_result(run, no, raw))
        elif m := _RESULT.match(line):
            recognized = True
            statuses.append(m.group(1))
        elif _ERRORS.search(line):
            out["errors"].append(line)
        elif _QUIET.match(line):
            continue
        elif (failure := failure_kind(line)) == "error":
            out["errors"].append(line)
        elif failure == "warning":
            out["warnings"].append(f"line {no}: {line}")
        else:
            unread.append((no, line))
            out["warnings"].append(f"line {no}: ignored {line[:120]!r}")
            if _TABLE_ROW.match(line):
                stray.append((no, line))

    if not recognized:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL,
            no,
            "bandwidthTest output ('[CUDA Bandwidth Test] - Starting...', tables or CSV lines)",
            found,
        )
    if statuses:
        out["result"] = "FAIL" if "FAIL" in statuses else "PASS"
    if not out["results"] and not out["errors"]:
        out["errors"].append(_nothing_read(out["result"], unread))
    elif stray and out["results"]:
        out["errors"].append(
            f"figures outside a table the parser could read (no column header above them): "
            f"{_lines(stray)}"
        )
    out["ok"] = out["result"] == "PASS" and not out["errors"] and bool(out["results"])
    return out


def _nothing_read(result: str | None, unread: list[tuple[int, str]]) -> str:
    """The error of a run that printed no figure the parser could read."""
    said = f" (the tool said Result = {result})" if result else ""
    if not unread:
        return f"no measurement in the output{said}: no table and no CSV line"
    return f"no measurement could be read{said}; lines not understood: {_lines(unread)}"


def _lines(lines: list[tuple[int, str]], most: int = 5) -> str:
    shown = ", ".join(f"line {no} {text[:80]!r}" for no, text in lines[:most])
    return shown + (f" and {len(lines) - most} more" if len(lines) > most else "")


def _result(run: _Run, size: int, value: float, unit: str) -> dict:
    return {
        "device": run.device(),
        "direction": run.direction,
        "memory": None if run.direction == "d2d" else run.memory,
        "write_combined": run.write_combined,
        "size_bytes": size,
        "gbps": round(value / 1000.0, 7) if unit == "MB" else value,
        "num_devices": run.num_devices,
        "printed": {"value": value, "unit": f"{unit}/s"},
    }


def _csv_result(run: _Run, no: int, raw: str) -> dict:
    m = _CSV.match(raw.strip())
    if not m:
        raise ParseError(
            TOOL,
            no,
            "'bandwidthTest-<kind>, Bandwidth = X GB/s, Time = T s, Size = N bytes, "
            "NumDevsUsed = D'",
            raw,
        )
    kind, memory, wc, value, unit, size, ndevs = m.groups()
    csv_run = _Run(run.device_flag)
    csv_run.devices = run.devices
    csv_run.direction = _DIRECTIONS[kind]
    csv_run.memory = _MEMORIES[memory] if memory else None
    csv_run.write_combined = bool(wc)
    csv_run.num_devices = int(ndevs)
    return _result(csv_run, int(size), float(value), unit)
