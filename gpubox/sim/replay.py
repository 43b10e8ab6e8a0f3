#!/usr/bin/env python3
"""Benchmark replay for the simulated node: prints a scenario's recorded tool output.

A simulation input, never used outside a simulated node. ``gpubox sim up`` copies this file into
the target as ``/usr/lib/gpubox-sim/replay.py`` and links the benchmark tools' names to it in
``/usr/lib/gpubox-sim/bin/`` (``bandwidthTest``, ``p2pBandwidthLatencyTest``, ``all_reduce_perf``
and the other nccl-tests ``*_perf`` names); the sim inventory points the spec's ``bench`` folders
there. Run under one of those names, it reads the resolved scenario (``$GPUBOX_SIM_SCENARIO``,
default ``/etc/gpubox-sim/scenario.json``), picks the first entry of its ``benchmarks`` section
that matches this invocation, prints the entry's ``output`` (the first line at once, the rest
after ``seconds``), its ``stderr`` to stderr, and exits with its ``exit`` code.

What an invocation is matched on (an entry without a key matches any value):

* ``tool``: the name this program was run as;
* ``gpus``: the GPUs it uses, as NVML/PCI indices: bandwidthTest's ``--device=N`` (through
  ``CUDA_VISIBLE_DEVICES`` when that is set), else ``CUDA_VISIBLE_DEVICES`` (nccl-tests,
  p2pBandwidthLatencyTest); none when neither is given;
* ``size``: bytes: bandwidthTest's ``--start`` in range mode (32000000 in quick mode),
  nccl-tests' ``-b``/``--minbytes`` (``32M`` style sizes allowed).

No matching entry: a message naming the invocation and the recorded entries on stderr, exit 99.
Standard library only: it runs with the target's own ``python3``. The format is documented in
``gpubox/sim/SCENARIOS.md`` (section "Benchmarks").
"""

from __future__ import annotations

import json
import os
import sys
import time

SCENARIO = "/etc/gpubox-sim/scenario.json"
NO_MATCH = 99
QUICK_SIZE = 32000000  # bandwidthTest's quick mode transfer size


def parse_size(text: str) -> int | None:
    """nccl-tests' size syntax: ``33554432``, ``32M``, ``1G`` (K/M/G are powers of 1024)."""
    text = text.strip()
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    factor = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if factor != 1 else text
    try:
        return int(float(digits) * factor)
    except ValueError:
        return None


def _visible() -> list[int] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        return None


def _option(args: list[str], *names: str) -> str | None:
    """The value of ``--name=value``, ``--name value`` or ``-n value`` (the last one given)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif arg == name and i + 1 < len(args):
                found = args[i + 1]
    return found


def invocation(tool: str, args: list[str]) -> dict:
    """What this run asks for: ``{"tool", "gpus", "size"}`` (gpus/size may be None)."""
    visible = _visible()
    gpus: list[int] | None = visible
    size: int | None = None
    if tool == "bandwidthTest":
        device = _option(args, "--device", "-device")
        if device is not None and device != "all":
            try:
                n = int(device)
            except ValueError:
                n = None
            if n is not None:
                gpus = [visible[n]] if visible and n < len(visible) else [n]
        mode = _option(args, "--mode", "-mode") or "quick"
        start = _option(args, "--start", "-start")
        size = int(start) if mode == "range" and start and start.isdigit() else None
        if mode == "quick":
            size = QUICK_SIZE
    elif tool.endswith("_perf") or tool.endswith("_perf_mpi"):
        minbytes = _option(args, "-b", "--minbytes")
        size = parse_size(minbytes) if minbytes else None
    return {"tool": tool, "gpus": gpus, "size": size}


def matches(entry: dict, call: dict) -> bool:
    if entry.get("tool") != call["tool"]:
        return False
    if "gpus" in entry and entry["gpus"] != call["gpus"]:
        return False
    return not ("size" in entry and entry["size"] != call["size"])


def find(doc: dict, call: dict) -> tuple[str, dict] | None:
    for name, entry in (doc.get("benchmarks") or {}).items():
        if isinstance(entry, dict) and matches(entry, call):
            return name, entry
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    tool = os.path.basename(argv[0])
    if tool in ("replay.py", "replay"):  # run directly: the tool is the first argument
        if len(argv) < 2:
            print(
                "usage: replay.py TOOL [ARGS...] (or run it under a tool's name)", file=sys.stderr
            )
            return 2
        tool, argv = os.path.basename(argv[1]), argv[1:]
    path = os.environ.get("GPUBOX_SIM_SCENARIO") or SCENARIO
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"gpubox sim replay: cannot read scenario {path}: {exc}", file=sys.stderr)
        return NO_MATCH
    call = invocation(tool, argv[1:])
    found = find(doc, call)
    if found is None:
        recorded = ", ".join(sorted(doc.get("benchmarks") or {})) or "none"
        print(
            f"gpubox sim replay: scenario {doc.get('scenario')!r} ({path}) has no recorded output "
            f"for {tool} gpus={call['gpus']} size={call['size']} (recorded: {recorded})",
            file=sys.stderr,
        )
        return NO_MATCH
    _, entry = found
    lines = str(entry.get("output", "")).splitlines(keepends=True)
    if lines:
        sys.stdout.write(lines[0])
        sys.stdout.flush()
    if entry.get("seconds"):
        time.sleep(float(entry["seconds"]))
    sys.stdout.writelines(lines[1:])
    sys.stdout.flush()
    if entry.get("stderr"):
        sys.stderr.write(str(entry["stderr"]))
        sys.stderr.flush()
    return int(entry.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
