"""Issue 15's table, re-measured: each row beside its reference, as ratios, in one run.

    uv run python benchmarks/speed.py [--node NAME] [--runs 5]     # root, for the simulated rows

Whole processes, as a new user runs them; a warm-up run first, then ``--runs`` runs with the
command and its reference interleaved (so a busy machine slows both), medians printed.

* On a GPU machine (``nvidia-smi`` on PATH): ``gpubox probe --json`` against ``nvidia-smi -q``
  (and the NVML snapshot's own ``probe_ms``); where gpubox is deployed here (``/etc/gpubox``),
  the quick tier on this node against a bare ``python -c pass`` of the node's venv.
* Against a deployed simulated node (``--node``, default the first running target of
  ``$GPUBOX_SIM_HOME``; deploy it first, e.g. ``gpubox demo`` or the integration tests with
  ``GPUBOX_TEST_KEEP_NODE``): the probe over SSH minus a bare ``ssh true``; the quick tier on the
  node (timed on the node) against the venv's bare Python; the quick tier from here over SSH
  against ``ssh true``; a no-op re-run of ``deploy.py`` against a minimal pyinfra deploy (one
  no-op operation) of the same host.

Targets (issue 15): probe on an H200 below ``nvidia-smi -q`` and <= 100 ms; probe over SSH minus
``ssh true`` <= 60 ms; quick tier on a simulated node <= 0.35 s, on the H200 image <= 1 s; from
the workstation <= 1.0 s; no-op deploy <= 3 s with 0 changes. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NODE_VENV = "/opt/gpubox/venv"
NODE_CHECKS = "/opt/gpubox/checks"
ROWS = ("probe", "quick-node", "quick-ssh", "deploy")


def run_once(cmd: list[str], env=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, result


def interleaved(cmds: dict[str, list[str]], runs: int, env=None) -> dict[str, float]:
    """Median seconds of each command; a warm-up run of each first, then rounds of all."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for name, cmd in cmds.items():
        _, result = run_once(cmd, env)
        if result.returncode not in (0, 1):
            raise SystemExit(
                f"{name}: {shlex.join(cmd)} exited {result.returncode}:\n{result.stderr[-1500:]}"
            )
    for _ in range(runs):
        for name, cmd in cmds.items():
            times[name].append(run_once(cmd, env)[0])
    return {k: statistics.median(v) for k, v in times.items()}


def on_node_ms(ssh: list[str], cmds: dict[str, str], runs: int) -> dict[str, float]:
    """Median ms of shell commands timed on the node itself (no SSH in the figure)."""
    loop = []
    for name, cmd in cmds.items():
        loop.append(
            f"s=$(date +%s%N); {cmd} >/dev/null 2>&1; e=$(date +%s%N); "
            f"echo {name} $(( (e - s) / 1000 ))"
        )
    script = f"for i in $(seq 0 {runs}); do {'; '.join(loop)}; done"
    out = subprocess.run([*ssh, script], capture_output=True, text=True, check=True).stdout
    samples: dict[str, list[float]] = {k: [] for k in cmds}
    for line in out.split("\n"):
        if line.strip():
            name, us = line.split()
            samples[name].append(int(us) / 1000)
    return {k: statistics.median(v[1:]) for k, v in samples.items()}  # v[0]: the warm-up


def row(what: str, where: str, value: str, ref: str, ratio: str, target: str) -> None:
    print(f"{what:<34} {where:<26} {value:>12} {ref:>30} {ratio:>8}  {target}")


def gpu_rows(runs: int) -> None:
    if not shutil.which("nvidia-smi"):
        row("gpubox probe --json", "this machine", "-", "no nvidia-smi here", "-", "skipped")
        return
    # The deployed node's own gpubox (its venv has the deploy's bytecode), else this checkout's.
    deployed = Path(NODE_VENV, "bin", "gpubox")
    gpubox = [str(deployed if deployed.is_file() else BIN / "gpubox"), "probe", "--json"]
    _, doc = run_once(gpubox)
    med = interleaved({"probe": gpubox, "smi": ["nvidia-smi", "-q"]}, runs)
    snap = json.loads(doc.stdout).get("probe_ms") if doc.returncode == 0 else None
    row(
        "gpubox probe --json",
        f"this machine (NVML {snap} ms)",
        f"{med['probe'] * 1000:.0f} ms",
        f"nvidia-smi -q {med['smi'] * 1000:.0f} ms",
        f"{med['probe'] / med['smi']:.2f}x",
        "< nvidia-smi -q and <= 100 ms",
    )
    if Path("/etc/gpubox/spec.json").is_file() and Path(NODE_VENV, "bin", "pytest").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            quick = [
                f"{NODE_VENV}/bin/pytest",
                NODE_CHECKS,
                "-m",
                "quick",
                "-q",
                "-p",
                "no:cacheprovider",
                "--results-json",
                f"{tmp}/r.json",
                "--junitxml",
                f"{tmp}/r.xml",
            ]
            med = interleaved(
                {"quick": quick, "py": [f"{NODE_VENV}/bin/python", "-c", "pass"]}, runs
            )
        row(
            "quick tier on the node",
            "this machine",
            f"{med['quick']:.2f} s",
            f"bare python {med['py'] * 1000:.0f} ms",
            f"{med['quick'] / med['py']:.1f}x",
            "<= 1 s (H200 image)",
        )


def sim_rows(name: str | None, runs: int, rows: set[str]) -> None:
    from gpubox.sim import target

    running = [t for t in target.list_targets() if t.running]
    node = next((t for t in running if name in (None, t.name)), None)
    if node is None:
        row("simulated rows", "-", "-", f"no running node {name or ''}", "-", "skipped")
        return
    ssh = node.ssh_command()
    if "probe" in rows:
        probe_row(node, ssh, runs)
    if "quick-node" in rows:
        quick_node_row(node, ssh, runs)
    if rows & {"quick-ssh", "deploy"}:
        controller_rows(node, ssh, runs, rows)


def probe_row(node, ssh: list[str], runs: int) -> None:
    probe = f"{NODE_VENV}/bin/gpubox probe --json"
    med = interleaved({"probe": [*ssh, probe], "true": [*ssh, "true"]}, runs)
    extra = med["probe"] - med["true"]
    row(
        "gpubox probe --json, over SSH",
        f"sim {node.name}",
        f"{extra * 1000:.0f} ms",
        f"ssh true {med['true'] * 1000:.0f} ms",
        f"{med['probe'] / med['true']:.2f}x",
        "<= 60 ms beyond ssh true",
    )


def quick_node_row(node, ssh: list[str], runs: int) -> None:
    quick = (
        f"cd /tmp && {NODE_VENV}/bin/pytest {NODE_CHECKS} -m quick -q -p no:cacheprovider "
        "--results-json /tmp/speed-bench.json --junitxml /tmp/speed-bench.xml"
    )
    on = on_node_ms(ssh, {"quick": quick, "py": f"{NODE_VENV}/bin/python -c pass"}, runs)
    row(
        "quick tier on the node",
        f"sim {node.name} (timed there)",
        f"{on['quick'] / 1000:.2f} s",
        f"bare python {on['py']:.0f} ms",
        f"{on['quick'] / on['py']:.1f}x",
        "<= 0.35 s",
    )


def controller_rows(node, ssh: list[str], runs: int, rows: set[str]) -> None:
    from gpubox.sim.standin import Server
    from gpubox.sim.testing import STANDIN_PORT

    server = Server(port=STANDIN_PORT)  # the deploy's spec names this URL: the tests' port
    env = {**os.environ, **server.env()}
    try:
        if "quick-ssh" in rows:
            quick_ssh_row(node, ssh, runs, env)
        if "deploy" in rows:
            deploy_row(node, runs, env)
    finally:
        server.stop()


def quick_ssh_row(node, ssh: list[str], runs: int, env: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checks = [
            str(BIN / "pytest"),
            "checks/",
            "-m",
            "quick",
            "--inventory",
            "inventories/sim.py",
            "--limit",
            node.name,
            "-q",
            "-p",
            "no:cacheprovider",
            "--results-json",
            f"{tmp}/r.json",
            "--junitxml",
            f"{tmp}/r.xml",
        ]
        med = interleaved({"quick": checks, "true": [*ssh, "true"]}, runs, env)
    row(
        "quick tier over SSH",
        f"here -> sim {node.name}",
        f"{med['quick']:.2f} s",
        f"ssh true {med['true'] * 1000:.0f} ms",
        f"{med['quick'] / med['true']:.1f}x",
        "<= 1.0 s",
    )


def deploy_row(node, runs: int, env: dict) -> None:
    pyinfra = [str(BIN / "pyinfra"), "-y", "inventories/sim.py", "--limit", node.name]
    deploy = [*pyinfra, "deploy.py"]
    minimal = [*pyinfra, "files.directory", "path=/tmp"]
    _, check = run_once([*deploy, "--json"], env)
    changed = _changed(check.stdout)
    med = interleaved({"deploy": deploy, "minimal": minimal}, runs, env)
    row(
        "no-op re-run of deploy.py",
        f"sim {node.name} ({changed} changed)",
        f"{med['deploy']:.2f} s",
        f"1-op pyinfra deploy {med['minimal']:.2f} s",
        f"{med['deploy'] / med['minimal']:.1f}x",
        "<= 3 s, 0 changes",
    )


def _changed(stdout: str) -> str:
    try:
        start = stdout.index('{"plan"')
        doc, _ = json.JSONDecoder().raw_decode(stdout[start:])
        return str(sum(1 for op in doc["results"]["operations"] if op["success"]))
    except (ValueError, KeyError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", help="simulated node to measure (default: the first running)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-sim", action="store_true", help="only the GPU machine's rows")
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"the simulated rows to measure, comma-separated (default: all of {','.join(ROWS)})",
    )
    args = parser.parse_args()
    print(f"medians of {args.runs} runs after a warm-up; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    row("what", "where", "now", "reference", "ratio", "target")
    gpu_rows(args.runs)
    if not args.no_sim:
        sim_rows(args.node, args.runs, set(args.rows.split(",")))


if __name__ == "__main__":
    main()
