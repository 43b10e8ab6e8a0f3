"""Wall time of the quick tier against simulated nodes: the probe alone, one node, four nodes.

    uv run python benchmarks/quick_tier.py [--nodes 4] [--keep]   # needs root

Boots N simulated PG199 nodes (Debian 13) and deploys them one after another (their apt runs
share one archive cache), then times, as a user runs them:
  * the probe alone on a node (``gpubox probe --json`` over SSH, and NVML time inside it),
  * ``pytest checks/ -m quick`` against one node (the whole process),
  * the same against all N nodes (the plugin probes them in parallel).
Targets: probe under 200 ms, one node under 3 s, four nodes under 2x one node.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

from gpubox.sim import target
from gpubox.sim.standin import Server
from gpubox.sim.testing import BIN, ROOT, STANDIN_PORT, deploy


def timed(cmd: list[str], env: dict, runs: int = 5) -> tuple[float, subprocess.CompletedProcess]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="leave the nodes running")
    args = parser.parse_args()
    os.environ.setdefault("GPUBOX_SIM_HOME", "/var/lib/gpubox-bench")
    names = [f"qbench{i}" for i in range(args.nodes)]
    server = Server(port=STANDIN_PORT - 2)  # beside a test session's
    env = {**os.environ, **server.env()}
    try:
        running = {t.name for t in target.list_targets() if t.running}
        for name in names:
            if name not in running:  # --keep from an earlier run leaves them up and deployed
                target.up(name)
        deployed = deploy(env, "--serial", timeout=7200)
        assert deployed.returncode == 0, deployed.stdout[-3000:]
        node = target.get_target(names[0])
        probe = node.ssh_command("/opt/gpubox/venv/bin/gpubox probe --json")
        probe_s, result = timed(probe, env)
        nvml_ms = json.loads(result.stdout)["probe_ms"]
        on_node = node.ssh_command(
            "for i in 1 2 3 4 5; do s=$(date +%s%N); /opt/gpubox/venv/bin/gpubox probe --json "
            ">/dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); done"
        )
        process_ms = statistics.median(
            int(x) for x in subprocess.run(on_node, capture_output=True, text=True).stdout.split()
        )
        pytest = [
            str(BIN / "pytest"),
            "checks/",
            "-m",
            "quick",
            "--inventory",
            "inventories/sim.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--results-json",
            "/tmp/qbench.json",
        ]
        one_s, one = timed([*pytest, "--limit", names[0]], env)
        all_s, many = timed(pytest, env)  # every node: the plugin probes them in parallel
    finally:
        server.stop()
        if not args.keep:
            for name in names:
                target.down(name, purge=True)
    print(
        f"probe process on the node  {process_ms:7.0f} ms  (NVML snapshot inside: {nvml_ms} ms; target < 200 ms)"
    )
    print(f"probe over SSH             {probe_s * 1000:7.0f} ms  (incl. ssh connection set-up)")
    print(
        f"quick tier, 1 node         {one_s:7.2f} s   ({one.stdout.strip().splitlines()[-1]}; target < 3 s)"
    )
    print(
        f"quick tier, {args.nodes} nodes        {all_s:7.2f} s   ({many.stdout.strip().splitlines()[-1]}; target < {2 * one_s:.2f} s)"
    )


if __name__ == "__main__":
    main()
