"""Parse the console output of gpu-fryer (huggingface/gpu-fryer), human or ``--json`` lines.

>>> out = parse('''GPU #0:   4444 Gflops/s (min: 4398.05, max: 5497.56, dev: 224.44)
...          Temperature: 35.58°C (min: 32.00, max: 38.00)
...          Throttling HW: false, Thermal SW: false, Thermal HW: false
... All GPUs seem healthy''')
>>> out["ok"], out["gpus"][0]["gflops"], out["gpus"][0]["verdict"], out["healthy"]
(True, 4444.0, 'OK', True)

Keys: ``ok`` (gpu-fryer said every GPU is healthy, every GPU in its report did real work, the
report's numbers are sane and no error line was printed), ``devices`` [{index, name, uuid}]
(``Detected GPU #N``), ``precisions`` (``Using precision(s): FP32 BF16 FP8``), ``memory_mb``
{gpu index: MB}, ``progress`` (the once-a-second lines: {line, gpus [{ops, gflops, temp_c,
throttling}]}), ``gpus`` [{index, gflops, gflops_min, gflops_max, gflops_dev, temp_c,
temp_min_c, temp_max_c, throttling {hw, thermal_sw, thermal_hw}, errors, verdict}],
``healthy`` (True for ``All GPUs seem healthy``, False for ``Some GPUs are not healthy``,
None when the verdict is missing), ``problems`` [{gpu, reason}], ``errors`` (failure lines as
printed) and ``warnings``.

Per GPU, ``gflops`` is the final report's average (``GPU #N:   4444 Gflops/s``), or the last
progress rate when the report is missing; ``errors`` is always None (gpu-fryer compares no
results, so it cannot count computation errors); ``verdict`` is ``OK`` when gpu-fryer called
every GPU healthy, ``FAULTY`` when it named this GPU among the problems, else None.

Old builds (before gpu-fryer PR #11) call a GPU that computed nothing healthy and print
``min: 18446744073.71`` (u64::MAX flops, the minimum of no samples): such a GPU gets a warning
and ``ok`` is false whatever the verdict line says. Builds before PR #21 printed the mean in
the ``dev:`` field; it is kept as printed.
"""

from __future__ import annotations

import json
import re

from gpubox.parsers.common import ParseError, clean_lines, is_prompt_line

TOOL = "gpu-fryer"

_NUM = r"(\d+(?:\.\d+)?)"
_DEG = r"\s*[^\d\s(),|-]{0,3}C"  # °C, or what a wrong code page made of the degree sign
_DETECTED = re.compile(r'^Detected GPU #(\d+): "?(.*?)"? \((GPU-[^)]*|[^)]*)\)$')
_PRECISION = re.compile(r"^Using precision\(s\):(.*)$")
_MEMORY = re.compile(r"^GPU #(\d+): Using (\d+) MB$")
_REPORT = re.compile(rf"^GPU #(\d+):\s+{_NUM} Gflops/s \(min: {_NUM}, max: {_NUM}, dev: {_NUM}\)$")
_TEMPERATURE = re.compile(rf"^Temperature: {_NUM}{_DEG} \(min: {_NUM}, max: {_NUM}\)$")
_THROTTLING = re.compile(
    r"^Throttling HW: (true|false), Thermal SW: (true|false), Thermal HW: (true|false)$"
)
_PROGRESS_GPU = re.compile(r"^(\d+) \((\d+) Gflops/s\)$")
_PROGRESS_TEMP = re.compile(rf"^(\d+){_DEG}$")
_THROTTLE_NAMES = ("None", "Thermal SW", "Thermal HW", "HW slowdown")
_HEALTHY = "All GPUs seem healthy"
_UNHEALTHY = "Some GPUs are not healthy. Reasons:"
_PROBLEM = re.compile(r"^- GPU (\d+)\s*(?:-\s*)?(.*)$")
_QUIET = ("Creating random matrices", "Matrices created", "Freeing GPUs...", "End of program")
_FAILURE = re.compile(
    r"^(?:Error: |No GPUs detected|Duration must be|TFLOPS tolerance must|thread '.*' panicked)"
)
_U64_MAX_GFLOPS = 18446744073.0  # u64::MAX flops / 1e9: the min of no samples (old builds)


def parse(text: str) -> dict:
    """Parse gpu-fryer output; see the module docstring for the keys."""
    out: dict = {
        "ok": False,
        "devices": [],
        "precisions": [],
        "memory_mb": {},
        "progress": [],
        "gpus": [],
        "healthy": None,
        "problems": [],
        "errors": [],
        "warnings": [],
    }
    reports: dict[int, dict] = {}
    current: dict | None = None  # the report whose Temperature/Throttling lines follow
    recognized = False
    first_text: tuple[int, str] | None = None

    for no, raw in clean_lines(text):
        line = raw.strip()
        if not line:
            continue
        if first_text is None:
            first_text = (no, raw)
        if line.startswith("{") and _json_line(line, out, reports):
            recognized = True
            continue
        if m := _REPORT.match(line):
            recognized = True
            index = int(m.group(1))
            current = reports[index] = _report_entry(index)
            current.update(
                gflops=float(m.group(2)),
                gflops_min=float(m.group(3)),
                gflops_max=float(m.group(4)),
                gflops_dev=float(m.group(5)),
            )
            continue
        if current is not None and (m := _TEMPERATURE.match(line)):
            current.update(
                temp_c=float(m.group(1)),
                temp_min_c=float(m.group(2)),
                temp_max_c=float(m.group(3)),
            )
            continue
        if current is not None and (m := _THROTTLING.match(line)):
            current["throttling"] = {
                "hw": m.group(1) == "true",
                "thermal_sw": m.group(2) == "true",
                "thermal_hw": m.group(3) == "true",
            }
            current = None
            continue
        current = None
        if " Gflops/s) " in line and "| Temperatures:" in line:
            out["progress"].append(_progress(line, no, raw))
            recognized = True
        elif m := _DETECTED.match(line):
            recognized = True
            out["devices"].append(
                {"index": int(m.group(1)), "name": m.group(2), "uuid": m.group(3)}
            )
        elif m := _PRECISION.match(line):
            recognized = True
            out["precisions"] = m.group(1).split()
        elif m := _MEMORY.match(line):
            recognized = True
            out["memory_mb"][int(m.group(1))] = int(m.group(2))
        elif line == _HEALTHY:
            recognized = True
            out["healthy"] = True
        elif line == _UNHEALTHY:
            recognized = True
            out["healthy"] = False
        elif out["healthy"] is False and (m := _PROBLEM.match(line)):
            out["problems"].append({"gpu": int(m.group(1)), "reason": m.group(2).strip()})
            out["errors"].append(line)
        elif line in _QUIET:
            recognized = recognized or line != "End of program"
        elif _FAILURE.match(line):
            out["errors"].append(line)
        elif line != "..." and not is_prompt_line(line):
            out["warnings"].append(f"line {no}: ignored {line[:120]!r}")

    if not recognized:
        no, found = first_text or (1, "")
        raise ParseError(
            TOOL,
            no,
            "gpu-fryer output ('Detected GPU #N', a 'N (X Gflops/s) ... | Temperatures:' "
            "progress line, a 'GPU #N: X Gflops/s (min: ...)' report or a health verdict)",
            found,
        )
    out["gpus"] = _per_gpu(out, reports)
    out["ok"] = _judge(out)
    return out


def _report_entry(index: int) -> dict:
    return {
        "index": index,
        "gflops": None,
        "gflops_min": None,
        "gflops_max": None,
        "gflops_dev": None,
        "temp_c": None,
        "temp_min_c": None,
        "temp_max_c": None,
        "throttling": None,
        "errors": None,
        "verdict": None,
    }


def _progress(line: str, no: int, raw: str) -> dict:
    expected = (
        "a progress line 'N (X Gflops/s) - ... | Temperatures: T°C - ... | Throttling: ...' "
        "with one entry per GPU in each part"
    )
    parts = [p.strip() for p in line.split("|")]
    flops = [_PROGRESS_GPU.match(p.strip()) for p in parts[0].split(" - ")]
    temps_text = parts[1].removeprefix("Temperatures:").strip() if len(parts) > 1 else ""
    temps = [_PROGRESS_TEMP.match(t.strip()) for t in temps_text.split(" - ")]
    throttles: list[str | None] = [None] * len(flops)
    if len(parts) > 2 and parts[2].startswith("Throttling:"):
        throttles = [t.strip() for t in parts[2].removeprefix("Throttling:").split(" - ")]
    if not all(flops) or not all(temps) or not (len(flops) == len(temps) == len(throttles)):
        raise ParseError(TOOL, no, expected, raw.strip())
    if any(t is not None and t not in _THROTTLE_NAMES for t in throttles):
        raise ParseError(TOOL, no, expected, raw.strip())
    return {
        "line": no,
        "gpus": [
            {
                "ops": int(f.group(1)),
                "gflops": float(f.group(2)),
                "temp_c": int(t.group(1)),
                "throttling": None if th in (None, "None") else th,
            }
            for f, t, th in zip(flops, temps, throttles, strict=True)
        ],
    }


def _json_line(line: str, out: dict, reports: dict[int, dict]) -> bool:
    """A ``--json`` line (gpu-fryer 1.2+); False when it is not one of gpu-fryer's records."""
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    if not isinstance(doc, dict):
        return False
    kind = doc.get("type")
    if kind == "detected_gpus":
        out["devices"] += [
            {"index": g.get("index"), "name": g.get("name"), "uuid": g.get("uuid")}
            for g in doc.get("detected_gpus", [])
        ]
    elif kind == "feature_detection":
        out["precisions"] = [p.upper() for p in ("fp32", "bf16", "fp8") if doc.get(p)]
        for g in doc.get("gpu_memory_used", []):
            out["memory_mb"][g.get("gpu_idx")] = g.get("memory_mb")
    elif kind == "progress":
        out["progress"].append(
            {
                "line": None,
                "gpus": [
                    {
                        "ops": g.get("nops"),
                        "gflops": float(g.get("flops", 0)) // 1_000_000_000,
                        "temp_c": g.get("temp_celsius"),
                        "throttling": g.get("throttle_reason"),
                    }
                    for g in doc.get("gpus", [])
                ],
            }
        )
    elif kind == "results":
        for g in doc.get("gpus", []):
            burn = g.get("burn_result", {})
            entry = reports[burn.get("gpu_idx")] = _report_entry(burn.get("gpu_idx"))
            entry["gflops"] = round(float(g.get("flops_avg", 0)) / 1e9, 2)
    elif kind == "problems":
        problems = doc.get("problems", [])
        out["healthy"] = not problems
        for p in problems:
            out["problems"].append({"gpu": p.get("gpu_idx"), "reason": str(p.get("reason"))})
            out["errors"].append(f"GPU {p.get('gpu_idx')} - {p.get('reason')}")
    elif set(doc) == {"message"}:
        out["errors"].append(str(doc["message"]))
    else:
        return False
    return True


def _per_gpu(out: dict, reports: dict[int, dict]) -> list[dict]:
    indices = set(reports)
    if out["progress"]:
        indices |= set(range(len(out["progress"][-1]["gpus"])))
    faulty = {p["gpu"] for p in out["problems"]}
    gpus = []
    for index in sorted(i for i in indices if i is not None):
        entry = reports.get(index) or _report_entry(index)
        if entry["gflops"] is None and out["progress"]:
            last = out["progress"][-1]["gpus"]
            if index < len(last):
                entry["gflops"] = last[index]["gflops"]
                entry["temp_c"] = last[index]["temp_c"]
        if index in faulty:
            entry["verdict"] = "FAULTY"
        elif out["healthy"]:
            entry["verdict"] = "OK"
        gpus.append(entry)
    return gpus


def _judge(out: dict) -> bool:
    warnings = out["warnings"]
    if not out["gpus"]:
        warnings.append("no progress line and no report: gpu-fryer did not burn")
        return False
    ok = out["healthy"] is True and not out["errors"]
    if out["healthy"] is None:
        warnings.append("no health verdict (the run was cut short or the output truncated)")
    for gpu in out["gpus"]:
        who = f"GPU {gpu['index']}"
        if not gpu["gflops"]:
            verdict = " although gpu-fryer calls it healthy" if gpu["verdict"] == "OK" else ""
            warnings.append(f"{who}: no work done (0 Gflops/s){verdict}")
            ok = False
        low, high = gpu["gflops_min"], gpu["gflops_max"]
        if low is not None and high is not None and (low > high or low >= _U64_MAX_GFLOPS):
            warnings.append(f"{who}: min {low} above max {high}: the run collected no samples")
            ok = False
    return ok
