"""Time to read a full records folder into a history, and to render the report from it.

    uv run python benchmarks/history_report.py [--boots 50]

Writes ``--boots`` records (the retention default: 50) shaped like the simulated PG199 node's
(real NVML snapshots of the simulated library, 54 quick checks, bandwidth figures on every other
boot, a fault every tenth boot) into a temporary folder, then times (median of 5):
  * ``history.local(full=True)``: every record read and diffed with the previous one,
  * ``report.render_html``: the page with all its plots, and its size,
  * ``report.render_terminal``.
Targets: history under 1 s and the page under 1 s for 50 boots; the page under 2 MB.
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpubox import history, judge, records, report
from gpubox.sim import nvml, scenario
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[1]


def probe(name: str, folder: Path) -> dict:
    resolved = scenario.resolve_to_file(name, folder / f"{name}.json")
    env = nvml.environment(resolved, folder / f"state-{name}")
    lib = str(nvml.library_path())
    gpubox = [sys.executable, "-m", "gpubox"]
    subprocess.run(
        [*gpubox, "clocks", "lock", "--mhz", "1140", "--library", lib], env=env, capture_output=True
    )
    out = subprocess.run(
        [*gpubox, "probe", "--json", "--library", lib],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def results(spec: NodeSpec, snap: dict, bench: dict | None) -> dict:
    verdicts = judge.quick(spec, snap) + [judge.clock_unit(spec, True, True)]
    outcome = {"pass": "passed", "warn": "passed", "fail": "failed", "skip": "skipped"}
    checks = [
        {
            "id": f"checks/test_quick.py::test_{v.check}[{spec.host if v.subject == 'node' else v.subject}]",
            "outcome": outcome[v.level],
            "message": v.message,
            "verdict": v.as_dict(),
        }
        for v in verdicts
    ]
    counts: dict[str, int] = {}
    for c in checks:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    host = {"snapshot": snap, "spec": spec.to_data(), **({"bench": bench} if bench else {})}
    return {
        "schema": "gpubox.results/1",
        "counts": counts,
        "hosts": {spec.host: host},
        "checks": checks,
    }


def median(fn, runs: int = 5):
    times, value = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=50)
    args = parser.parse_args()
    home = runpy.run_path(str(ROOT / "inventories/home.py"))["_pg199_node"]
    data = {k: v for k, v in home.items() if not k.startswith("ssh_") and k != "software"}
    spec = NodeSpec.from_data(data, host="node0")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        healthy, fault = probe("pg199-quad-debian13", folder), probe("fault-gpu0-x4", folder)
        runs = folder / "runs"
        bench = {f"{d}[gpu{i}]": 13.1 - i for d in ("h2d", "d2h") for i in range(4)}
        bench.update({f"p2p[gpu{a}-gpu{b}]": 4.0 for a in range(4) for b in range(a + 1, 4)})
        for n in range(1, args.boots + 1):
            doc = results(spec, fault if n % 10 == 0 else healthy, bench if n % 2 else None)
            draft = records.Draft(runs, f"{n:08x}-0000-4000-8000-{n:012x}")
            draft.results_json.write_text(json.dumps(doc))
            draft.commit(
                {
                    "host": "node0",
                    "seq": n,
                    "started": f"2025-11-26T{n // 60:02d}:{n % 60:02d}:00+00:00",
                    "tiers": ["quick"],
                    "counts": doc["counts"],
                    "ok": not doc["counts"].get("failed"),
                }
            )
        t_hist, doc = median(lambda: history.local(str(runs), full=True, spec_path="/nonexistent"))
        t_html, page = median(lambda: report.render_html(doc))
        t_term, _ = median(lambda: report.render_terminal(doc))
    print(
        f"{args.boots} boots: history {t_hist * 1000:.0f} ms, report page {t_html * 1000:.0f} ms "
        f"({len(page) / 1e6:.2f} MB), terminal summary {t_term * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
