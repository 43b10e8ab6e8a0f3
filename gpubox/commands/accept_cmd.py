"""``gpubox accept``: the boot-time acceptance run (what ``gpubox-acceptance.service`` runs).

Runs ``pytest`` on the node's checks (``{install_dir}/checks``) with ``-m quick`` (``quick or
bandwidth`` when ``acceptance.bandwidth`` is on), its JUnit XML, JSON results and output going
into a new record folder for this boot (see :mod:`gpubox.records`); then publishes the record,
posts a failed run to the webhook (:mod:`gpubox.notify`), writes the Prometheus textfile
(:mod:`gpubox.metrics`) when asked, and prunes old records. The exit status is pytest's (0: all
passed, 1: a check failed); everything after the checks only logs its problems.

Paths on the command line are taken from the folder ``gpubox accept`` was started in (pytest
itself runs in the install folder). A checks folder that would run without gpubox's pytest
plugin is refused before anything is written (see :func:`check_folder`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gpubox.cli import CliError

NODE_SPEC = "/etc/gpubox/spec.json"
QUICK_TIMEOUT_S = 300
BANDWIDTH_TIMEOUT_S = 2400


def configure(parser):
    parser.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")
    parser.add_argument("--checks", help="checks folder (default {install_dir}/checks)")
    parser.add_argument("--runs-dir", help="records folder (default acceptance.runs_dir)")
    parser.add_argument("--keep", type=int, help="records kept (default acceptance.keep_boots)")
    tier = parser.add_mutually_exclusive_group()
    tier.add_argument(
        "--bandwidth", action="store_true", default=None, help="run the bandwidth tier too"
    )
    tier.add_argument(
        "--no-bandwidth", dest="bandwidth", action="store_false", help="quick tier only"
    )
    parser.add_argument("--webhook-file", help="webhook URL file (default acceptance.webhook_file)")
    parser.add_argument("--no-notify", action="store_true", help="post nothing")
    parser.add_argument("--outbox", help="queue of undelivered messages (default: beside runs)")
    parser.add_argument(
        "--metrics-dir", help="write gpubox.prom there (default acceptance.metrics_dir)"
    )
    parser.add_argument(
        "--timeout", type=float, help="seconds before the checks are stopped (default 300/2400)"
    )
    parser.add_argument(
        "--boot-id", help="record under this id instead of this boot's (tests, replays)"
    )


log = logging.getLogger(__name__)  # `journalctl -p warning -u gpubox-acceptance`: see gpubox.log


def _load_spec(path: str):
    from gpubox.cli import load_node_spec

    return load_node_spec(path, default_host=socket.gethostname())


# Options naming files or folders: made absolute before anything changes folder (pytest runs
# in the install folder).
_PATH_OPTIONS = ("spec", "checks", "runs_dir", "webhook_file", "outbox", "metrics_dir")
_LOADS_PLUGIN = re.compile(
    r"^\s*(?:from\s+gpubox\.checks\s+import|import\s+gpubox\.checks\b"
    r"|from\s+gpubox\s+import\s+(?:.*,\s*)?checks\b)|^\s*pytest_plugins\s*=.*gpubox\.checks",
    re.MULTILINE,
)


def _resolve_paths(args) -> None:
    for name in _PATH_OPTIONS:
        value = getattr(args, name, None)
        if value:
            setattr(args, name, os.path.abspath(value))


def _plugin_autoloaded() -> bool:
    """gpubox's plugin is a ``pytest11`` entry point of this Python (and autoload is on)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    from importlib.metadata import entry_points

    return any(
        ep.value.split(":")[0].strip() == "gpubox.checks" for ep in entry_points(group="pytest11")
    )


def check_folder(folder: str, install_dir: str) -> None:
    """Refuse a checks folder pytest would run without gpubox's plugin (it would then reject
    ``--node-spec``/``--results-json`` and the record would say only that no checks ran).

    The plugin counts as loaded when the folder's ``conftest.py`` imports ``gpubox.checks`` (or
    names it in ``pytest_plugins``), or when gpubox registers it as a ``pytest11`` entry point.
    """
    deployed = f"{install_dir}/checks"
    if not os.path.isdir(folder):
        raise CliError(f"no checks folder {folder}: deploy the node first (it installs {deployed})")
    tests = [p for p in Path(folder).rglob("*.py") if p.name.startswith("test_")]
    if not tests:
        raise CliError(
            f"checks folder {folder}: no test files (test_*.py) in it: give the folder the "
            f"deploy installs ({deployed}) or the repository's checks/"
        )
    conftest = Path(folder) / "conftest.py"
    try:
        text = conftest.read_text(errors="replace")
    except FileNotFoundError:
        text = None
    except OSError as exc:
        raise CliError(f"checks folder {folder}: cannot read {conftest}: {exc}") from None
    if (text is not None and _LOADS_PLUGIN.search(text)) or _plugin_autoloaded():
        return
    found = "has no conftest.py" if text is None else "has a conftest.py that does not load it"
    raise CliError(
        f"checks folder {folder}: {found}: gpubox's pytest plugin (gpubox.checks) would not be "
        "loaded, so pytest would refuse --node-spec and --results-json; expected a conftest.py "
        f"with `from gpubox.checks import *` (as in {deployed} and the repository's checks/)"
    )


def run(args) -> int:
    from gpubox import records

    _resolve_paths(args)
    spec = _load_spec(args.spec)
    acc = spec.acceptance
    runs_dir = args.runs_dir or acc.runs_dir
    bandwidth = acc.bandwidth if args.bandwidth is None else args.bandwidth
    keep = args.keep if args.keep is not None else acc.keep_boots
    if keep < 1:
        raise CliError("--keep: at least 1")
    checks = args.checks or f"{spec.software.install_dir}/checks"
    check_folder(checks, spec.software.install_dir)
    try:
        boot = args.boot_id or records.boot_id()
    except OSError as exc:
        raise CliError(f"cannot read this boot's id ({records.BOOT_ID_FILE}): {exc}") from None
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}", boot):
        raise CliError(f"boot id {boot!r}: expected letters, digits, '-' and '_' only")
    timeout = args.timeout or (BANDWIDTH_TIMEOUT_S if bandwidth else QUICK_TIMEOUT_S)
    with records.locked(runs_dir):
        for name in records.clean(runs_dir):
            log.warning("removed %s (left by an interrupted run)", name)
        earlier = [r for r in records.list_records(runs_dir) if r.boot_id != boot]
        same = [r for r in records.list_records(runs_dir) if r.boot_id == boot]
        seq = (
            same[0].meta.get("seq")
            if same and same[0].meta.get("seq")
            else max((r.meta.get("seq") or 0 for r in earlier), default=0) + 1
        )
        draft = records.Draft(runs_dir, boot)
        started = _now()
        marker = "quick or bandwidth" if bandwidth else "quick"
        rc, timed_out, elapsed = _pytest(spec, args.spec, checks, marker, draft, timeout)
        meta = _meta(spec, draft, started, rc, timed_out, elapsed, bandwidth, seq)
        _collect_bench_logs(draft)
        record = draft.commit(meta)
        counts = meta["counts"]
        log.log(
            logging.INFO if meta["ok"] else logging.WARNING,
            "boot %s: %s (%s); record %s",
            boot,
            "PASS" if meta["ok"] else "FAIL",
            ", ".join(f"{v} {k}" for k, v in counts.items()) or "no checks ran",
            record.path,
        )
        previous = earlier[-1] if earlier else None
        escalated = _escalated([*earlier, record])
        for name in records.prune(runs_dir, keep):
            log.info("pruned the record of boot %s (keeping %d)", name, keep)
    _after(args, spec, record, previous, runs_dir, escalated)
    return rc if rc in (0, 1) else (1 if not meta["ok"] else rc)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _pytest(spec, spec_path, checks, marker, draft, timeout):
    """Run the checks into the draft folder; (exit status, timed out, seconds)."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        checks,
        "-m",
        marker,
        "-p",
        "no:cacheprovider",
        "-q",
        "--node-spec",
        spec_path,
        "--results-json",
        str(draft.results_json),
        "--junitxml",
        str(draft.junit_xml),
    ]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    start = time.monotonic()
    timed_out = False
    with open(draft.logs / "pytest.log", "wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=spec.software.install_dir if os.path.isdir(spec.software.install_dir) else "/",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a timeout stops pytest and every tool it started
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                rc = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
            log.write(f"\ngpubox accept: stopped after {timeout:g} s\n".encode())
    return rc, timed_out, time.monotonic() - start


def _meta(spec, draft, started, rc, timed_out, elapsed, bandwidth, seq) -> dict:
    from gpubox import __version__

    results = None
    with contextlib.suppress(OSError, ValueError):
        results = json.loads(draft.results_json.read_text())
    counts = (results or {}).get("counts") or {}
    failed = [
        c["id"].split("::")[-1]
        for c in (results or {}).get("checks", [])
        if c.get("outcome") == "failed"
    ]
    error = None
    if timed_out:
        error = f"the checks were stopped after {elapsed:.0f} s (timeout)"
    elif results is None:
        tail = (draft.logs / "pytest.log").read_text(errors="replace").strip().splitlines()[-3:]
        error = f"pytest exited {rc} and wrote no results: {' | '.join(tail)}"
    elif rc not in (0, 1):
        why = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no checks collected"}
        error = f"pytest exited {rc} ({why.get(rc, 'unexpected exit status')})"
    return {
        "host": spec.host,
        "seq": seq,
        "started": started,
        "finished": _now(),
        "duration_s": round(elapsed, 2),
        "gpubox_version": __version__,
        "tiers": ["quick", "bandwidth"] if bandwidth else ["quick"],
        "exit_status": rc,
        "ok": rc == 0 and error is None and not failed,
        "counts": counts,
        "failed": failed,
        "error": error,
        "uptime_s": _uptime(),
        "baseline": _baseline(spec),
        "files": {"results": "results.json", "junit": "junit.xml", "logs": "logs/"},
    }


def _uptime() -> float | None:
    try:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _baseline(spec) -> dict | None:
    """The calibrated medians and floors in force for this host (``bench.baseline``)."""
    bench = getattr(spec, "bench", None)
    path = getattr(bench, "baseline", None) or "/etc/gpubox/baseline.json"
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"path": path, "error": str(exc)}
    try:
        from gpubox.baseline import Baseline

        b = Baseline.from_text(text, spec.host, path)
    except ImportError:
        return {"path": path, "error": "this gpubox cannot read baselines"}
    except ValueError as exc:
        return {"path": path, "error": str(exc)}
    return {
        "path": path,
        "created": b.created,
        "margin": b.margin,
        "medians": {k: v.get("median") for k, v in b.measurements.items()},
        "floors": {k: v.get("floor") for k, v in b.measurements.items()},
    }


def _collect_bench_logs(draft) -> None:
    """The raw benchmark logs the bench document points at (``runs[].log``), copied into
    ``logs/bench/`` so the record keeps them after the bench log folder is pruned."""
    try:
        results = json.loads(draft.results_json.read_text())
    except (OSError, ValueError):
        return
    target = draft.logs / "bench"

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v, key)
        elif isinstance(value, str) and key in ("log", "log_path", "raw_log", "output_file"):
            yield value

    for host in (results.get("hosts") or {}).values():
        for path in walk((host or {}).get("bench")):
            source = Path(path)
            if source.is_file() and not str(source).startswith(str(draft.path)):
                target.mkdir(exist_ok=True)
                shutil.copy2(source, target / source.name)


def _escalated(found) -> list[dict]:
    """This boot's escalations (gpubox.history): logged as errors, for ``journalctl -p err``."""
    from gpubox import history

    escalated = history.escalations(found)
    for e in escalated:
        log.error("%s", e["text"])
    return escalated


def _after(args, spec, record, previous, runs_dir, escalated=()) -> None:
    """Notification and metrics: logged, never raised (the record is already safe)."""
    from gpubox import history, metrics, notify

    acc = spec.acceptance
    if not args.no_notify:
        webhook = args.webhook_file or acc.webhook_file
        outbox = args.outbox or str(Path(runs_dir).parent / "outbox")
        try:
            notify.flush(webhook, outbox)
            if not record.meta.get("ok"):
                notify.deliver(_message(record, previous, history, escalated), webhook, outbox)
        except Exception as exc:  # never let a notification problem fail the boot's record
            log.error("notification failed unexpectedly: %r", exc)
    metrics_dir = args.metrics_dir or acc.metrics_dir
    if metrics_dir:
        try:
            path = metrics.write(metrics_dir, record)
            log.info("metrics: %s", path)
        except Exception as exc:
            log.error("metrics: cannot write to %s: %s", metrics_dir, exc)


def _message(record, previous, history, escalated=()) -> str:
    from gpubox.records import short_boot_id

    meta = record.meta
    counts = history.counts_text(meta.get("counts") or {})
    lines = [
        f"**gpubox: {meta.get('host')} failed its boot acceptance** "
        f"(boot {short_boot_id(record.boot_id)}, {history.when(meta.get('finished'))} UTC): {counts}"
    ]
    if meta.get("error"):
        lines.append(f"error: {meta['error']}")
    for e in escalated:  # first: the line that says stop rebooting
        lines.append(f"**{e['text']}**")
    changes = history.diff(previous, record) + history.baseline_changes(record)
    if changes:
        lines.append("changes: " + "; ".join(c["text"] for c in changes[:10]))
    failed = meta.get("failed") or []
    if failed:
        more = f" (+{len(failed) - 12} more)" if len(failed) > 12 else ""
        lines.append("failed: " + ", ".join(failed[:12]) + more)
    lines.append(f"record: {record.path}")
    return "\n".join(lines)
