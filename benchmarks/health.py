"""Wall time of ``gpubox health``, Slurm's health check, which must return well within 60 s.

    uv run python benchmarks/health.py [--runs 10]            # here: simulated NVML, no Slurm
    uv run python benchmarks/health.py --sim NAME [--runs 10] # on a simulated Slurm node (root)

Here, it runs the whole command (Python start, the probe in its child process, judging, two
``scontrol`` calls) against the simulated NVML library, healthy and with a GPU missing, with a
``scontrol`` that answers at once, so the figures are gpubox's own time. ``--sim NAME`` times
the deployed health program on a running simulated node that is a real Slurm node (the one
``tests/integration/test_slurm.py`` sets up; keep it with ``GPUBOX_TEST_KEEP_NODE``), measured
on the node itself, as slurmd runs it, scontrol round trips to slurmctld included.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpubox.sim import nvml, scenario, sysfs
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[1]

# Answers `show node` with an idle node and accepts every `update`: Slurm's own time left out.
SCONTROL = """#!/bin/sh
[ "$1" = show ] && printf 'NodeName=%s\\n   State=IDLE ThreadsPerCore=1\\n' "$3"
exit 0
"""


def spec_data() -> dict:
    import runpy

    home = runpy.run_path(str(ROOT / "inventories/home.py"))["_pg199_node"]
    data = {k: v for k, v in home.items() if not k.startswith("ssh_") and k != "software"}
    data["software"] = {"os": "debian-13", "source": "debian", "build_kernel_modules": False}
    return NodeSpec.from_data(data, host="bench").to_data()


def here(runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gpubox-health-bench-"))
    scontrol = folder / "scontrol"
    scontrol.write_text(SCONTROL)
    scontrol.chmod(0o755)
    lib = str(nvml.library_path())
    for name, label in (("pg199-quad-debian13", "healthy"), ("fault-gpu-missing", "GPU missing")):
        work = folder / name
        resolved = scenario.resolve_to_file(name, work / "scenario.json")
        sysfs.install(scenario.load(name), work / "sys")
        env = nvml.environment(resolved, work / "state")
        gpubox = [sys.executable, "-m", "gpubox"]
        subprocess.run(
            [*gpubox, "clocks", "lock", "--mhz", "1140", "--library", lib, "--settle", "0"],
            env=env,
            capture_output=True,
        )
        data = spec_data()
        data["software"] |= {"nvml_library": lib, "sysfs_root": str(work / "sys")}
        spec = work / "spec.json"
        spec.write_text(json.dumps(data))
        argv = [*gpubox, "health", "--spec", str(spec), "--node", "n1", "--scontrol", str(scontrol)]
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            result = subprocess.run(argv, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
        print(
            f"gpubox health, {label} ({runs} runs, this machine, simulated NVML): median "
            f"{statistics.median(times):.2f} s, max {max(times):.2f} s; exit {result.returncode}: "
            f"{result.stdout.strip()[:120]}"
        )


def on_sim(name: str, runs: int) -> None:
    from gpubox.sim import target

    node = target.get_target(name)
    script = (
        f"for i in $(seq {runs}); do s=$(date +%s%N); env -i SLURMD_NODENAME=$(hostname) "
        "/opt/gpubox/bin/gpubox-health >/dev/null 2>&1; e=$(date +%s%N); "
        "echo $(( (e - s) / 1000000 )); done"
    )
    out = subprocess.run(node.ssh_command(script), capture_output=True, text=True, timeout=600)
    ms = [int(x) for x in out.stdout.split()]
    if not ms:
        sys.exit(f"no timings from {name}: {out.stderr.strip()}")
    print(
        f"gpubox-health on {name} (a Slurm node, real scontrol; {len(ms)} runs, on the node): "
        f"median {statistics.median(ms) / 1000:.2f} s, max {max(ms) / 1000:.2f} s "
        "(Slurm's limit: 60 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--sim", metavar="NAME", help="a running simulated Slurm node")
    args = parser.parse_args()
    if args.sim:
        os.environ.setdefault("GPUBOX_SIM_HOME", "/var/lib/gpubox-keep")
        on_sim(args.sim, args.runs)
    else:
        here(args.runs)


if __name__ == "__main__":
    main()
