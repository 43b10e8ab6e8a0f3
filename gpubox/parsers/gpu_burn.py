"""Parse the console output of gpu-burn (wilicc/gpu-burn, ``gpu_burn`` / Debian's ``gpu-burn``).

>>> out = parse('''Burning for 10 seconds.
... GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-b876c63f)
... Initialized device 0 with 81251 MB of memory (80493 MB available, using 72443 MB of it), using FLOATS
... 100.0%  proc'd: 4522 (17177 Gflop/s)   errors: 0   temps: 59 C
... Killing processes with SIGTERM (soft kill)
... done
...
... Tested 1 GPUs:
... \\tGPU 0: OK''')
>>> out["ok"], out["gpus"][0]["gflops"], out["gpus"][0]["verdict"], out["precision"]
(True, 17177.0, 'OK', 'single')

Keys: ``ok`` (every GPU has a verdict of OK, did real work, never DIED nor counted an error, and
no failure line was printed), ``run_seconds`` (``Burning for N seconds``), ``compare_file``,
``precision`` (``single``/``double`` from ``Initialized device`` lines), ``tensor_cores``,
``devices`` [{index, name, uuid}] (the ``nvidia-smi -L`` lines gpu-burn prints: every GPU of
the machine, also those it does not burn), ``initialized`` [{index, memory_mb, available_mb,
used_mb, precision, tensor_cores}], ``progress`` (every progress update, ``\\r`` repaints
included: {line, percent, gpus [{processed, gflops, errors, note, temp_c}]}), ``summaries``
(the ``Summary at:`` dates as printed), ``gpus`` [{index, gflops, processed, errors, died,
warning, temp_c, max_temp_c, verdict}], ``tested`` (``Tested N GPUs``), ``errors`` (failure
lines as printed, FAULTY verdicts included) and ``warnings`` (findings such as a missing
verdict or no work done, and ignored lines).

Per GPU, in gpu-burn's own numbering (0..N-1 over the GPUs it burns; with
``CUDA_VISIBLE_DEVICES`` that is the position in that list): ``gflops`` is the last rate printed
(gpu-burn prints the rate of the interval since the GPU's previous report), ``processed`` the
last ``proc'd`` count (matrix multiplications done), ``errors`` the faulty elements counted over
the run (gpu-burn resets its counters at every ``Summary at:`` line, so this is the sum of the
last count printed in each interval; gpu-burn keeps it in a C ``int``, so a huge count can print
negative, e.g. ``-524288000  (WARNING!)``: kept as printed, with ``warning`` true), ``died``
(``proc'd: -1 ... (DIED!)``: the worker failed; its error count is garbage, so ``errors`` is
None) and ``verdict`` (``OK``/``FAULTY`` from the ``Tested N GPUs`` list, None when it is
missing: a run that was cut short or a paste that ends early).

gpu-burn does not judge work done: a worker that never reports still gets ``OK`` (the issue-123
sample shows eight GPUs at ``0 (0 Gflop/s)`` and eight OKs), so ``ok`` also needs a positive
``processed`` count for every GPU. Children's buffered output glued to ``Killing processes..``
and stderr text glued to a progress line (``... 31 C read[0] error 0``) are split off and read.
"""

from __future__ import annotations

import re

from gpubox.parsers.common import ParseError, clean_line, is_prompt_line

TOOL = "gpu-burn"

_PROGRESS = re.compile(r"^(\d+(?:\.\d+)?)%\s+proc'd:\s*(.*?)\s+errors:\s*(.*?)\s+temps:\s*(.*)$")
_PROGRESS_START = re.compile(r"^\d+(?:\.\d+)?%\s+proc'd:")
_PROC = re.compile(r"(-?\d+) \((-?\d+(?:\.\d+)?) Gflop/s\)")
_ERR = re.compile(r"(-?\d+)\s*(?:\((DIED|WARNING)!\))?")
_TEMP = re.compile(r"(\d+) C|--")
_TEMP_TAIL = re.compile(r"^((?:(?:\d+ C|--)\s*(?:-\s+)?)+)(.*)$")
_DEVICE = re.compile(r"^GPU (\d+): (.+?) \(UUID: ([^)]*)\)$")
_BURNING = re.compile(r"^Burning for (\d+) (?:seconds\.|secs)$")
_NO_LENGTH = re.compile(r"^Run length not specified in the command line\.\s*")
_COMPARE = re.compile(r"^Using compare file: (.+)$")
_INITIALIZED = re.compile(
    r"^Initialized device (\d+) with (\d+) MB of memory \((\d+) MB available, using (\d+) MB "
    r"of it\), using (DOUBLES|FLOATS)(, using Tensor Cores)?$"
)
_RESULTS = re.compile(r"^Results are \d+ bytes each, thus performing \d+ iterations$")
_SUMMARY = re.compile(r"^Summary at:\s*(.*)$")
_TESTED = re.compile(r"^Tested (\d+) GPUs:$")
_VERDICT = re.compile(r"^GPU (\d+): (OK|FAULTY)$")
_KILLING = re.compile(
    r"^Killing processes(?:\.\. ?| with SIG(?:TERM|KILL) \((?:soft|force) kill\)$)"
)
_QUIET = re.compile(r"^(?:done|Uninitted cublas|Freed memory for dev \d+)$")
# Failure lines only gpu-burn prints (evidence that this is its output), then generic ones.
_FAILURE_OWN = re.compile(
    r"^(?:Couldn't init|No CUDA devices|No CUDA capable GPUs|Failure during compute|"
    r"No clients are alive|read\[\d+\] error|Low mem for result|Syntax error near)"
)
_FAILURE = re.compile(r"^(?:terminate called|Segmentation fault|Aborted|Error\b|CUDA error)")
_READ_ERROR = re.compile(r"read\[\d+\] error -?\d+")
_WARN_LINES = re.compile(r"^Could not invoke (?:nvidia-smi|tegrastats), no temps available$")


def parse(text: str) -> dict:
    """Parse gpu-burn output; see the module docstring for the keys."""
    out: dict = {
        "ok": False,
        "run_seconds": None,
        "compare_file": None,
        "precision": None,
        "tensor_cores": None,
        "devices": [],
        "initialized": [],
        "progress": [],
        "summaries": [],
        "gpus": [],
        "tested": None,
        "errors": [],
        "warnings": [],
    }
    verdicts: dict[int, str] = {}
    recognized = False
    first_text: tuple[int, str] | None = None
    segments = list(_segments(text))
    last_no = max((no for no, s in segments if s.strip()), default=0)

    for no, raw in segments:
        line = raw.strip()
        if not line:
            continue
        if first_text is None:
            first_text = (no, raw)
        # Children's stdout, flushed at the end, lands after "Killing processes.. ".
        if m := _KILLING.match(line):
            recognized = True
            line = line[m.end() :].strip()
            if not line:
                continue
        if m := _NO_LENGTH.match(line):
            recognized = True
            line = line[m.end() :].strip()
            if not line:
                continue
        if m := _PROGRESS.match(line):
            recognized = True
            report = _progress(m, no, raw, partial=no == last_no, out=out)
            if report is not None:
                out["progress"].append(report)
        elif _PROGRESS_START.match(line):
            recognized = True
            _cut_short(no, raw, partial=no == last_no, out=out)
        elif m := _BURNING.match(line):
            recognized = True
            out["run_seconds"] = int(m.group(1))
        elif m := _COMPARE.match(line):
            recognized = True
            out["compare_file"] = m.group(1)
        elif m := _INITIALIZED.match(line):
            recognized = True
            precision = "double" if m.group(5) == "DOUBLES" else "single"
            out["initialized"].append(
                {
                    "index": int(m.group(1)),
                    "memory_mb": int(m.group(2)),
                    "available_mb": int(m.group(3)),
                    "used_mb": int(m.group(4)),
                    "precision": precision,
                    "tensor_cores": bool(m.group(6)),
                }
            )
            out["precision"] = precision
            out["tensor_cores"] = bool(m.group(6))
        elif _RESULTS.match(line) or _QUIET.match(line):
            recognized = True
        elif m := _SUMMARY.match(line):
            recognized = True
            out["summaries"].append(m.group(1))
            if out["progress"]:
                out["progress"][-1]["summary"] = True
        elif m := _TESTED.match(line):
            recognized = True
            out["tested"] = int(m.group(1))
        elif m := _VERDICT.match(line):
            recognized = True
            verdicts[int(m.group(1))] = m.group(2)
            if m.group(2) == "FAULTY":
                out["errors"].append(line)
        elif m := _DEVICE.match(line):
            out["devices"].append(
                {"index": int(m.group(1)), "name": m.group(2), "uuid": m.group(3)}
            )
        elif _FAILURE_OWN.match(line):
            recognized = True
            out["errors"].append(line)
        elif _FAILURE.match(line):
            out["errors"].append(line)
        elif _WARN_LINES.match(line):
            recognized = True
            out["warnings"].append(f"line {no}: {line}")
        elif not is_prompt_line(line):
            out["warnings"].append(f"line {no}: ignored {line[:120]!r}")

    if not recognized:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL,
            no,
            "gpu-burn output (a progress line, 'Burning for N seconds.', 'Initialized device', "
            "'Tested N GPUs:' or a gpu-burn error)",
            found,
        )
    out["gpus"] = _per_gpu(out, verdicts)
    out["ok"] = _judge(out)
    return out


def _segments(text: str):
    """``(line_no, segment)``: physical lines split at every ``\\r`` (each one a repaint)."""
    for no, physical in enumerate(text.split("\n"), start=1):
        for part in physical.split("\r"):
            yield no, clean_line(part)


def progress_line(text: str) -> dict | None:
    """One progress update (``P%  proc'd: ...``) as ``{percent, gpus}``; None if it is not one.

    For a wrapper that reads gpu-burn's output while it runs (one ``\\r`` repaint at a time).

    >>> progress_line("\\r55.0%  proc'd: 20 (14210 Gflop/s)   errors: 0   temps: 66 C ")["gpus"][0]
    {'processed': 20, 'gflops': 14210.0, 'errors': 0, 'note': None, 'temp_c': 66}
    """
    m = _PROGRESS.match(clean_line(text.rsplit("\r", 1)[-1]).strip())
    read = _read_progress(m) if m else None
    return {"percent": float(m.group(1)), "gpus": read[0]} if read and read[0] else None


def _read_progress(m: re.Match) -> tuple[list[dict] | None, str]:
    """The per-GPU entries of a progress line (None if its parts disagree) and glued text."""
    procs = _PROC.findall(m.group(2))
    errors = [(int(n), note) for n, note in _ERR.findall(m.group(3))]
    temps_text, tail = m.group(4), ""
    if t := _TEMP_TAIL.match(temps_text):
        temps_text, tail = t.group(1), t.group(2).strip()
    temps = [int(v) if v else None for v in _TEMP.findall(temps_text)]
    if not procs or not (len(procs) == len(errors) == len(temps)):
        return None, tail
    gpus = [
        {
            "processed": int(processed),
            "gflops": float(gflops),
            "errors": count,
            "note": note or None,
            "temp_c": temp,
        }
        for (processed, gflops), (count, note), temp in zip(procs, errors, temps, strict=True)
    ]
    return gpus, tail


def _progress(m: re.Match, no: int, raw: str, partial: bool, out: dict) -> dict | None:
    gpus, tail = _read_progress(m)
    if tail:
        # stderr text that had no newline of its own, e.g. "read[0] error 0"
        for found in _READ_ERROR.findall(tail) or [tail]:
            out["errors"].append(found)
    if gpus is None:
        return _cut_short(no, raw, partial, out)
    return {"line": no, "percent": float(m.group(1)), "gpus": gpus}


def _cut_short(no: int, raw: str, partial: bool, out: dict) -> None:
    """A damaged progress line: fine at the very end (the run or the paste stopped there)."""
    if partial:
        out["warnings"].append(f"line {no}: progress line cut short")
        return None
    raise ParseError(
        TOOL,
        no,
        "a progress line 'P%  proc'd: N (X Gflop/s) ...  errors: N ...  temps: T C ...' with "
        "one entry per GPU in each part",
        raw.strip(),
    )


def _per_gpu(out: dict, verdicts: dict[int, str]) -> list[dict]:
    n = max(
        [len(p["gpus"]) for p in out["progress"]]
        + [max(verdicts) + 1 if verdicts else 0]
        + [out["tested"] or 0]
    )
    gpus = []
    for i in range(n):
        reports = [p for p in out["progress"] if i < len(p["gpus"])]
        entry = {
            "index": i,
            "gflops": None,
            "processed": None,
            "errors": None,
            "died": False,
            "warning": False,
            "temp_c": None,
            "max_temp_c": None,
            "verdict": verdicts.get(i),
        }
        if reports:
            last = reports[-1]["gpus"][i]
            temps = [p["gpus"][i]["temp_c"] for p in reports if p["gpus"][i]["temp_c"] is not None]
            entry.update(
                gflops=last["gflops"],
                processed=last["processed"],
                temp_c=last["temp_c"],
                max_temp_c=max(temps) if temps else None,
                died=any(p["gpus"][i]["note"] == "DIED" for p in reports),
                warning=any(p["gpus"][i]["note"] == "WARNING" for p in reports),
            )
            if not entry["died"]:
                entry["errors"] = _total_errors(reports, i)
        gpus.append(entry)
    return gpus


def _total_errors(reports: list[dict], i: int) -> int:
    """Sum of the last count printed in each interval (a 'Summary at:' line ends one)."""
    total, current = 0, 0
    for report in reports:
        current = report["gpus"][i]["errors"]
        if report.get("summary"):
            total, current = total + current, 0
    return total + current


def _judge(out: dict) -> bool:
    warnings = out["warnings"]
    if not out["gpus"]:
        warnings.append("no progress line and no verdict: gpu-burn did not run")
        return False
    ok = not out["errors"]
    for gpu in out["gpus"]:
        who = f"GPU {gpu['index']}"
        if gpu["verdict"] is None:
            warnings.append(f"{who}: no verdict (the run was cut short or the output truncated)")
            ok = False
        elif gpu["verdict"] != "OK":
            ok = False
        if gpu["died"]:
            warnings.append(f"{who}: its worker DIED (proc'd -1): the burn failed on it")
            ok = False
        elif gpu["errors"]:
            warnings.append(f"{who}: error count {gpu['errors']}: gpu-burn found wrong results")
            ok = False
        if gpu["warning"] and not gpu["errors"] and not gpu["died"]:
            ok = False
        if not gpu["died"] and not gpu["processed"]:
            verdict = f" although its verdict is {gpu['verdict']}" if gpu["verdict"] else ""
            warnings.append(f"{who}: no work done (0 matrix multiplications){verdict}")
            ok = False
    return ok
