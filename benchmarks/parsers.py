"""Parse time per tool on its largest shared fixture (median of N runs); target < 10 ms each.

    $ uv run python benchmarks/parsers.py [--runs 200]

Reads the samples from ``../shared/fixtures`` (or ``$GPUBOX_FIXTURES``). Prints figures; it is
not a test and never fails on a slow result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from gpubox.parsers import PARSERS
from gpubox.parsers.common import strip_fixture_header

# Tool name -> its fixture folder.
FOLDERS = {
    "nccl-tests": "nccl-tests",
    "bandwidthTest": "bandwidthTest",
    "p2pBandwidthLatencyTest": "p2pBandwidthLatencyTest",
    "nvbandwidth": "nvbandwidth",
}
TARGET_MS = 10.0


def fixtures_root() -> Path:
    env = os.environ.get("GPUBOX_FIXTURES")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def median_ms(parse, text: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        parse(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="timed runs per tool (default 200)")
    args = ap.parse_args()

    root = fixtures_root()
    if not root.is_dir():
        print(f"fixtures folder not found: {root} (set GPUBOX_FIXTURES)", file=sys.stderr)
        return 1
    print(f"{'tool':<26} {'largest fixture':<58} {'bytes':>7} {'median ms':>10}  target")
    for tool, folder in FOLDERS.items():
        largest = max((root / folder).iterdir(), key=lambda p: p.stat().st_size)
        with open(largest, encoding="utf-8", newline="") as f:
            text = strip_fixture_header(f.read())
        PARSERS[tool](text)  # warm-up (regex compilation, imports)
        ms = median_ms(PARSERS[tool], text, args.runs)
        verdict = "ok" if ms < TARGET_MS else "SLOW"
        print(f"{tool:<26} {largest.name:<58} {len(text):>7} {ms:>10.3f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
