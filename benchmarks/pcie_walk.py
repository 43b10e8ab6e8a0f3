"""What the PCIe path walk adds to a probe. Prints figures; not a test.

    uv run python benchmarks/pcie_walk.py [--runs 200] [--scenario pg199-quad]

* the simulated node's tree (the scenario's ``pcie_tree`` rendered as a sysfs by
  ``gpubox.sim.sysfs``): every GPU's path, switches shared between GPUs read once per probe, as
  ``gpubox.probe`` does it; target: the whole walk under 10 ms;
* this machine's own ``/sys``: every PCI device walked as if it were a GPU (real kernel files;
  on a VM most link and AER files are absent, which the walk records, never raising).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from gpubox import pcie_path
from gpubox.sim import scenario, sysfs


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


def spread(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return f"median {ms(statistics.median(samples))}   p95 {ms(p95)}   (n={len(samples)})"


def walk_all(bus_ids: list[str], root: str) -> list[dict]:
    cache: dict = {}
    return [pcie_path.walk(bus, root, cache) for bus in bus_ids]


def timed(bus_ids: list[str], root: str, runs: int) -> tuple[list[float], list[dict]]:
    samples, paths = [], []
    for _ in range(runs):
        start = time.perf_counter()
        paths = walk_all(bus_ids, root)
        samples.append(time.perf_counter() - start)
    return samples, paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--scenario", default="pg199-quad")
    args = parser.parse_args()

    doc = scenario.load(args.scenario)
    with tempfile.TemporaryDirectory(prefix="gpubox-pcie-bench-") as tmp:
        root = str(sysfs.install(doc, Path(tmp) / "sys"))
        gpus = [sysfs._gpu_bus_id(g["bus_id"]) for g in doc["gpus"]]
        samples, paths = timed(gpus, root, args.runs)
    hops = sum(len(p["hops"]) for p in paths)
    print(f"simulated {args.scenario}: {len(gpus)} GPUs, {hops} hops walked")
    print(f"  whole walk          {spread(samples)}")
    ok = statistics.median(samples) < 0.010
    print(f"  target: under 10 ms -> {'OK' if ok else 'SLOWER THAN TARGET'}")

    devices = sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci") else []
    if devices:
        samples, paths = timed(devices, "/sys", max(1, args.runs // 4))
        missing = sorted({m for p in paths for h in p["hops"] for m in h["missing"]})
        print(f"this machine's /sys: {len(devices)} PCI devices walked as GPUs")
        print(f"  whole walk          {spread(samples)}")
        print(f"  files absent here   {', '.join(missing) or 'none'}")
    else:
        print("this machine shows no /sys/bus/pci: nothing to walk")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
