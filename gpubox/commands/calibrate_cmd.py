"""``gpubox calibrate``: run the bandwidth tier N times on a known-good node, write a baseline.

    $ gpubox calibrate --runs 5                                 # on the node itself
    $ gpubox calibrate --inventory inventories/home.py --runs 5 --out baselines/home.json

Each run is ``gpubox bench run --json`` on the node (over SSH with ``--inventory``), exactly what
the checks run. The baseline (format in :mod:`gpubox.baseline`) holds each measurement's median,
the floor it implies (``median x (1 - margin)``), min, max and the samples. A measurement that
failed in any run is left out (and the exit status is 1): calibrate on a node known to be good.

Where the spec already names a baseline (``bench.baseline``, or ``/etc/gpubox/baseline.json`` on
the node), the new medians are compared with it: the drift since the last calibration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gpubox.cli import CliError


def configure(parser):
    from gpubox.baseline import DEFAULT_PATH

    parser.add_argument(
        "--inventory", help="pyinfra inventory (default: this node, its deployed spec)"
    )
    parser.add_argument(
        "--limit", action="append", default=[], metavar="HOST", help="only this inventory host"
    )
    parser.add_argument(
        "--spec", default="/etc/gpubox/spec.json", help="local node spec (without --inventory)"
    )
    parser.add_argument("--runs", type=int, default=5, help="bandwidth tier runs (default 5)")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.15,
        help="floor = median x (1 - margin) (default 0.15)",
    )
    parser.add_argument(
        "--out",
        help=f"baseline file to write (default {DEFAULT_PATH} on the node itself; required "
        "with --inventory); other hosts already in it are kept",
    )


def expected_keys(spec) -> list[str]:
    """Every measurement the tier takes for ``spec``, keyed as in the baseline."""
    from gpubox import floors

    keys = [floors.host_key(d, g) for g in range(spec.gpu_count) for d in ("h2d", "d2h")]
    keys += [floors.p2p_key(a, b) for a, b in spec.pairs()]
    keys += [floors.allreduce_key(f) for f in spec.floors.allreduce]
    return keys


def spec_floor(spec, key: str) -> float | None:
    """The explicit spec floor for a measurement key, if the spec gives one."""
    import re

    if m := re.fullmatch(r"(h2d|d2h)\[gpu(\d+)\]", key):
        per = spec.floors.h2d_gbps if m[1] == "h2d" else spec.floors.d2h_gbps
        return per.get(int(m[2]))
    if m := re.fullmatch(r"p2p\[gpu(\d+)-gpu(\d+)\]", key):
        return spec.floors.p2p_gbps.get(int(m[1]), int(m[2]))
    from gpubox.floors import allreduce_key

    for f in spec.floors.allreduce:
        if allreduce_key(f) == key:
            return f.busbw_gbps
    return None


def _say(message: str) -> None:
    print(f"gpubox calibrate: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    import pytest

    from gpubox import baseline as baseline_mod
    from gpubox.bench import results
    from gpubox.checks import NodeError, load_nodes, write_atomic

    if args.runs < 1:
        raise CliError("--runs must be at least 1")
    if not 0 <= args.margin < 1:
        raise CliError("--margin must be in 0..1 (0.15 = floors 15 % under the median)")
    if args.inventory and not args.out:
        raise CliError("give --out FILE: where to write the baseline on this machine")
    out = Path(args.out or baseline_mod.DEFAULT_PATH)
    try:
        nodes = load_nodes(args.inventory, args.limit, args.spec)
    except (pytest.UsageError, FileNotFoundError, KeyError, ValueError) as exc:
        raise CliError(str(exc)) from None

    for node in nodes:  # the tier's start line and its progress every 30 s
        node.say = _say
    samples: dict[str, dict[str, list[float]]] = {n.name: {} for n in nodes}
    failures: dict[str, list[str]] = {n.name: [] for n in nodes}
    for i in range(1, args.runs + 1):
        for node in nodes:
            _say(f"run {i}/{args.runs} on {node.name}")
            try:
                doc = node.run_bench()
            except NodeError as exc:
                raise CliError(str(exc)) from None
            for entry in doc.get("runs", []):
                if not entry.get("ok"):
                    failures[node.name].append(
                        f"run {i}: {entry['name']}: {'; '.join(entry['errors'])}"
                    )
            for key, value in results.measurements(doc, node.spec).items():
                samples[node.name].setdefault(key, []).append(value)

    previous = None
    if out.is_file():
        try:
            previous = json.loads(out.read_text())
        except ValueError:
            raise CliError(f"{out} exists and is not a baseline file; move it away") from None
    complete = True
    for node in nodes:
        host_samples = samples[node.name]
        full = {k: v for k, v in host_samples.items() if len(v) == args.runs}
        left_out = [k for k in expected_keys(node.spec) if k not in full]
        complete = complete and not left_out
        try:
            old = node.baseline
        except NodeError as exc:
            _say(f"{node.name}: the current baseline is unusable, no drift shown ({exc})")
            old = None
        _report(node, full, left_out, failures[node.name], args.margin, old)
        if full:
            previous = baseline_mod.build(full, args.margin, args.runs, node.spec.host, previous)
    if previous is None or not any(samples.values()):
        raise CliError("no measurement succeeded: nothing written")
    try:
        write_atomic(out, json.dumps(previous, indent=2) + "\n")
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from None
    where = "this node" if not args.inventory else "the machine running the checks"
    print(
        f"wrote {out}. The checks use it when bench.baseline names it (a path on {where} or on "
        f"the node) or when it is {baseline_mod.DEFAULT_PATH} on the node. Explicit `floors` "
        "in the spec take precedence over its floors; every message reports the drift from it."
    )
    return 0 if complete else 1


def _report(node, full, left_out, failures, margin, old) -> None:
    import statistics

    print(f"{node.name}: {len(full)} measurements (floor = median x {1 - margin:g})")
    print(
        f"  {'measurement':<28} {'median':>8} {'floor':>8} {'min..max':>15} {'spec floor':>11}  drift"
    )
    for key, values in sorted(full.items()):
        median = statistics.median(values)
        explicit = spec_floor(node.spec, key)
        shown = f"{explicit:g}*" if explicit is not None else "-"
        drift = ""
        if old is not None and old.median(key):
            drift = f"{(median - old.median(key)) / old.median(key) * 100:+.1f} % vs {old.median(key):g}"
        print(
            f"  {key:<28} {median:>8.3f} {median * (1 - margin):>8.3f} "
            f"{min(values):>7.3f}..{max(values):<7.3f} {shown:>11}  {drift}".rstrip()
        )
    if any(spec_floor(node.spec, k) is not None for k in full):
        print("  * an explicit spec floor: it takes precedence over the baseline's floor")
    for key in left_out:
        print(f"  left out {key}: it failed or was missing in some run")
    for failure in failures[:10]:
        print(f"  {failure}")
