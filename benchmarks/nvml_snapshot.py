"""How fast is the simulated NVML library? Prints figures; not a test.

    uv run python benchmarks/nvml_snapshot.py [--runs 300] [--scenario pg199-quad]

* build: ``nvml.library_path()`` into an empty cache folder (cold: runs ``cc``) and again (warm:
  hashes the source and finds the cached file);
* snapshot: one full read through the unmodified pynvml, in-process, of every field of every GPU
  (``gpubox.sim.nvml.snapshot``: 4 GPUs, 12 ordered pairs x 5 P2P capabilities), median and p95;
  target: under 50 ms;
* init+snapshot+shutdown: the same including ``nvmlInit`` (which reads and parses the scenario).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from gpubox.sim import nvml, scenario


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def spread(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return f"median {ms(statistics.median(samples))}   p95 {ms(p95)}   (n={len(samples)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--scenario", default="pg199-quad")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gpubox-nvml-bench-") as tmp:
        os.environ["GPUBOX_CACHE_DIR"] = str(Path(tmp) / "cache")
        start = time.perf_counter()
        path = nvml.library_path()
        cold = time.perf_counter() - start
        warm_samples = []
        for _ in range(20):
            start = time.perf_counter()
            nvml.library_path()
            warm_samples.append(time.perf_counter() - start)
        print(f"library build, cold (cc)         {ms(cold)}")
        print(f"library_path(), warm (cached)    {spread(warm_samples)}")

        import pynvml

        nvml.load_into_pynvml(path)
        os.environ["GPUBOX_SIM_SCENARIO"] = str(
            scenario.resolve_to_file(args.scenario, Path(tmp) / "scenario.json")
        )
        os.environ["GPUBOX_SIM_STATE_DIR"] = str(Path(tmp) / "state")

        pynvml.nvmlInit()
        snap = nvml.snapshot()
        gpus, pairs = snap["count"], sum(1 for k in snap if k.startswith("p2p["))
        reads = []
        for _ in range(args.runs):
            start = time.perf_counter()
            nvml.snapshot()
            reads.append(time.perf_counter() - start)
        pynvml.nvmlShutdown()

        cycles = []
        for _ in range(args.runs):
            start = time.perf_counter()
            pynvml.nvmlInit()
            nvml.snapshot()
            pynvml.nvmlShutdown()
            cycles.append(time.perf_counter() - start)

    print(f"scenario {args.scenario}: {gpus} GPUs, {len(snap)} values, {pairs} P2P queries")
    print(f"full snapshot (in-process)       {spread(reads)}")
    print(f"init + snapshot + shutdown       {spread(cycles)}")
    verdict = "OK" if statistics.median(reads) < 0.050 else "SLOWER THAN TARGET"
    print(f"target: snapshot under 50 ms -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
