"""The bandwidth tier's own overhead: parsing, the subprocess wrapper, and the tier on a sim node.

    $ uv run python benchmarks/bandwidth.py [--runs 50]
    $ uv run python benchmarks/bandwidth.py --inventory inventories/sim.py   # + a sim node

1. Parse time (median) of the largest shared fixture of each tool the tier runs; target < 10 ms.
2. Wrapper overhead on the largest nccl-tests fixture: ``gpubox.bench.wrapper.run`` (subprocess,
   streamed output, raw log, parse) against a bare ``subprocess.run`` of the same program; the
   program is the benchmark replay printing that fixture, so the difference is gpubox's share.
3. With ``--inventory``: the tier's wall time on the (simulated) node: ``gpubox bench run`` over
   SSH as the checks run it, and ``pytest checks/ -m bandwidth`` end to end.

Reads the samples from ``../shared/fixtures`` (or ``$GPUBOX_FIXTURES``). Prints figures; it is
not a test and never fails on a slow result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpubox.bench import commands, wrapper
from gpubox.parsers import PARSERS
from gpubox.parsers.common import strip_fixture_header
from gpubox.sim import scenario
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "gpubox" / "sim" / "replay.py"
TOOLS = {"nccl-tests": "nccl-tests", "bandwidthTest": "bandwidthTest"}
TOOLS["p2pBandwidthLatencyTest"] = "p2pBandwidthLatencyTest"
TARGET_MS = 10.0


def fixtures_root() -> Path:
    env = os.environ.get("GPUBOX_FIXTURES")
    return Path(env) if env else ROOT.parent / "shared" / "fixtures"


def largest(root: Path, folder: str) -> tuple[Path, str]:
    path = max((root / folder).iterdir(), key=lambda p: p.stat().st_size)
    with open(path, encoding="utf-8", newline="") as f:
        return path, strip_fixture_header(f.read())


def median_s(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_times(root: Path, runs: int) -> None:
    print(f"{'tool':<26} {'largest fixture':<58} {'bytes':>7} {'parse ms':>9}  target")
    for tool, folder in TOOLS.items():
        path, text = largest(root, folder)
        PARSERS[tool](text)  # warm-up
        ms = median_s(lambda t=tool, x=text: PARSERS[t](x), runs * 4) * 1000
        verdict = "ok" if ms < TARGET_MS else "SLOW"
        print(f"{tool:<26} {path.name:<58} {len(text):>7} {ms:>9.3f}  {verdict} (< {TARGET_MS:g})")


def wrapper_overhead(root: Path, runs: int) -> None:
    path, text = largest(root, "nccl-tests")
    with tempfile.TemporaryDirectory(prefix="gpubox-bench-") as tmp:
        tmp = Path(tmp)
        (tmp / "all_reduce_perf").symlink_to(REPLAY)
        doc = scenario.load("pg199-quad-debian13")
        doc["benchmarks"] = {"fixture": {"tool": "all_reduce_perf", "output": text}}
        (tmp / "scenario.json").write_text(json.dumps(doc))
        spec = NodeSpec.from_data({"gpu_count": 2, "bench": {"nccl_tests_dir": str(tmp)}})
        inv = commands.nccl_tests(spec, (0, 1), 8)
        inv = dataclasses.replace(
            inv, env={**inv.env, "GPUBOX_SIM_SCENARIO": str(tmp / "scenario.json")}
        )
        env = {**os.environ, **inv.env}

        def bare():
            subprocess.run(list(inv.argv), env=env, capture_output=True, check=False)

        def wrapped():
            result = wrapper.run(inv, log_dir=tmp / "logs", progress=None)
            assert result.parsed is not None, result.errors

        bare(), wrapped()  # warm-up
        pairs = [(median_s(bare, 1), median_s(wrapped, 1)) for _ in range(runs)]  # interleaved
        t_bare = statistics.median(b for b, _ in pairs)
        t_wrapped = statistics.median(w for _, w in pairs)
        t_overhead = statistics.median(w - b for b, w in pairs)
        t_parse = median_s(lambda: PARSERS["nccl-tests"](text), runs * 4)
    print(
        f"\nwrapper on {path.name} ({len(text)} bytes), median of {runs}:\n"
        f"  bare subprocess.run of the replay  {t_bare * 1000:8.2f} ms\n"
        f"  gpubox.bench.wrapper.run           {t_wrapped * 1000:8.2f} ms\n"
        f"  overhead (stream, log, parse)      {t_overhead * 1000:8.2f} ms (median of pairs)"
        f"  (of which parsing {t_parse * 1000:.2f} ms)"
    )


def tier_on_node(inventory: str) -> None:
    from gpubox.checks import load_nodes

    print(f"\nbandwidth tier on {inventory}:")
    for node in load_nodes(inventory, []):
        start = time.perf_counter()
        doc = node.run_bench()
        over_ssh = time.perf_counter() - start
        print(
            f"  {node.name}: gpubox bench run over SSH {over_ssh:6.2f} s "
            f"({len(doc['runs'])} tool runs, {doc['duration_s']:.2f} s of them on the node)"
        )
    with tempfile.TemporaryDirectory(prefix="gpubox-bench-") as tmp:
        cmd = [
            sys.executable, "-m", "pytest", "checks/", "-m", "bandwidth", "--inventory", inventory,
            "-q", "-p", "no:cacheprovider", "--results-json", f"{tmp}/r.json",
            "--junitxml", f"{tmp}/r.xml",
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        counts = json.loads(Path(f"{tmp}/r.json").read_text())["counts"]
    print(f"  pytest checks/ -m bandwidth: {wall:6.2f} s wall, {counts} (exit {done.returncode})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50, help="timed runs (default 50)")
    ap.add_argument("--inventory", help="also time the tier on this inventory's node(s)")
    args = ap.parse_args()
    root = fixtures_root()
    if not root.is_dir():
        print(f"fixtures folder not found: {root} (set GPUBOX_FIXTURES)", file=sys.stderr)
        return 1
    parse_times(root, args.runs)
    wrapper_overhead(root, args.runs)
    if args.inventory:
        tier_on_node(args.inventory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
