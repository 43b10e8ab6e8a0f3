"""Parse the console output of NVIDIA nccl-tests (``all_reduce_perf``, ``all_gather_perf``, ...).

>>> out = parse('''# nThread 1 nGpus 2 minBytes 8 maxBytes 8 step: 2(factor)
... #  size count type redop root time algbw busbw #wrong time algbw busbw #wrong
...       8     2 float  sum   -1 12.25  0.00  0.00      0 12.00  0.00  0.00      0
... # Out of bounds values : 0 OK
... # Avg bus bandwidth    : 2.05774''')
>>> out["ok"], out["rows"][0]["ip"]["time_us"], out["avg_busbw"]
(True, 12.0, 2.05774)

Keys: ``ok`` (a table was read, no failure line, no ``# error:``, OOB not FAILED, no non-zero
``#wrong``), ``collective``, ``version`` (nccl-tests version or None), ``params`` (the
``# nThread`` line: nthread, ngpus, min_bytes, max_bytes, step, step_kind "factor"/"bytes",
warmup_iters, iters, ...; nccl_headers/nccl_library codes), ``ranks`` [{rank, group, pid, host,
device, bus_id, name}] (group and pid None in the old ``#   Rank  0 on host device  0 [0x00]
NAME`` form), ``rows`` [{size, count, type, redop, root, oop, ip}] where oop/ip are {time_us,
algbw, busbw, wrong} (None for ``N/A``; extra per-iteration columns keep their names),
``avg_busbw``, ``avg_busbw_ok`` (the NCCL_TESTS_MIN_BW check, when printed), ``oob`` {count,
ok}, ``errors`` and ``warnings`` (NCCL WARN lines, nccl-tests' notes, unknown lines, guesses).

``errors`` holds every failure line as printed: nccl-tests' own (``Test NCCL failure``, the old
``NCCL failure``/``Cuda failure``, `` .. host pid N: Test failure``), the cause it prints before
them when it refuses to run (``Invalid number of GPUs: 2 requested but only 1 were found.``),
and any other line that reports a failure (see :func:`gpubox.parsers.common.failure_kind`): a
failure line is never filed as ignored. Header and footer lines are read with or without their
leading ``#`` (pastes lose it; nccl-tests < 2.0 printed none). :func:`classify` is the one place
that tells lines apart.

Columns are taken from the ``#  size  count  type ...`` header by name, so old tables (no
``redop``/``root``, ``error`` instead of ``#wrong``, ``bytes N type op ... res``) and new ones
(``cputime``, per-iteration ``i_*`` columns, a trailing timestamp) all parse. A table without
its header (pasted tail) is read by shape: the last 8 cells are the two timing groups.

``collective`` is, in order of trust: the name nccl-tests printed (``# Collective test
starting/concluded: all_reduce_perf``), the ``*_perf`` binary on a command line in the paste,
and only then a guess (which adds a warning):

* old tables (nccl-tests < 2.13 printed only the meaningful columns): no redop and no root
  column is ``all_gather``; root without redop is ``broadcast``; a redop column over blank
  cells and no root is ``alltoall``;
* otherwise from the values: a reduction op with root >= 0 is ``reduce``; a reduction op with
  root -1 (or no root column) is ``all_reduce`` when busbw >= algbw on the row with the largest
  algbw and ``reduce_scatter`` when 0 < busbw < algbw there; ``none`` with root >= 0 and
  busbw == algbw is ``broadcast``.

Anything else (all_gather vs alltoall in new tables, one rank where busbw is 0) is ``None``.
"""

from __future__ import annotations

import re

from gpubox.parsers.common import (
    ParseError,
    clean_lines,
    failure_kind,
    is_number,
    is_prompt_line,
    parse_number,
)

TOOL = "nccl-tests"

# Every pattern below matches a line with its leading '#' removed: pastes from forums and
# issue trackers often lose it (Markdown makes '# text' a heading), and nccl-tests < 2.0
# printed its header lines without one.
_VERSION = re.compile(
    r"^nccl-tests version\s+(\S+)(?:\s+nccl-headers=(\d+))?(?:\s+nccl-library=(\d+))?"
)
_COLLECTIVE = re.compile(r"^Collective test (?:starting|concluded):\s*(\S+)")
_NTHREAD = re.compile(
    r"^nThread\s+(\d+)\s+nGpus\s+(\d+)\s+minBytes\s+(\d+)\s+maxBytes\s+(\d+)"
    r"\s+step:\s*(\d+)\((\w+)\)(.*)$"
)
_KEY_VALUE = re.compile(r"([A-Za-z][A-Za-z ]*?):\s*(-?\d+)")
# "Rank  0 Group  0 Pid 5068 on GENOA-06 device  0 [0x21] NAME"; before 2.0 without Group and
# Pid: "Rank  0 on node03 device  0 [0x00] Tesla P100-PCIE-16GB".
_RANK = re.compile(
    r"^Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?(?:Pid\s+(\d+)\s+)?on\s+(\S+)\s+device\s+(\d+)"
    r"\s+\[([^\]]*)\]\s*(.*)$"
)
_HEADER = re.compile(r"^(?:size|bytes)\s+(?:count|N)\s+type\b")
_OOB = re.compile(r"^Out of bounds values\s*:\s*(\d+)\s*(OK|FAILED)?")
_AVG = re.compile(r"^Avg bus bandwidth\s*:\s*(\S+)\s*(OK|FAILED)?")
_ERROR_LINE = re.compile(r"^error:")  # "# error: ..." (nccl-tests' own error report)
_ROW = re.compile(r"^\s*\d+\s+\d+\s+\S")
# The failure lines of nccl-tests' CUDACHECK/NCCLCHECK/TESTCHECK macros, new and old:
# "host: Test NCCL failure common.cu:392 '...'", "NCCL failure all_reduce.cu:95 '...'" and
# "Cuda failure common.cu:30 '...'" (before 2.13), " .. host pid 5068: Test failure
# common.cu:590" (" .. host: Test failure ..." before the pid was added), "host: Test timeout".
_FAILURE = re.compile(
    r"\b(?:NCCL|CUDA|Cuda) failure \S+:\d+|^\.\.\s+\S+(?:\s+pid\s+\d+)?:\s+Test failure"
    r"|: Test timeout \("
)
# What nccl-tests prints (on stderr) when it refuses to run: the cause of the failure lines.
_CAUSE = re.compile(
    r"^(?:Invalid number of GPUs: |Please check the number of processes and GPUs"
    r"|invalid sizes? (?:specified )?for |Incompatible NCCL versions"
    r"|Device implementation \d+ is not supported|Option -\w \([^)]*\) requires"
    r"|device_cta_count \(-V\) must|device implementation \(-D > 0\) requires"
    r"|invalid option|USAGE: )"
)
# nccl-tests' own notes about an option it did not take (the run goes on).
_NOTE = re.compile(r"defaulting to |Defaulting to |Ignoring\s*$|Disabling\.\s*$")
_NCCL_LOG = re.compile(r"\bNCCL (INFO|WARN|TRACE|ABORT)\b")
_PERF_BINARY = re.compile(r"\b([a-z][a-z0-9_]*?)_perf(?:_mpi)?\b")
# Lines that carry nothing we keep but are normal nccl-tests output.
_QUIET = re.compile(
    r"^(?:$|Using devices|\(B\)|out-of-place|Blocking Enabled|Per-Iteration Report"
    r"|Parallel Init|GPU memory usage|Reducing maxBytes|\[-\w,--\w+)"
)
# The header and footer lines, in the order they are tried; "Using devices" is the one
# quiet line only nccl-tests prints.
_SHAPES = (
    ("header", _HEADER),
    ("rank", _RANK),
    ("nthread", _NTHREAD),
    ("version", _VERSION),
    ("collective", _COLLECTIVE),
    ("oob", _OOB),
    ("avg", _AVG),
    ("error-report", _ERROR_LINE),
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}$")
_INT = re.compile(r"^-?\d+$")

# Header names -> our keys. Leading (per-row) columns, then the per-group timing columns.
_LEAD_NAMES = {"size": "size", "bytes": "size", "count": "count", "N": "count", "type": "type"}
_LEAD_NAMES |= {"redop": "redop", "op": "redop", "root": "root"}
_TIME_NAMES = ("time", "cputime")
_GROUP_NAMES = {"time": "time_us", "cputime": "time_us", "algbw": "algbw", "busbw": "busbw"}
_GROUP_NAMES |= {"#wrong": "wrong", "error": "wrong", "res": "wrong", "wrong": "wrong"}
_DEFAULT_GROUP = ["time_us", "algbw", "busbw", "wrong"]
_MAX_IGNORED_WARNINGS = 20


class _Table:
    """Column layout of one results table, from its header line (or guessed per row)."""

    def __init__(self, header_tokens: list[str] | None) -> None:
        self.from_header = header_tokens is not None
        self.timestamp = False
        if header_tokens is None:
            self.lead: list[str] | None = None
            self.oop, self.ip = list(_DEFAULT_GROUP), list(_DEFAULT_GROUP)
            return
        tokens = list(header_tokens)
        if tokens and tokens[-1] == "timestamp":
            self.timestamp = True
            tokens.pop()
        starts = [i for i, t in enumerate(tokens) if t in _TIME_NAMES]
        first = starts[0] if starts else len(tokens)
        second = starts[1] if len(starts) > 1 else len(tokens)
        self.lead = [_LEAD_NAMES.get(t, t) for t in tokens[:first]]
        self.oop = [_group_key(t) for t in tokens[first:second]]
        self.ip = [_group_key(t) for t in tokens[second:]]

    def columns(self) -> str:
        lead = self.lead or ["size", "count", "type", "[redop]", "[root]"]
        return " ".join(lead + self.oop + self.ip + (["timestamp"] if self.timestamp else []))


def _group_key(name: str) -> str:
    return _GROUP_NAMES.get(name, name.replace("%", "_pct"))


def parse(text: str) -> dict:
    """Parse nccl-tests output; see the module docstring for the keys and the rules."""
    out: dict = {
        "ok": False,
        "collective": None,
        "version": None,
        "params": {},
        "ranks": [],
        "rows": [],
        "avg_busbw": None,
        "avg_busbw_ok": None,
        "oob": {"count": None, "ok": None},
        "errors": [],
        "warnings": [],
    }
    table: _Table | None = None
    named: str | None = None  # collective printed by nccl-tests itself
    from_command: str | None = None  # collective from a *_perf command line
    seen_output = False  # any line that only nccl-tests prints
    first_text: tuple[int, str] | None = None
    ignored = 0

    for no, line in clean_lines(text):
        stripped = line.strip()
        if not stripped:
            continue
        if first_text is None:
            first_text = (no, line)
        kind, m = classify(line)
        if kind == "nccl-log":
            if "NCCL WARN" in line or "NCCL ABORT" in line:
                out["warnings"].append(f"line {no}: {stripped}")
        elif kind in ("failure", "cause", "error-report"):
            out["errors"].append(stripped)
            seen_output = True
        elif kind == "note":
            out["warnings"].append(f"line {no}: {stripped}")
            seen_output = True
        elif kind == "command":
            from_command = from_command or _perf_name(stripped)
        elif kind == "header":
            table = _Table(_uncommented(stripped).split())
            seen_output = True
        elif kind == "rank":
            out["ranks"].append(_rank(m))
            seen_output = True
        elif kind == "nthread":
            out["params"].update(_params(m))
            seen_output = True
        elif kind == "version":
            out["version"] = m.group(1)
            if m.group(2):
                out["params"]["nccl_headers"] = int(m.group(2))
            if m.group(3):
                out["params"]["nccl_library"] = int(m.group(3))
            seen_output = True
        elif kind == "collective":
            named = named or _collective_name(m.group(1))
            seen_output = True
        elif kind == "oob":
            count = int(m.group(1))
            out["oob"] = {"count": count, "ok": count == 0 and m.group(2) != "FAILED"}
            seen_output = True
        elif kind == "avg":
            out["avg_busbw"] = _avg(m.group(1), no, line)
            if m.group(2):
                out["avg_busbw_ok"] = m.group(2) == "OK"
                if m.group(2) == "FAILED":
                    out["errors"].append(stripped)
            seen_output = True
        elif kind == "quiet":
            seen_output = seen_output or "Using devices" in stripped
        elif kind == "row":
            if table is None:
                table = _Table(None)
                out["warnings"].append(
                    f"line {no}: results table without its column header; columns inferred"
                )
            out["rows"].append(_row(table, no, line))
            seen_output = True
        elif kind == "comment":
            out["warnings"].append(f"line {no}: {stripped}")
        elif kind == "error":
            out["errors"].append(stripped)  # not nccl-tests' words, but a failure all the same
        elif kind == "warning":
            out["warnings"].append(f"line {no}: {stripped}")
        else:
            ignored += 1
            if ignored <= _MAX_IGNORED_WARNINGS:
                out["warnings"].append(f"line {no}: ignored {stripped[:120]!r}")

    if not seen_output:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL, no, "nccl-tests output (a '# nThread' header, a results table or a footer)", found
        )
    if ignored > _MAX_IGNORED_WARNINGS:
        out["warnings"].append(f"{ignored - _MAX_IGNORED_WARNINGS} more unrecognized lines")
    if out["rows"] and out["avg_busbw"] is None:
        out["warnings"].append("no 'Avg bus bandwidth' footer (output truncated?)")

    out["collective"] = named or from_command
    if out["collective"] is None and out["rows"]:
        out["collective"] = _guess_collective(out["rows"], table.lead if table else None)
        if out["collective"]:
            out["warnings"].append(f"collective {out['collective']!r} inferred from row values")

    wrong = any(row[g].get("wrong") for row in out["rows"] for g in ("oop", "ip"))
    oob_failed = out["oob"]["ok"] is False
    out["ok"] = bool(out["rows"]) and not out["errors"] and not wrong and not oob_failed
    return out


def _uncommented(stripped: str) -> str:
    return stripped[1:].lstrip() if stripped.startswith("#") else stripped


def classify(line: str) -> tuple[str, re.Match | None]:
    """What one cleaned output line is, as ``(kind, match)``: the one place lines are told apart.

    Kinds: ``nccl-log`` (NCCL INFO/WARN lines), ``failure`` (nccl-tests' failure lines),
    ``cause`` (what nccl-tests prints when it refuses to run), ``note`` (an option it did not
    take), ``command`` (a shell prompt or a ``*_perf`` command line), the header and footer
    shapes of :data:`_SHAPES` (``header``, ``rank``, ``nthread``, ``version``, ``collective``,
    ``oob``, ``avg``, ``error-report``), ``quiet``, ``row`` (a results row), ``comment`` (another
    ``#`` line); for any other line, ``error`` or ``warning`` when it reports a failure (see
    :func:`gpubox.parsers.common.failure_kind`), else ``other``. Header and footer lines are
    read with or without their leading ``#``.

    >>> classify("Avg bus bandwidth    : 128.942")[0], classify("# Avg bus bandwidth : 1")[0]
    ('avg', 'avg')
    >>> classify("Invalid number of GPUs: 2 requested but only 1 were found.")[0]
    'cause'
    """
    stripped = line.strip()
    if _NCCL_LOG.search(stripped):
        return "nccl-log", None
    if _FAILURE.search(stripped):
        return "failure", None
    commented = stripped.startswith("#")
    if is_prompt_line(stripped):
        return "command", None
    body = _uncommented(stripped)
    for kind, pattern in _SHAPES:
        if m := pattern.match(body):
            return kind, m
    if _QUIET.match(body):
        return "quiet", None
    if commented:
        return "comment", None
    if _ROW.match(line):
        return "row", None
    if _NOTE.search(body):
        return "note", None
    if _CAUSE.match(body):
        return "cause", None
    failure = failure_kind(stripped)  # "error" or "warning": a line nccl-tests did not print
    if failure is None and _PERF_BINARY.search(stripped):
        return "command", None
    return failure or "other", None


def _perf_name(text: str) -> str | None:
    m = _PERF_BINARY.search(text)
    return m.group(1) if m else None


def _collective_name(program: str) -> str:
    # "all_reduce_perf" / "all_reduce_perf_mpi" -> "all_reduce"
    return _perf_name(program) or program


def _params(m: re.Match) -> dict:
    params = {
        "nthread": int(m.group(1)),
        "ngpus": int(m.group(2)),
        "min_bytes": int(m.group(3)),
        "max_bytes": int(m.group(4)),
        "step": int(m.group(5)),
        "step_kind": m.group(6),  # "factor" (multiply) or "bytes" (add)
    }
    for key, value in _KEY_VALUE.findall(m.group(7)):
        params[key.strip().lower().replace(" ", "_")] = int(value)
    return params


def _rank(m: re.Match) -> dict:
    return {
        "rank": int(m.group(1)),
        "group": int(m.group(2)) if m.group(2) is not None else None,
        "pid": int(m.group(3)) if m.group(3) is not None else None,
        "host": m.group(4),
        "device": int(m.group(5)),
        "bus_id": m.group(6),
        "name": m.group(7).strip(),
    }


def _avg(token: str, no: int, line: str) -> float:
    try:
        value = parse_number(token)
    except ValueError:
        value = None
    if value is None:
        raise ParseError(TOOL, no, "a number after 'Avg bus bandwidth :'", line)
    return value


def _row(table: _Table, no: int, line: str) -> dict:
    tokens = line.split()
    timestamp = None
    if table.timestamp and len(tokens) >= 2 and _DATE.match(tokens[-2]) and _TIME.match(tokens[-1]):
        timestamp = f"{tokens[-2]} {tokens[-1]}"
        tokens = tokens[:-2]
    n_body = len(table.oop) + len(table.ip)
    expected = f"a results row with columns: {table.columns()}"
    lead_tokens, body = tokens[:-n_body], tokens[-n_body:]
    lead = _lead_columns(table, lead_tokens) if len(tokens) > n_body else None
    if lead is None:
        raise ParseError(TOOL, no, expected, line)

    values = dict(zip(lead, lead_tokens, strict=True))
    try:
        size, count = int(values["size"]), int(values["count"])
        root = int(values["root"]) if "root" in values else None
    except ValueError:
        raise ParseError(TOOL, no, expected, line) from None
    if is_number(values["type"]) or is_number(values.get("redop", "x")):
        raise ParseError(TOOL, no, expected, line)
    row = {
        "size": size,
        "count": count,
        "type": values["type"],
        "redop": values.get("redop"),
        "root": root,
        "oop": _group(table.oop, body[: len(table.oop)], no, line, expected),
        "ip": _group(table.ip, body[len(table.oop) :], no, line, expected),
    }
    if timestamp:
        row["timestamp"] = timestamp
    return row


def _lead_columns(table: _Table, tokens: list[str]) -> list[str] | None:
    """Names of the leading cells of one row, allowing the blank redop of old alltoall tables."""
    base = ["size", "count", "type"]
    if table.lead is not None:
        if len(tokens) == len(table.lead):
            return table.lead
        # Old tables print an empty redop cell under a 'redop' header: one token fewer.
        if "redop" in table.lead and len(tokens) == len(table.lead) - 1:
            names = [c for c in table.lead if c != "redop"]
            if "root" not in names or _INT.match(tokens[names.index("root")]):
                return names
        return None
    extra = len(tokens) - 3
    if extra == 0:
        return base
    if extra == 1:
        return base + (["root"] if _INT.match(tokens[3]) else ["redop"])
    if extra == 2:
        return base + ["redop", "root"]
    return None


def _group(names: list[str], cells: list[str], no: int, line: str, expected: str) -> dict:
    group: dict = {}
    for name, cell in zip(names, cells, strict=True):
        try:
            value = parse_number(cell)
        except ValueError:
            raise ParseError(TOOL, no, expected, line) from None
        if name == "wrong":
            group[name] = int(value) if value is not None else None
        else:
            group[name] = value
    return group


def _guess_collective(rows: list[dict], lead: list[str] | None) -> str | None:
    """Best guess of the collective from the column set and row values (see module docstring)."""
    redops = {r["redop"] for r in rows}
    roots = {r["root"] for r in rows}
    if lead is not None and "redop" not in lead:
        # nccl-tests before 2.13 printed only the columns that mean something per collective.
        if "root" not in lead:
            return "all_gather"
        return "broadcast"
    if lead is not None and "root" not in lead and redops == {None}:
        return "alltoall"  # old alltoall: a 'redop' header over blank cells
    if len(redops) != 1 or len(roots) != 1:
        return None
    redop, root = redops.pop(), roots.pop()
    if redop is None:
        return None
    best = max(rows, key=lambda r: r["oop"].get("algbw") or 0.0)
    algbw, busbw = best["oop"].get("algbw") or 0.0, best["oop"].get("busbw") or 0.0
    if redop != "none":
        if root is not None and root >= 0:
            return "reduce"
        if algbw > 0 and busbw >= algbw:
            return "all_reduce"
        if algbw > 0 and 0 < busbw < algbw:
            return "reduce_scatter"
        return None
    if root is not None and root >= 0 and algbw > 0 and busbw == algbw:
        return "broadcast"
    return None
