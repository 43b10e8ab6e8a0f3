"""Many nodes against one: the deploy and the quick tier on 4 simulated nodes in parallel.

    uv run python benchmarks/fleet.py              # needs root; ~15-30 min with a warm apt cache
    uv run python benchmarks/fleet.py --nodes 2    # a smaller fleet

pyinfra deploys every inventory host in parallel and the checks plugin probes every host in one
parallel step (and ``-n N --dist loadgroup`` spreads the checks over N workers), so N nodes
should take little longer than one. Target (issue 14): N nodes <= 1.5x one node's wall time, for
the first deploy, the no-op re-run and the quick tier.

Phase 1 boots one fresh node and times it; phase 2 boots N fresh nodes (the first is gone by
then, so both first deploys start from the same state) and times the same commands. Each row
prints the one-node and N-node figures and their ratio. All nodes run on this machine: on a
machine with few cores the N nodes' apt and dpkg work competes for them (a real fleet has a CPU
per node), which is what the first-deploy row mostly measures; the no-op and quick rows are
bound by SSH round trips, as on a real fleet. Medians of ``--repeat`` runs (first deploy: once).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gpubox.sim import target
from gpubox.sim.standin import Server
from gpubox.sim.testing import STANDIN_PORT, changed_ops, deploy, run_checks

PREFIX = "fleet"


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _say(text: str) -> None:
    print(f"[fleet] {text}", file=sys.stderr, flush=True)


def _quick(env, extra=()) -> int:
    """The quick tier over SSH as a user runs it (gpubox.sim.testing.run_checks); exit status."""
    with tempfile.TemporaryDirectory() as tmp:
        rc, _ = run_checks(env, *extra, results=Path(tmp) / "r.json")
        return rc


def _measure(names: list[str], env: dict, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        _say(f"booting {name}")
        target.up(name)
    _say(f"first deploy of {len(names)} node(s)")
    out["first deploy"], first = _timed(lambda: deploy(env, "--json"))
    if first.returncode != 0:
        raise SystemExit(f"first deploy failed:\n{first.stdout[-3000:]}\n{first.stderr[-2000:]}")
    if "reboot the node to load it" in first.stdout + first.stderr:
        for name in names:
            target.reboot(name)
    noops, quicks, spread = [], [], []
    for n in range(repeat + 1):  # the first of each is a warm-up
        _say(f"no-op re-run {n}/{repeat}")
        s, again = _timed(lambda: deploy(env, "--json"))
        if again.returncode != 0 or changed_ops(again):
            raise SystemExit(f"no-op re-run changed {changed_ops(again)} or failed")
        s2, quick = _timed(lambda: _quick(env))
        if quick != 0:
            raise SystemExit(f"quick tier failed (exit {quick})")
        s3, _ = _timed(lambda: _quick(env, ("-n", str(len(names)), "--dist", "loadgroup")))
        if n:
            noops.append(s)
            quicks.append(s2)
            spread.append(s3)
    out["no-op re-run"] = statistics.median(noops)
    out["quick tier"] = statistics.median(quicks)
    out[f"quick tier -n {len(names)}"] = statistics.median(spread)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("GPUBOX_SIM_HOME", "/var/lib/gpubox-fleet-bench")
    server = Server(port=STANDIN_PORT + 42)  # beside a test session's
    env = {**os.environ, **server.env()}
    one_name = [f"{PREFIX}0"]
    many = [f"{PREFIX}{i}" for i in range(1, args.nodes + 1)]
    try:
        for name in one_name + many:
            target.down(name, purge=True)
        one = _measure(one_name, env, args.repeat)
        target.down(one_name[0], purge=True)
        fleet = _measure(many, env, args.repeat)
    finally:
        server.stop()
        for name in one_name + many:
            target.down(name, purge=True)
    cores = os.cpu_count()
    print(f"{'what':24} {'1 node':>9} {f'{args.nodes} nodes':>9} {'ratio':>6}  (target <= 1.5x)")
    for key, single in one.items():
        # the spread run's key names the worker count: compare like with like
        multi = fleet.get(key) or fleet[f"quick tier -n {args.nodes}"]
        ratio = multi / single
        mark = "ok" if ratio <= 1.5 else "over"
        print(f"{key:24} {single:8.2f}s {multi:8.2f}s {ratio:5.2f}x  {mark}")
    print(f"machine: {cores} cores; all nodes share them (see the docstring)")


if __name__ == "__main__":
    main()
