"""How long `gpubox sim` takes: cold up, warm up, reboot, down (target: warm up < 5 s).

    $ sudo uv run python benchmarks/sim_up.py [--runs 3] [--skip-cold]

Times the CLI as a user runs it (``python -m gpubox.cli sim ...``, Python start included):

* cold up: no cached base (a fresh, temporary ``GPUBOX_SIM_CACHE``): debootstrap, pack, unpack,
  boot. Takes a minute or two and needs deb.debian.org.
* warm up: cached base, new target (overlay mount, keys, library, scenario, boot until
  ``systemctl is-system-running`` answers).
* reboot: orderly stop + boot of the same root; down: orderly stop.

Everything runs in a temporary ``GPUBOX_SIM_HOME`` and is purged at the end. Prints figures; it
is not a test and never fails on a slow result. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARM_TARGET_S = 5.0
REPO = Path(__file__).resolve().parents[1]


def sim(env: dict, *args: str) -> float:
    """Run `gpubox sim ARGS`; return its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "gpubox.cli", "sim", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"gpubox sim {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm up / reboot / down runs")
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold (no cache) up")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/sim_up.py: needs root (systemd-nspawn)")

    work = Path(tempfile.mkdtemp(prefix="gpubox-sim-bench-"))
    env = {**os.environ, "GPUBOX_SIM_HOME": str(work / "home")}
    names: list[str] = []
    rows: list[tuple[str, list[float]]] = []
    try:
        if not args.skip_cold:
            cold_env = {**env, "GPUBOX_SIM_CACHE": str(work / "cache")}
            print("cold up (fresh cache: debootstrap)...", flush=True)
            names.append("cold")
            rows.append(("cold up (no cached base)", [sim(cold_env, "up", "--name", "cold")]))
            sim(cold_env, "down", "--purge", "cold")
            names.remove("cold")

        # Make sure the default cache holds a base, so "warm" is warm.
        names.append("prime")
        sim(env, "up", "--name", "prime")
        sim(env, "down", "--purge", "prime")
        names.remove("prime")

        warm, reboot, down = [], [], []
        for i in range(args.runs):
            name = f"bench{i}"
            names.append(name)
            warm.append(sim(env, "up", "--name", name))
            reboot.append(sim(env, "reboot", name))
            down.append(sim(env, "down", name))
            sim(env, "down", "--purge", name)
            names.remove(name)
        rows += [
            ("warm up (cached base, new target)", warm),
            ("reboot (stop + boot)", reboot),
            ("down (orderly stop)", down),
        ]
    finally:
        for name in names:
            subprocess.run(
                [sys.executable, "-m", "gpubox.cli", "sim", "down", "--purge", name],
                env={**env, "GPUBOX_SIM_CACHE": str(work / "cache")} if name == "cold" else env,
                cwd=REPO,
                capture_output=True,
            )
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'step':36} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for label, times in rows:
        print(
            f"{label:36} {statistics.median(times):9.2f} {min(times):7.2f} {max(times):7.2f}"
            f"  {len(times)}"
        )
    warm_rows = [times for label, times in rows if label.startswith("warm")]
    if warm_rows:
        verdict = "ok" if statistics.median(warm_rows[0]) < WARM_TARGET_S else "SLOWER than target"
        print(f"\nwarm up target < {WARM_TARGET_S:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
