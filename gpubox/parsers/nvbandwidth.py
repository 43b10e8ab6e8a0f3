"""Parse NVIDIA nvbandwidth output, plain text or ``-j`` JSON (detected automatically).

>>> out = parse('''Running device_to_device_memcpy_read_ce.
... memcpy CE GPU(row) -> GPU(column) bandwidth (GB/s)
...           0         1
... 0       N/A    370.90
... 1    370.90       N/A
...
... SUM device_to_device_memcpy_read_ce 741.80''')
>>> test = out["tests"]["device_to_device_memcpy_read_ce"]
>>> out["ok"], test["status"], test["sum"], test["matrix"][0]
(True, 'Passed', 741.8, [None, 370.9])

Keys: ``ok``, ``format`` ("text"/"json"), ``version``, ``git_version``, ``driver_version``,
``cuda_runtime_version``, ``cuda_driver_version``, ``mpi_version``, ``devices`` [{index,
name, bus_id} (+ host, device for multinode ``Process N (host): device M: ...`` lines)],
``tests`` {name: {status, sum, matrix, unit, description, matrices}}, ``unnamed_waived``
(text output prints a bare ``Waived:`` without the test's name), ``errors``, ``warnings``.

Status in text output: ``Passed`` once a matrix was printed; ``Waived``/``Error``/``Not
Found`` as printed; ``Error`` when an ASSERT/CUDA error/pattern-check failure interrupts the
running test; ``Incomplete`` when the output ends before or inside its matrix
(a cut-short last row keeps its cells and fills the rest with None). Tests that print several
matrices (bidirectional Read1/Read2/Total) list them all in ``matrices``; ``matrix``/``sum``
are the one whose SUM key is the test name, else the last (Total). ``unit`` comes from the
description's trailing parenthesis (``GB/s``, or ``ns`` for latency tests).

A matrix whose ``Running <test>.`` line was cut off (a paste that starts at the matrix, or lost
a line between two tests) is kept: its ``SUM <key>`` line names the test (the key, less a
bidirectional ``_read1``/``_total``-style suffix), with a warning; one with neither line is left
out, with a warning.

``ok`` is true when at least one test ran, every test is Passed or Waived, and no error line
(ASSERT, ``Invalid value``, CUDA/NVML errors, any other line that reports a failure, a JSON
``error``) was printed.
"""

from __future__ import annotations

import json
import re

from gpubox.parsers.common import (
    ParseError,
    clean_lines,
    failure_kind,
    is_prompt_line,
    parse_number,
)

TOOL = "nvbandwidth"

_OK_STATUSES = ("Passed", "Waived")
_HEADER_FIELDS = {
    "nvbandwidth Version": "version",
    "Built from Git version": "git_version",
    "MPI version": "mpi_version",
    "CUDA Runtime Version": "cuda_runtime_version",
    "CUDA Driver Version": "cuda_driver_version",
    "Driver Version": "driver_version",
}
_HEADER = re.compile(r"^(" + "|".join(map(re.escape, _HEADER_FIELDS)) + r"):\s*(.*)$")
_BUS_ID = r"(?: \(([0-9a-fA-F]{8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2})\))?$"  # "(00000000:34:00)"
_DEVICE = re.compile(r"^Device (\d+): (.+?)" + _BUS_ID)
_PROCESS = re.compile(r"^Process (\d+) \(([^)]*)\): device (\d+): (.+?)" + _BUS_ID)
_JSON_DEVICE = re.compile(r"^(\d+): (.+?)(?: \(([0-9a-fA-F:]+)\))?(?:: \((.*)\))?$")
_RUNNING = re.compile(r"^Running (\w+)\.$")
_STATUS = re.compile(r"^(Waived|Error|ERROR):\s*(.*)$")
_NOT_FOUND = re.compile(r"Testcase (\S+) not found")
_DESCRIPTION = re.compile(r"\((GB/s|ns|us)\)$")
# A matrix description nvbandwidth prints under "Running <test>.", recognisable without it:
# "memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)".
_MATRIX_DESCRIPTION = re.compile(r"\(row\).*\(column\).*\((?:GB/s|ns|us)\)$")
# SUM keys are the test's name, or its name and the matrix of a bidirectional test.
_KEY_SUFFIX = re.compile(r"_(?:read1|read2|write1|write2|total)$")
_SUM = re.compile(r"^(?:SUM|&&&& PERF) (\S+) (\S+)")
_ERRORS = re.compile(
    r"^ASSERT in expression|Invalid value when checking|^Current offset"
    r"|^\[(?:CUDA_ERROR_|cuda)\w*\]|^NVML_ERROR|^CUDA_ERROR|Segmentation fault"
)
_QUIET = re.compile(
    r"^(?:NOTE: |Additional system-specific tuning|Performance can vary|\[\.\.\.\]$|```)"
)
_UNIT = re.compile(r"\(([^()]*)\)\s*$")


def parse(text: str) -> dict:
    """Parse nvbandwidth output (text or ``-j`` JSON); see the module docstring for the keys."""
    for no, line in clean_lines(text):
        if line.strip():
            if line.lstrip().startswith("{"):
                return _parse_json(text, no)
            break
    return _parse_text(text)


def _empty(fmt: str) -> dict:
    return {
        "ok": False,
        "format": fmt,
        "version": None,
        "git_version": None,
        "driver_version": None,
        "cuda_runtime_version": None,
        "cuda_driver_version": None,
        "mpi_version": None,
        "devices": [],
        "tests": {},
        "unnamed_waived": 0,
        "errors": [],
        "warnings": [],
    }


def _new_test(status: str) -> dict:
    return {
        "status": status,
        "sum": None,
        "matrix": None,
        "unit": None,
        "description": None,
        "matrices": [],
    }


def _parse_text(text: str) -> dict:
    out = _empty("text")
    test: dict | None = None  # the test that printed "Running X." last
    name: str | None = None  # its name (None: a matrix whose "Running" line was cut off)
    unnamed: list[tuple[int, dict]] = []  # such matrices' tests, until a SUM line names them
    matrix: dict | None = None  # the matrix being read (after its description line)
    short_row: tuple[int, str] | None = None
    recognized = False
    first_text: tuple[int, str] | None = None

    for no, raw in clean_lines(text):
        line = raw.strip()
        if not line:
            if matrix is not None and matrix["columns"] is not None:
                matrix = None  # a blank line ends a matrix
            continue
        if first_text is None:
            first_text = (no, raw)
        if short_row is not None:
            raise ParseError(TOOL, short_row[0], "a complete matrix row", short_row[1])
        if matrix is not None:
            if not _SUM.match(line):
                if matrix["columns"] is None:  # the first line under a description
                    matrix["columns"] = line.split()
                else:
                    short_row = _add_row(matrix, no, raw)
                continue
            matrix = None
        if m := _HEADER.match(line):
            recognized = True
            key = _HEADER_FIELDS[m.group(1)]
            out[key] = int(m.group(2)) if m.group(2).isdigit() else m.group(2).strip()
        elif m := _PROCESS.match(line):
            out["devices"].append(
                {
                    "index": int(m.group(1)),
                    "host": m.group(2),
                    "device": int(m.group(3)),
                    "name": m.group(4),
                    "bus_id": m.group(5),
                }
            )
        elif m := _DEVICE.match(line):
            out["devices"].append(
                {"index": int(m.group(1)), "name": m.group(2), "bus_id": m.group(3)}
            )
        elif m := _RUNNING.match(line):
            recognized = True
            name = m.group(1)
            test = out["tests"][name] = _new_test("Incomplete")
        elif m := _STATUS.match(line):
            # Not proof of nvbandwidth on its own: other tools print "ERROR: ..." too.
            status, message = m.group(1), m.group(2)
            if status == "Waived":
                out["unnamed_waived"] += 1
            elif nf := _NOT_FOUND.search(message):
                recognized = True
                out["tests"][nf.group(1)] = _new_test("Not Found")
                out["errors"].append(line)
            else:
                if test is not None:
                    test["status"] = "Error"
                out["errors"].append(line)
            test = None
        elif (test is not None and _DESCRIPTION.search(line)) or _MATRIX_DESCRIPTION.search(line):
            if test is None:  # the "Running <test>." line was cut off: the SUM line names it
                test, name = _new_test("Incomplete"), None
                unnamed.append((no, test))
            matrix = {"description": line, "columns": None, "rows": [], "key": None, "sum": None}
            matrix["cut"] = False
            test["matrices"].append(matrix)
        elif m := _SUM.match(line):
            _add_sum(test, m, no, raw)
            owner = _KEY_SUFFIX.sub("", m.group(1))
            if test is not None and test["matrices"] and owner != name:
                # A matrix whose "Running" line was cut off (after another test's, or at the
                # top of a paste): it belongs to the test its SUM line names.
                if name is not None:
                    test = _new_test("Incomplete")
                    test["matrices"].append(out["tests"][name]["matrices"].pop())
                unnamed = [(n, t) for n, t in unnamed if t is not test]
                name = owner
                out["tests"].setdefault(owner, test)
                if out["tests"][owner] is not test:  # a second matrix of a test already named
                    out["tests"][owner]["matrices"] += test["matrices"]
                    test = out["tests"][owner]
                recognized = True
                out["warnings"].append(
                    f"line {no}: no 'Running {owner}.' line before this matrix (output cut?); "
                    "its SUM line names the test"
                )
        elif _ERRORS.search(line):
            out["errors"].append(line)
            if test is not None:  # an assert or CUDA error aborts the running test
                test["status"] = "Error"
        elif _QUIET.match(line) or is_prompt_line(line):
            continue
        elif (failure := failure_kind(line)) == "error":
            out["errors"].append(line)
        elif failure == "warning":
            out["warnings"].append(f"line {no}: {line}")
        else:
            out["warnings"].append(f"line {no}: ignored {line[:120]!r}")

    if not recognized:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL, no, "nvbandwidth output ('nvbandwidth Version:' or 'Running <test>.')", found
        )
    if short_row is not None:
        out["warnings"].append(f"line {short_row[0]}: matrix row cut short (output truncated?)")
    for no, lost in unnamed:
        out["warnings"].append(
            f"line {no}: a matrix ({lost['matrices'][0]['description']!r}) with neither a "
            "'Running <test>.' line nor a SUM line: its test is unknown, left out"
        )
    for test_name, entry in out["tests"].items():
        _finish_test(test_name, entry)
    return _finish(out)


def _add_row(matrix: dict, no: int, raw: str) -> tuple[int, str] | None:
    """Store one matrix row (label + cells); return ``(no, raw)`` if it is short."""
    tokens = raw.split()
    width = len(matrix["columns"])
    expected = f"a row label and {width} numbers or N/A under {matrix['description']!r}"
    cells = tokens[1:]
    if len(cells) > width or not cells:
        raise ParseError(TOOL, no, expected, raw)
    try:
        values = [parse_number(c) for c in cells]
    except ValueError:
        raise ParseError(TOOL, no, expected, raw) from None
    matrix["rows"].append(values + [None] * (width - len(values)))
    matrix["cut"] = len(values) < width
    return (no, raw) if matrix["cut"] else None


def _add_sum(test: dict | None, m: re.Match, no: int, raw: str) -> None:
    try:
        value = parse_number(m.group(2))
    except ValueError:
        raise ParseError(TOOL, no, "'SUM <test> <number>'", raw) from None
    if test is None or not test["matrices"]:
        return
    matrix = test["matrices"][-1]
    matrix["key"], matrix["sum"] = m.group(1), value


def _finish_test(name: str, test: dict) -> None:
    """Pick the test's main matrix and turn the working dicts into the output shape."""
    cut = any(m.get("cut") for m in test["matrices"])
    matrices = [
        {
            "key": m["key"],
            "description": m["description"],
            "unit": _unit(m["description"]),
            "sum": m["sum"],
            "matrix": m["rows"],
        }
        for m in test["matrices"]
    ]
    test["matrices"] = matrices
    if not matrices:
        return
    main = next((m for m in matrices if m["key"] == name), matrices[-1])
    test.update(
        matrix=main["matrix"], sum=main["sum"], unit=main["unit"], description=main["description"]
    )
    if test["status"] == "Incomplete" and main["matrix"] and not cut:
        test["status"] = "Passed"


def _unit(description: str | None) -> str:
    m = _UNIT.search(description or "")
    return m.group(1) if m else "GB/s"


def _finish(out: dict) -> dict:
    statuses = [t["status"] for t in out["tests"].values()]
    out["ok"] = bool(statuses) and all(s in _OK_STATUSES for s in statuses) and not out["errors"]
    return out


# --- JSON (-j) -------------------------------------------------------------------------------


def _parse_json(text: str, start_line: int) -> dict:
    lines = text.split("\n")
    body = "\n".join(lines[start_line - 1 :])
    try:
        doc, _end = json.JSONDecoder().raw_decode(body.lstrip())
    except json.JSONDecodeError as exc:
        bad = lines[start_line - 1 + exc.lineno - 1] if exc.lineno <= len(lines) else ""
        raise ParseError(
            TOOL, start_line + exc.lineno - 1, f"valid JSON from 'nvbandwidth -j' ({exc.msg})", bad
        ) from None
    root = doc.get("nvbandwidth") if isinstance(doc, dict) else None
    if not isinstance(root, dict):
        raise ParseError(
            TOOL, start_line, "a JSON object with an 'nvbandwidth' key", lines[start_line - 1]
        )

    out = _empty("json")
    out["version"] = root.get("version")
    out["git_version"] = root.get("git_version")
    out["driver_version"] = root.get("Driver Version")
    out["cuda_runtime_version"] = root.get("CUDA Runtime Version")
    if root.get("Hostname"):
        out["hostname"] = root["Hostname"]
    for entry in root.get("GPU Device list") or []:
        if m := _JSON_DEVICE.match(str(entry)):
            device = {"index": int(m.group(1)), "name": m.group(2), "bus_id": m.group(3)}
            if m.group(4):
                device["host"] = m.group(4)
            out["devices"].append(device)
    if root.get("error"):
        out["errors"].append(str(root["error"]))
    if root.get("warning"):
        out["warnings"].append(str(root["warning"]))

    for case in root.get("testcases") or []:
        name = case.get("name")
        test = _new_test(case.get("status") or "Incomplete")
        if case.get("error"):
            out["errors"].append(f"{name}: {case['error']}")
        if "bandwidth_matrix" in case:
            description = (case.get("bandwidth_description") or "").strip() or None
            rows = [[_json_cell(c, name) for c in row] for row in case["bandwidth_matrix"]]
            test["matrices"].append(
                {"description": description, "rows": rows, "key": name, "sum": case.get("sum")}
            )
        out["tests"][name] = test
        _finish_test(name, test)
    return _finish(out)


def _json_cell(cell: object, name: str) -> float | None:
    if isinstance(cell, int | float):
        return float(cell)
    try:
        return parse_number(str(cell).strip())
    except ValueError:
        return None
