"""``gpubox health``: Slurm's health check (``HealthCheckProgram``, or a prolog/epilog).

It judges the node, reads its Slurm state and acts, all within ``--timeout`` seconds (default
``slurm.timeout_s``, 40; Slurm kills a health check at 60):

1. **judge**: a fresh quick tier (an NVML snapshot, taken in a child process with its own
   timeout, judged by :func:`gpubox.judge.quick`), or with ``--source record`` the latest
   acceptance record of this boot (a fresh quick tier when this boot has none). An NVML that
   cannot be loaded or does not answer in time is itself a problem;
2. **read** ``scontrol show node NAME`` (``NAME``: ``--node``, else ``$SLURMD_NODENAME``, else
   the short host name);
3. **decide** (:func:`gpubox.health.decide`) and **act**: ``scontrol update nodename=NAME
   state=drain reason="gpubox: ..."`` or ``state=resume``; a drain that gpubox did not set is
   never lifted.

One line on stdout says what it found and did. Exit status: 0 healthy, 1 unhealthy (a problem
found, whether or not it drained), 2 it could not act (no spec, scontrol failed, out of time).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from gpubox.cli import CliError

NODE_SPEC = "/etc/gpubox/spec.json"
SCONTROL_TIMEOUT_S = 10.0


def configure(parser):
    parser.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")
    parser.add_argument(
        "--node", help="Slurm node name (default: $SLURMD_NODENAME, else the short host name)"
    )
    parser.add_argument(
        "--source",
        choices=("quick", "record"),
        default="quick",
        help="quick: a fresh quick tier (default); record: this boot's acceptance record",
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds before it gives up (default slurm.timeout_s)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what it would do; change nothing in Slurm"
    )
    parser.add_argument("--scontrol", default="scontrol", help="the scontrol program")
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


class Deadline:
    """Seconds left of the run's budget; every child process gets at most what is left."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self, cap: float | None = None) -> float:
        left = max(0.0, self.end - time.monotonic())
        return min(left, cap) if cap is not None else left


def run_child(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``argv``; on timeout kill its whole process group and raise ``TimeoutExpired``."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # a hung NVML call in a grandchild dies with it
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def probe_argv(spec_path: str) -> list[str]:
    """The snapshot, taken by ``gpubox probe`` in a child: a hung driver cannot hang us."""
    return [sys.executable, "-m", "gpubox", "probe", "--json", "--spec", spec_path]


def snapshot(argv: list[str], timeout: float) -> tuple[dict | None, str | None]:
    """(snapshot, None), or (None, why NVML could not be read)."""
    try:
        result = run_child(argv, timeout)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout:.0f} s (a hung driver or GPU)"
    except OSError as exc:
        return None, f"cannot run the probe {argv[0]}: {exc.strerror}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"exit status {result.returncode}"
        return None, why.removeprefix("gpubox probe: ")
    try:
        return json.loads(result.stdout), None
    except ValueError:
        return None, "the probe printed no snapshot"


def quick_problems(spec, spec_path: str, deadline: Deadline, argv: list[str] | None = None):
    """Problems of a fresh quick tier: the snapshot's verdicts, or NVML unreachable."""
    from gpubox import health, judge

    # Leave time to read and update Slurm after the probe.
    left = deadline.left()
    budget = max(1.0, left - min(2 * SCONTROL_TIMEOUT_S, left / 2))
    snap, why = snapshot(argv or probe_argv(spec_path), budget)
    if snap is None:
        return [health.nvml_unreachable(why)]
    return health.from_verdicts(judge.quick(spec, snap), spec.host)


def record_problems(spec, runs_dir: str, boot: str):
    """Problems of this boot's acceptance record; None when this boot has no record."""
    from gpubox import health, records

    mine = [r for r in records.list_records(runs_dir) if r.boot_id == boot]
    if not mine:
        return None
    record = mine[-1]
    if record.meta.get("error") and not record.meta.get("failed"):
        return [health.Problem("acceptance", record.meta["error"])]
    return health.from_results(record.results, spec.host)


def escalated(runs_dir: str) -> list[dict]:
    """The boot records' escalations (gpubox.history); none when there are no records."""
    from gpubox import history, records

    try:
        return history.escalations(records.list_records(runs_dir))
    except (OSError, ValueError):
        return []


def node_name(given: str | None) -> str:
    return given or os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]


def scontrol(args, deadline: Deadline, *words: str) -> str:
    argv = [args.scontrol, *words]
    timeout = deadline.left(SCONTROL_TIMEOUT_S)
    if timeout <= 0:
        raise CliError(f"out of time ({deadline.seconds:g} s) before `{' '.join(argv)}`")
    try:
        result = run_child(argv, timeout)
    except subprocess.TimeoutExpired:
        raise CliError(
            f"`{' '.join(argv)}` did not answer within {timeout:.0f} s: is slurmctld reachable?"
        ) from None
    except OSError as exc:
        raise CliError(
            f"cannot run {args.scontrol}: {exc.strerror} (is Slurm installed?)"
        ) from None
    if result.returncode != 0:
        err = " ".join((result.stderr or result.stdout).split()) or f"exit {result.returncode}"
        raise CliError(f"`{' '.join(argv)}` failed: {err}")
    return result.stdout


def run(args) -> int:
    from gpubox import health, records
    from gpubox.cli import load_node_spec

    started = time.monotonic()
    spec = load_node_spec(args.spec, default_host=socket.gethostname())
    deadline = Deadline(args.timeout or spec.slurm.timeout_s)
    # The backstop: whatever blocks (a stuck write, a hung import), Slurm is never held up.
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(deadline.seconds) + 2)  # after every child's own timeout
    name = node_name(args.node)
    problems = None
    source = "quick tier"
    if args.source == "record":
        try:
            problems = record_problems(spec, spec.acceptance.runs_dir, records.boot_id())
            source = "acceptance record"
        except OSError as exc:
            raise CliError(f"cannot read this boot's records: {exc}") from None
    if problems is None:
        source = "quick tier"
        problems = quick_problems(spec, args.spec, deadline)
    problems, notes = health.escalation_notes(problems, escalated(spec.acceptance.runs_dir))
    text = scontrol(args, deadline, "show", "node", name)
    try:
        node = health.parse_node(text, name)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    action = health.decide(problems, node, notes)
    if not args.dry_run:
        if action.kind == health.DRAIN:
            scontrol(args, deadline, "update", f"nodename={name}", "state=drain",
                     f"reason={action.reason}")  # fmt: skip
        elif action.kind == health.RESUME:
            scontrol(args, deadline, "update", f"nodename={name}", "state=resume")
    signal.alarm(0)
    elapsed = time.monotonic() - started
    did = {"drain": "drained", "resume": "resumed", "none": "no change"}[action.kind]
    if args.dry_run and action.kind != health.NONE:
        did = f"would be {did} (dry run)"
    if args.json:
        doc = {
            "node": name,
            "source": source,
            "problems": [p.__dict__ for p in problems],
            "state": node.state,
            "reason": node.reason,
            "action": action.kind,
            "new_reason": action.reason,
            "why": action.why,
            "dry_run": args.dry_run,
            "seconds": round(elapsed, 3),
        }
        print(json.dumps(doc, indent=2))
    else:
        verdict = f"{len(problems)} problem(s)" if problems else "healthy"
        detail = f": {action.reason}" if action.reason else ""
        print(f"{name}: {verdict} ({source}, {elapsed:.1f} s); {did}: {action.why}{detail}")
    return 1 if problems else 0


def _alarm(signum, frame):
    print("gpubox health: out of time: stopped before Slurm's own limit", file=sys.stderr)
    os._exit(2)
