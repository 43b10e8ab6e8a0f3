"""``gpubox demo``: the whole flow on a simulated first-user node, without owning the hardware.

Boots a simulated 4x PG199 node (Debian 13, simulated NVML), deploys to it with the real
``deploy.py`` (Debian's NVIDIA packages, nccl-tests from a local stand-in release because the
real one cannot be downloaded everywhere, the bandwidth tools, gpubox, the clock-lock unit),
reboots it, and runs the quick checks over SSH. The node stays up for you to explore.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gpubox.cli import CliError

ROOT = Path(__file__).resolve().parents[2]
STANDIN_PORT = 38798


def configure(parser):
    parser.add_argument("--name", default="demo", help="simulated node name (default demo)")
    parser.add_argument("--scenario", default="pg199-quad-debian13", help="NVML scenario")
    parser.add_argument("--results", default="results/demo", help="where results are written")


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _run(cmd: list[str], env: dict) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def run(args) -> int:
    from gpubox.sim import standin, target

    if not (ROOT / "deploy.py").is_file():
        raise CliError("gpubox demo runs from a gpubox checkout (deploy.py, inventories/)")
    started = time.monotonic()
    bindir = Path(sys.executable).parent
    _step(f"boot the simulated node {args.name!r} (scenario {args.scenario})")
    try:
        node = target.up(args.name, scenario=args.scenario)
    except target.SimError as exc:
        raise CliError(str(exc)) from None
    server = standin.Server(port=STANDIN_PORT)
    env = {**os.environ, **server.env()}
    try:
        _step(
            "deploy: pyinfra inventories/sim.py deploy.py (first run on a machine: ~2 GB of packages)"
        )
        print(
            "    nccl-tests comes from a local stand-in release (same build interface, no "
            "benchmark code): upstream cannot be downloaded here."
        )
        if _run([str(bindir / "pyinfra"), "-y", "inventories/sim.py", "deploy.py"], env) != 0:
            raise CliError("the deploy failed: see its output above")
    finally:
        server.stop()
    _step(f"reboot {args.name}: the clock lock must come back by itself")
    target.reboot(args.name)
    _step("quick checks over SSH: pytest checks/ -m quick --inventory inventories/sim.py")
    results = Path(args.results)
    rc = _run(
        [
            str(bindir / "pytest"),
            "checks/",
            "-m",
            "quick",
            "--inventory",
            "inventories/sim.py",
            "-p",
            "no:cacheprovider",
            "-q",
            "--results-json",
            str(results / "checks.json"),
            "--junitxml",
            str(results / "checks-junit.xml"),
        ],
        env,
    )
    _step("the node's boot records: gpubox report --inventory inventories/sim.py")
    report_path = _report(node.name, results)
    _step(f"done in {time.monotonic() - started:.0f} s")
    print(f"    results: {results / 'checks.json'} and {results / 'checks-junit.xml'}")
    print(f"    history: gpubox history --inventory inventories/sim.py --limit {node.name}")
    print(f"    log in:  ssh -F {node.ssh_config} {node.name}")
    print(f"    faults:  gpubox sim scenario {node.name} fault-gpu0-x4   (then re-run the checks)")
    print(f"    stop:    gpubox sim down {node.name} --purge")
    print(f"report: {report_path}")
    return rc


def _report(name: str, results: Path) -> Path:
    """The report of the node's boot records (the acceptance unit ran at the reboot)."""
    from gpubox import history, report

    path = results / "report.html" if results.is_absolute() else ROOT / results / "report.html"
    try:
        (doc,) = history.collect(str(ROOT / "inventories/sim.py"), [name], full=True)
    except history.HistoryError as exc:
        raise CliError(f"cannot read the boot records of {name}: {exc}") from None
    print(report.render_terminal(doc), end="")
    report.write(str(path), report.render_html(doc))
    return path
