"""The pytest plugin behind ``checks/``: nodes from an inventory, one snapshot per node, verdicts.

Installed with gpubox, it is loaded through its ``pytest11`` entry point (``gpubox.checks``;
``-p gpubox.checks`` where plugin autoloading is off, ``-p no:gpubox.checks`` to leave it out).
What it adds to pytest:

* ``--inventory FILE`` (a pyinfra inventory; without it, the node pytest runs on, with the spec
  the deploy wrote to ``/etc/gpubox/spec.json``), ``--limit HOST`` (as pyinfra's), ``--hosts``
  (testinfra's: nodes by host spec, each checked against the spec its deploy wrote),
  ``--results-json FILE``, ``--gpubox-bandwidth`` / ``--gpubox-stress`` (the long tiers, also
  asked for by naming them in ``-m``), ``--gpubox-progress SECONDS``, ``--gpubox-timeout
  SECONDS``;
* fixtures ``node`` (one per inventory host, session-scoped snapshot), ``gpu`` and ``pair``
  parametrised from that host's spec, with ids that read like ``test_p2p[gpu0-gpu1]``
  (``test_p2p[home-gpu0-gpu1]`` when the inventory has several hosts); ``allreduce`` (one per
  ``floors.allreduce`` entry: ``test_allreduce[gpu0+gpu1]``), ``bench`` (the node's ``gpubox
  bench run --json`` document, measured once per host and session, only when a bandwidth check
  runs), ``burn`` and ``baseline``; and, in a checks folder whose ``conftest.py`` imports it,
  ``host`` (:mod:`gpubox.node_host`): the node under test;
* :func:`check`, which turns a :class:`gpubox.judge.Verdict` into pass / skip / fail (``warn``
  passes with a :class:`GpuboxWarning`);
* a JSON results file (every host's spec and snapshot, every check's outcome and message) and a
  JUnit XML file (each check's level, expected and found as properties), written by every run
  that checks nodes (``results/`` unless told otherwise), not by ``--collect-only``.

**Tiers.** ``pytest checks/`` runs the quick tier (and any check of your own). The bandwidth
tier (minutes) and the stress tier (minutes of full load) run only when asked: ``-m bandwidth``,
``-m stress`` (any ``-m`` expression that names them) or ``--gpubox-bandwidth`` /
``--gpubox-stress``. Long tiers print a start line with their expected duration and a progress
line every ``--gpubox-progress`` seconds (30).

**Reaching nodes.** Over SSH the commands run on the node (``/opt/gpubox/venv/bin/gpubox probe
--json``, installed by the deploy) through OpenSSH, with host keys verified as the deploy verifies
them (:mod:`gpubox.remote`); on the node itself they run with the same Python as pytest. Both are
the same code, so the two places give the same verdicts. Every command has a timeout
(:data:`COMMAND_TIMEOUT_S`, ``--gpubox-timeout``; the bench and burn ones derived from the spec;
over SSH the node stops the command too, with ``timeout``). A node that cannot be reached fails each of its checks with one line, the same reason,
found once. Hosts can be checked in parallel: ``-n auto --dist loadgroup`` (each host's tests stay
on one worker, so each node is probed once).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpubox import judge, remote
from gpubox.layout import CLOCK_UNIT, NODE_SPEC, VENV_GPUBOX
from gpubox.manifest import MANIFEST
from gpubox.spec import NodeSpec, gpu_id, pair_id

__all__ = ["CLOCK_UNIT", "NODE_SPEC", "GpuboxWarning", "Node", "NodeError", "check", "load_nodes"]

REMOTE_GPUBOX = VENV_GPUBOX
# An NVML snapshot takes well under a second; a GPU that stops answering makes NVML slow (seconds
# per call), a hung driver never returns: 120 s tells the two apart. Also systemctl, dpkg-query,
# reading a file. --gpubox-timeout changes it.
COMMAND_TIMEOUT_S = 120.0
BENCH_MARGIN_S = 120.0  # on top of bench.timeout_s per tool run
BURN_MARGIN_S = 60.0  # on top of the burn's own limit (stress.duration_s + 130 s)
PROGRESS_EVERY_S = 30.0
TIERS = ("quick", "bandwidth", "stress")
OPT_IN = {"bandwidth": "minutes of benchmarks", "stress": "minutes of full load"}

_DOCS = pytest.StashKey[dict]()  # item -> what the results file keeps of it (not JUnit)


class NodeError(remote.RemoteError):
    """A node could not be reached or probed: one line naming the host and what failed."""


@dataclass
class Node:
    """One host under test: its spec, its connection, and what was measured on it (once each).

    Three documents come from gpubox itself on the node, each run at most once per session and
    then cached (a failure too, so later checks fail fast with the same cause): the NVML snapshot
    (``gpubox probe``), the bandwidth measurements (``gpubox bench run``) and the burn
    (``gpubox burn``). A node that cannot be reached is tried once: every later command fails at
    once with the same reason.
    """

    name: str
    spec: NodeSpec
    conn: remote.Connection
    remote: bool
    node_spec: str = NODE_SPEC  # the spec file the local commands read (library override)
    say: Callable[[str], None] | None = field(default=None, repr=False)  # progress lines
    progress_every: float = PROGRESS_EVERY_S
    timeout: float = COMMAND_TIMEOUT_S  # the probe's and the short commands'
    _docs: dict = field(default_factory=dict, repr=False)  # what -> document or NodeError
    _baseline: Any = field(default=False, repr=False)  # False: not loaded yet
    _unreachable: NodeError | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ahead: dict = field(default_factory=dict, repr=False)  # command -> result fetched ahead
    _early: dict = field(default_factory=dict, repr=False)  # command -> _Early, started ahead
    _batch: Any = field(default=None, repr=False)  # the quick tier's (script, parse), built once

    @property
    def host(self):
        """The pytest-testinfra host (``local://`` on the node itself); commands timed."""
        return self.conn.host

    # ---- commands ------------------------------------------------------------------------------

    def run(self, command: str, timeout: float | None = None, progress=None):
        """Run ``command`` on the node (testinfra's result); :class:`NodeError` when the node
        cannot be reached (remembered: later calls fail at once) or the command times out."""
        if self._unreachable is not None:
            raise self._unreachable
        ahead = self._ahead.pop(command, None)  # taken in the snapshot's round trip
        if ahead is not None:
            return ahead
        try:
            return self._call(command, timeout or self.timeout, progress)
        except remote.CommandTimeout as exc:
            raise NodeError(str(exc)) from None
        except remote.RemoteError as exc:
            self._unreachable = NodeError(str(exc))
            raise self._unreachable from None

    def _call(self, command: str, timeout: float, progress=None):
        """``conn.run``, or the outcome of the same command started ahead (:meth:`start_snapshot`)."""
        early = self._early.pop(command, None)
        if early is not None:
            return early.outcome()
        return self.conn.run(command, timeout, progress, self.progress_every)

    def ensure_reachable(self) -> None:
        """Raise the reason this node cannot be reached, trying once if nothing was run yet."""
        if self._unreachable is not None:
            raise self._unreachable
        if self.remote and not self._docs:
            self.run("true")

    def read_file(self, path: str, timeout: float | None = None) -> str | None:
        """The file's text, or None when it does not exist (one command)."""
        if self._unreachable is not None:
            raise self._unreachable
        ahead = self._ahead.pop(read_file_command(path), None)
        if ahead is not None:
            return file_text(self.name, path, ahead)
        try:
            result = self._call(read_file_command(path), timeout or self.timeout)
            return file_text(self.conn.name, path, result)
        except remote.CommandTimeout as exc:
            raise NodeError(str(exc)) from None
        except NodeError:
            raise
        except remote.RemoteError as exc:
            self._unreachable = NodeError(str(exc))
            raise self._unreachable from None

    def cached(self, what: str) -> dict | None:
        """A document already taken this session (``snapshot``, ``bench``, ``burn``), or None."""
        doc = self._docs.get(what)
        return doc if isinstance(doc, dict) else None

    def _once(self, what: str, produce) -> dict:
        with self._lock:
            if what not in self._docs:
                try:
                    self._docs[what] = produce()
                except NodeError as exc:
                    self._docs[what] = exc
            doc = self._docs[what]
        if isinstance(doc, NodeError):
            raise doc
        return doc

    def gpubox_command(self, args: str, timeout: float | None = None) -> str:
        """``gpubox ARGS`` as it runs on the node: its venv over SSH (stopped there by coreutils'
        ``timeout`` a little before ``timeout``, so nothing hangs on when SSH gives up), this
        Python locally."""
        if self.remote:
            gpubox = f"{REMOTE_GPUBOX.format(install_dir=self.spec.software.install_dir)} {args}"
            if timeout is None:
                return gpubox
            return f"timeout --kill-after=10 {max(1, int(timeout) - 15)} {gpubox}"
        return (
            f"{shlex.quote(sys.executable)} -m gpubox {args} --spec {shlex.quote(self.node_spec)}"
        )

    def _run_json(
        self,
        args: str,
        doing: str,
        timeout: float,
        ok: tuple[int, ...] = (0,),
        tier: str | None = None,
        expected: str = "",
    ) -> dict:
        """Run ``gpubox ARGS`` on the node and return the JSON document it prints.

        ``tier``: a long run, announced with ``expected`` (its duration) and then reported every
        ``progress_every`` seconds with the last line it printed on stderr.
        """
        cmd = self.gpubox_command(args, timeout)
        progress = None
        if tier and self.say:
            self.say(f"{self.name}: {tier} started: {expected}; stopped after {timeout:.0f} s")
            say = self.say

            def progress(elapsed: float, line: str) -> None:
                say(f"{self.name}: {tier}, {elapsed:.0f} s: {line.strip() or '(no output yet)'}")

        started = time.monotonic()
        try:
            result = self.run(cmd, timeout, progress)
        except NodeError as exc:
            if self._unreachable is not None:
                raise
            raise NodeError(f"{exc} (while trying to {doing})") from None
        if tier and self.say:
            self.say(f"{self.name}: {tier} finished in {time.monotonic() - started:.0f} s")
        if self.remote and result.rc in (124, 137):  # coreutils' timeout stopped it on the node
            raise NodeError(
                f"{self.name}: `{cmd}` ran past its timeout on the node and was stopped there"
            )
        if result.rc not in ok or not result.stdout.lstrip().startswith("{"):
            hint = ""
            if result.rc == 127 or "No such file" in result.stderr:
                hint = ": gpubox is not installed on the node; run the deploy first"
            why = (result.stderr.strip().splitlines() or [""])[-1][-500:]
            raise NodeError(f"{self.name}: `{cmd}` exited {result.rc}{hint}: {why}")
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise NodeError(
                f"{self.name}: `{cmd}` printed no JSON: {result.stdout[:200]!r}"
            ) from None

    # ---- the quick tier: one NVML snapshot ----------------------------------------------------

    def probe_command(self) -> str:
        return self.gpubox_command("probe --json")

    @property
    def snapshot(self) -> dict:
        return self._once("snapshot", self._take_snapshot)

    def _take_snapshot(self) -> dict:
        if self.remote:
            self._fetch_ahead()
        return self._run_json("probe --json", "probe it", self.timeout)

    def _snapshot_call(self) -> tuple[str, float]:
        """The command that takes the snapshot, and its timeout: over SSH the quick tier's batch
        (:meth:`_fetch_ahead`), here the probe itself."""
        probe = self.gpubox_command("probe --json", self.timeout)
        if not self.remote:
            return probe, self.timeout
        if self._batch is None:
            python = f"{self.spec.software.install_dir}/venv/bin/python"
            self._batch = batch_script(probe, self.quick_commands(), python)
        return self._batch[0], self.timeout + AHEAD_LIMIT_S * 4

    def start_snapshot(self) -> None:
        """Start the snapshot's command in the background, so that its SSH round trip (or the
        probe here) runs while pytest collects; here the quick tier's other commands too
        (:meth:`quick_commands`, each in a thread of its own: over SSH the batch has them).
        Nothing is kept from them until a check runs the same command (:meth:`run`,
        :meth:`read_file`, :attr:`snapshot`), which then waits for it and takes its outcome as
        its own."""
        if self._early or "snapshot" in self._docs or self._unreachable is not None:
            return
        command, timeout = self._snapshot_call()
        self._early[command] = _Early(self.conn.run, command, timeout, None, self.progress_every)
        if not self.remote:
            for command in self.quick_commands():
                self._early[command] = _Early(
                    self.conn.run, command, self.timeout, None, self.progress_every
                )

    def finish_early(self) -> None:
        """Wait for a command started ahead that no check asked for (none is left running)."""
        for early in self._early.values():
            early.wait()
        self._early.clear()

    # ---- one round trip for the quick tier ----------------------------------------------------

    def quick_commands(self) -> list[str]:
        """The commands the quick tier's own checks run besides the probe (checks/test_quick.py
        runs exactly these strings; one that differs is simply run on its own)."""
        return [
            f"systemctl is-enabled {CLOCK_UNIT}",
            f"systemctl is-active {CLOCK_UNIT}",
            read_file_command(MANIFEST),
        ]

    def _fetch_ahead(self) -> None:
        """Run the probe and :meth:`quick_commands` (and the manifest's ``dpkg-query``) on the
        node in one SSH round trip, keeping each result for the first :meth:`run` of the same
        command. Over SSH each command is a connection (~100 ms); the quick tier needs five.

        A failure to reach the node is this node's failure, as the probe's would be; a batch that
        times out says so about the probe (the other commands are bounded on the node).
        """
        script, timeout = self._snapshot_call()
        parse = self._batch[1]
        probe = self.gpubox_command("probe --json", self.timeout)
        try:
            result = self._call(script, timeout)
        except remote.CommandTimeout:
            raise NodeError(
                f"{self.name}: `{remote._short(probe)}` ran past its timeout "
                f"({self.timeout:g} s) (while trying to probe it)"
            ) from None
        except remote.RemoteError as exc:
            self._unreachable = NodeError(str(exc))
            raise self._unreachable from None
        # Output not as the script prints it (an odd login shell): each command on its own.
        with contextlib.suppress(ValueError):
            self._ahead.update(parse(result.stdout, self.host.backend))

    # ---- the bandwidth tier: `gpubox bench run --json` ----------------------------------------

    def bench_runs(self) -> int:
        """How many tool runs the bandwidth tier makes (bandwidthTest per GPU, one
        p2pBandwidthLatencyTest, nccl-tests per ``floors.allreduce`` entry)."""
        floors = self.spec.floors
        return self.spec.gpu_count + 1 + len(floors.allreduce) + len(floors.multinode)

    def bench_timeout(self) -> float:
        return self.bench_runs() * self.spec.bench.timeout_s + BENCH_MARGIN_S

    def bench_command(self) -> str:
        return self.gpubox_command("bench run --json")

    @property
    def bench(self) -> dict:
        """The bench document (see gpubox.bench.tier), measured on first use, then cached."""
        return self._once("bench", self.run_bench)

    def run_bench(self) -> dict:
        """Run the bandwidth tier's measurements on the node now (no caching).

        Exit 1 means a tool failed, and the document says which; anything else is gpubox's own.
        """
        return self._run_json(
            "bench run --json",
            "run the benchmarks",
            self.bench_timeout(),
            ok=(0, 1),
            tier="bandwidth tier",
            expected=(
                f"{self.bench_runs()} benchmark runs, minutes on hardware "
                f"(each stopped after bench.timeout_s {self.spec.bench.timeout_s} s)"
            ),
        )

    @property
    def baseline(self):
        """The calibrated baseline (:class:`gpubox.baseline.Baseline`) or None.

        ``bench.baseline`` names a file on the machine running the checks or on the node; without
        it, ``/etc/gpubox/baseline.json`` on the node is used when present.
        """
        with self._lock:
            if self._baseline is False:
                self._baseline = self._load_baseline()
            return self._baseline

    def _load_baseline(self):
        from gpubox.baseline import DEFAULT_PATH, Baseline, BaselineError

        named = self.spec.bench.baseline
        text = where = None
        if named and self.remote and os.path.isfile(named):
            text, where = Path(named).read_text(), named
        else:
            path = named or DEFAULT_PATH
            text = self.read_file(path)
            where = f"{self.name}:{path}" if self.remote else path
        if text is None:
            if named:
                raise NodeError(
                    f"{self.name}: bench.baseline {named} exists neither here nor on the node"
                )
            return None
        try:
            return Baseline.from_text(text, self.spec.host, where)
        except BaselineError as exc:
            raise NodeError(f"{self.name}: {exc}") from None

    # ---- the stress tier: `gpubox burn --json` ------------------------------------------------

    def _burn_args(self) -> str:
        """gpubox burn with this spec's stress settings (the checker's spec is the truth)."""
        stress = self.spec.stress
        args = f"burn --json --seconds {stress.duration_s} --precision {stress.precision}"
        args += " --tensor-cores" if stress.tensor_cores else " --no-tensor-cores"
        if stress.gpus:
            args += " --gpus " + ",".join(str(g) for g in stress.gpus)
        return args

    def burn_command(self) -> str:
        return self.gpubox_command(self._burn_args())

    def burn_timeout(self) -> float:
        """The burn stops itself at ``stress.duration_s`` + 130 s (gpubox.burn); a margin on top."""
        return self.spec.stress.duration_s + 130 + BURN_MARGIN_S

    @property
    def burn(self) -> dict:
        """The burn document (see gpubox.burn.run), burned on first use, then cached."""
        return self._once("burn", self.run_burn)

    def run_burn(self) -> dict:
        """Burn the node's GPUs now (no caching); progress goes to the command's stderr.

        Exit 1: the burn failed or was stopped, and the document says why; 2: it could not start.
        """
        stress = self.spec.stress
        gpus = ",".join(map(str, stress.gpus or range(self.spec.gpu_count)))
        return self._run_json(
            self._burn_args(),
            "burn it",
            self.burn_timeout(),
            ok=(0, 1),
            tier="stress tier",
            expected=(
                f"GPUs {gpus} at full load for {stress.duration_s} s "
                f"(about {stress.duration_s + 20} s with start-up and stop)"
            ),
        )


class _Early:
    """A call started in a thread of its own; :meth:`outcome` waits for it, then returns what it
    returned or raises what it raised."""

    def __init__(self, call: Callable, *args):
        self._box: dict = {}
        self._thread = threading.Thread(target=self._work, args=(call, args), daemon=True)
        self._thread.start()

    def _work(self, call: Callable, args: tuple) -> None:
        try:
            self._box["result"] = call(*args)
        except BaseException as exc:  # given to whoever asks, as if the call were theirs
            self._box["error"] = exc

    def wait(self) -> None:
        self._thread.join()

    def outcome(self):
        self.wait()
        if "error" in self._box:
            raise self._box["error"]
        return self._box["result"]


# ---- nodes ------------------------------------------------------------------------------------


def load_nodes(inventory: str | None, limit: list[str], node_spec: str = NODE_SPEC) -> list[Node]:
    """The nodes to check: every (``limit``-ed) host of ``inventory``, or this machine with the
    spec the deploy wrote. Raises :class:`pytest.UsageError`, ``FileNotFoundError``,
    ``KeyError`` (:class:`gpubox.inventory.UnknownHostError`) or a ``SpecError``."""
    if inventory:
        from gpubox.inventory import load

        return [
            Node(h.name, h.spec, remote.connect(h.name, h.data), not h.name.startswith("@local"))
            for h in load(inventory, limit=limit or None)
        ]
    try:
        with open(node_spec) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise pytest.UsageError(
            f"no {node_spec} on this machine: deploy it first, or point at an inventory "
            "with --inventory (e.g. --inventory inventories/home.py)"
        ) from None
    name = data.pop("host", None) or socket.gethostname()
    return [Node(name, NodeSpec.from_data(data, host=name), _here(), False, node_spec)]


def _here() -> remote.Connection:
    return remote.Connection("local", remote.local_host())


def nodes_from_hostspecs(specs: list[str], **options) -> list[Node]:
    """Nodes from testinfra host specs (``--hosts``), each with the spec its deploy wrote
    (``/etc/gpubox/spec.json`` on it)."""
    nodes = []
    for spec in specs:
        conn = remote.connect_hostspec(spec, **options)
        local = conn.host.backend.get_connection_type() == "local"
        text = read_file(conn, NODE_SPEC, COMMAND_TIMEOUT_S)
        if text is None:
            raise NodeError(f"--hosts {spec}: no {NODE_SPEC} there: deploy the node first")
        try:
            data = json.loads(text)
        except ValueError:
            raise NodeError(f"--hosts {spec}: {NODE_SPEC} is not JSON") from None
        data.pop("host", None)
        nodes.append(Node(conn.name, NodeSpec.from_data(data, host=conn.name), conn, not local))
    return nodes


def read_file_command(path: str) -> str:
    quoted = shlex.quote(path)
    return f"test -e {quoted} || exit 44; cat -- {quoted}"


def read_file(conn: remote.Connection, path: str, timeout: float) -> str | None:
    """The text of ``path`` on the node, or None when it does not exist (one command)."""
    return file_text(conn.name, path, conn.run(read_file_command(path), timeout))


def file_text(name: str, path: str, result) -> str | None:
    """What :func:`read_file_command`'s ``result`` says: the text, None (no such file) or a
    :class:`NodeError`."""
    if result.rc == 44:
        return None
    if result.rc != 0:
        why = (result.stderr.strip().splitlines() or [f"exit {result.rc}"])[-1]
        raise NodeError(f"{name}: cannot read {path}: {why}")
    return result.stdout


# The manifest check's package query (checks/test_quick.py::test_manifest), the package names
# appended; the batch builds it on the node from the manifest it reads.
PACKAGE_QUERY = "dpkg-query -W -f '${Package}\\t${Version}\\n' "
AHEAD_LIMIT_S = 10  # each command fetched ahead of its check is stopped on the node after this
_NAMES = (
    "import json,sys;d=json.load(open(sys.argv[1]));print(' '.join(sorted(d.get('packages',{}))))"
)


def batch_script(probe: str, commands: list[str], python: str, manifest: str = MANIFEST):
    """A shell script that runs ``probe``, then ``commands`` (each stopped after
    :data:`AHEAD_LIMIT_S`), then the manifest's package query, printing each one's exit status,
    stdout and stderr between markers; and the function that parses its output into
    ``{command: testinfra CommandResult}`` (a command stopped by its limit is left out, so its
    check runs it again itself)."""
    import secrets

    from testinfra.backend.base import CommandResult

    mark = f"gpubox-{secrets.token_hex(12)}"
    q = shlex.quote
    lines = [
        f"M={mark}",
        "t=$(mktemp -d) || exit 1",
        "trap 'rm -rf \"$t\"' EXIT",
        'r() { i=$1; shift; "$@" >"$t/o" 2>"$t/e"; c=$?; printf \'%s %s %s\\n\' "$M" "$i" "$c"; '
        'cat "$t/o"; printf \'\\n%s\\n\' "$M"; cat "$t/e"; printf \'\\n%s\\n\' "$M"; }',
        f"r 0 sh -c {q(probe)}",
    ]
    limit = f"timeout -k 2 {AHEAD_LIMIT_S}"
    for i, command in enumerate(commands, 1):
        lines.append(f"r {i} {limit} sh -c {q(command)}")
    lines += [
        f"n=$({q(python)} -I -c {q(_NAMES)} {q(manifest)} 2>/dev/null)",
        f'if [ -n "$n" ]; then d={q(PACKAGE_QUERY)}"$n"; r k printf %s "$d"; '
        f'r d {limit} sh -c "$d"; fi',
    ]
    script = "\n".join(lines)
    wanted = {"0": probe, **{str(i): c for i, c in enumerate(commands, 1)}}

    def parse(out: str, backend) -> dict:
        found: dict[str, tuple[int, str, str]] = {}
        pos = 0
        while (start := out.find(f"{mark} ", pos)) != -1:
            eol = out.index("\n", start)
            i, rc = out[start + len(mark) + 1 : eol].split()
            end_out = out.index(f"\n{mark}\n", eol)
            end_err = out.index(f"\n{mark}\n", end_out + len(mark) + 2)
            stdout = out[eol + 1 : end_out]
            stderr = out[end_out + len(mark) + 2 : end_err]
            found[i] = (int(rc), stdout, stderr)
            pos = end_err + len(mark) + 2
        if "k" in found and "d" in found:
            wanted["d"] = found["k"][1]
        results = {}
        for i, command in wanted.items():
            if i not in found or (i != "0" and found[i][0] in (124, 137)):
                continue
            rc, stdout, stderr = found[i]
            results[command] = CommandResult(backend, rc, command.encode(), stdout, stderr)
        return results

    return script, parse


# ---- pytest hooks -----------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("gpubox")
    group.addoption(
        "--inventory", help="pyinfra inventory file (default: this node's deployed spec)"
    )
    group.addoption(
        "--limit",
        action="append",
        default=[],
        metavar="HOST",
        help="only this inventory host (repeatable, as pyinfra's)",
    )
    group.addoption(
        "--results-json", default=None, help="JSON results (default results/checks.json)"
    )
    group.addoption("--node-spec", default=NODE_SPEC, help=f"local spec file (default {NODE_SPEC})")
    group.addoption(
        "--gpubox-bandwidth",
        action="store_true",
        help="run the bandwidth tier too (minutes; same as naming it in -m)",
    )
    group.addoption(
        "--gpubox-stress",
        action="store_true",
        help="run the stress tier too (minutes of full load; same as naming it in -m)",
    )
    group.addoption(
        "--gpubox-timeout",
        type=float,
        default=COMMAND_TIMEOUT_S,
        metavar="SECONDS",
        help="timeout of the NVML probe and of each short command on a node "
        f"(default {COMMAND_TIMEOUT_S:g}; the long tiers' come from the spec)",
    )
    group.addoption(
        "--gpubox-progress",
        type=float,
        default=PROGRESS_EVERY_S,
        metavar="SECONDS",
        help=f"seconds between progress lines of the long tiers (default {PROGRESS_EVERY_S:g})",
    )


def checks_folder_conftests(config) -> list:
    """The conftest modules that make their folder a checks folder (they import
    :func:`gpubox.node_host.host`)."""
    from gpubox.node_host import host

    return [
        p
        for p in config.pluginmanager.get_plugins()
        if str(getattr(p, "__file__", "")).endswith("conftest.py") and getattr(p, "host", 0) is host
    ]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker in TIERS:
        config.addinivalue_line("markers", f"{marker}: the gpubox {marker} tier")
    # pytest-xdist declares it too; without xdist (plugin autoloading off) the checks still run
    config.addinivalue_line("markers", "xdist_group(name): keep these tests on one xdist worker")
    config._gpubox_nodes = None
    config._gpubox_error = None
    config._gpubox_not_asked = {}
    worker = hasattr(config, "workerinput")
    # A run that checks nodes: an inventory or --hosts, or a checks folder's conftest.py.
    hosts = getattr(config.option, "hosts", None)
    active = bool(config.getoption("--inventory") or hosts or checks_folder_conftests(config))
    config._gpubox_active = active
    if not active:
        return
    _refuse_mixed_options(config)
    collect_only = config.option.collectonly
    if getattr(config.option, "xmlpath", None) is None and not worker and not collect_only:
        config.option.xmlpath = str(Path("results") / "checks-junit.xml")
    _nodes(config, usage=True)  # once, now: a bad inventory is one line, before collection
    if not worker:  # results are gathered on the controller only
        config.pluginmanager.register(Results(config), "gpubox-results")
    if _snapshot_first(config):
        for node in config._gpubox_nodes:
            node.start_snapshot()


def _snapshot_first(config) -> bool:
    """Whether the run's first check asks for the snapshot, so that it can be started now: the
    quick tier in this process (``-m`` empty or ``quick``, no ``-k``, no long tier asked for, not
    ``--collect-only``, not spread over xdist workers), up to 16 nodes (as the pre-probe's pool).
    """
    option = config.option
    if (
        hasattr(config, "workerinput")
        or option.collectonly
        or getattr(option, "numprocesses", None)
        or getattr(option, "dist", "no") != "no"
        or getattr(option, "keyword", "")
        or (option.markexpr or "").strip() not in ("", "quick")
        or any(asked_for(config, tier) for tier in OPT_IN)
    ):
        return False
    return 0 < len(config._gpubox_nodes or []) <= 16


def pytest_unconfigure(config):
    for node in getattr(config, "_gpubox_nodes", None) or []:
        node.finish_early()


def _refuse_mixed_options(config) -> None:
    hosts = getattr(config.option, "hosts", None)
    if not config.getoption("--inventory"):
        return
    if hosts:
        raise pytest.UsageError(
            "--hosts and --inventory both name the nodes: give one (--inventory checks each "
            "host against its inventory spec, --hosts against the spec its deploy wrote)"
        )
    for option, key in (("ssh_config", "ssh_config_file"), ("ssh_identity_file", "ssh_key")):
        if getattr(config.option, option, None):
            flag = "--" + option.replace("_", "-")
            raise pytest.UsageError(
                f"{flag} with --inventory: the inventory's host data says how to connect, as "
                f"for the deploy; set `{key}` there"
            )


def _nodes(config, usage: bool = False) -> list[Node]:
    """The nodes, loaded once per session; a failure is kept and given again as one line."""
    if config._gpubox_nodes is None and config._gpubox_error is None:
        try:
            config._gpubox_nodes = _load(config)
        except (pytest.UsageError, remote.RemoteError, FileNotFoundError, KeyError) as exc:
            config._gpubox_error = str(exc)
        except ValueError as exc:  # SpecError, a bad spec.json
            config._gpubox_error = str(exc)
    if config._gpubox_error is not None:
        if usage:
            raise pytest.UsageError(config._gpubox_error)
        raise pytest.Collector.CollectError(config._gpubox_error)
    return config._gpubox_nodes


def _load(config) -> list[Node]:
    hosts = getattr(config.option, "hosts", None)
    if hosts:
        nodes = nodes_from_hostspecs(
            hosts.split(","),
            ssh_config=getattr(config.option, "ssh_config", None),
            ssh_identity_file=getattr(config.option, "ssh_identity_file", None),
            sudo=getattr(config.option, "sudo", None) or None,
            sudo_user=getattr(config.option, "sudo_user", None),
        )
    else:
        nodes = load_nodes(
            config.getoption("--inventory"),
            config.getoption("--limit"),
            config.getoption("--node-spec"),
        )
    say = _terminal_line(config)
    for node in nodes:
        node.say, node.progress_every = say, config.getoption("--gpubox-progress")
        node.timeout = config.getoption("--gpubox-timeout")
    return nodes


def _terminal_line(config) -> Callable[[str], None]:
    """Write a line to the terminal now, through pytest (its capture suspended meanwhile)."""

    def say(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        quiet = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with quiet:
            reporter.ensure_newline()
            reporter.write_line(f"gpubox: {line}")

    return say


def _checks_here(config, path) -> bool:
    """Whether the test module at ``path`` holds gpubox checks: a run that checks nodes, or a
    module below a checks folder's conftest.py (one collected after pytest's first conftests)."""
    if config._gpubox_active:
        return True
    where = Path(str(path)).resolve()
    return any(
        Path(p.__file__).resolve().parent in where.parents for p in checks_folder_conftests(config)
    )


def pytest_generate_tests(metafunc):
    if "node" not in metafunc.fixturenames or not _checks_here(
        metafunc.config, metafunc.module.__file__
    ):
        return  # another project's `node` fixture is its own
    nodes = _nodes(metafunc.config)
    several = len(nodes) > 1

    def ident(node, rest=""):
        parts = ([node.name] if several else []) + ([rest] if rest else [])
        return "-".join(parts) or node.name

    if "gpu" in metafunc.fixturenames:
        params = [(n, i) for n in nodes for i in range(n.spec.gpu_count)]
        ids = [ident(n, gpu_id(i)) for n, i in params]
        metafunc.parametrize(("node", "gpu"), params, ids=ids, scope="session")
    elif "pair" in metafunc.fixturenames:
        params = [(n, p) for n in nodes for p in n.spec.pairs()]
        ids = [ident(n, pair_id(*p)) for n, p in params]
        metafunc.parametrize(("node", "pair"), params, ids=ids, scope="session")
    elif "allreduce" in metafunc.fixturenames:
        params = [(n, f) for n in nodes for f in n.spec.floors.allreduce]
        ids = [ident(n, _allreduce_id(n.spec, f)) for n, f in params]
        metafunc.parametrize(("node", "allreduce"), params, ids=ids, scope="session")
    elif "multinode" in metafunc.fixturenames:
        params = [(n, f) for n in nodes for f in n.spec.floors.multinode]
        ids = [ident(n, f.id) for n, f in params]
        metafunc.parametrize(("node", "multinode"), params, ids=ids, scope="session")
    else:
        metafunc.parametrize("node", nodes, ids=[n.name for n in nodes], scope="session")


def _allreduce_id(spec: NodeSpec, floor) -> str:
    """``gpu0+gpu1``; ``gpu0+gpu1@32M`` when the spec lists that GPU set at several sizes."""
    from gpubox.floors import format_size

    twice = sum(f.gpus == floor.gpus for f in spec.floors.allreduce) > 1
    return f"{floor.id}@{format_size(floor.size)}" if twice else floor.id


def asked_for(config, tier: str) -> bool:
    """A long tier runs when ``-m`` names it or its ``--gpubox-TIER`` option is given."""
    return tier in (config.option.markexpr or "") or bool(config.getoption(f"--gpubox-{tier}"))


def is_check(item) -> bool:
    """A gpubox check: a test that ``pytest_generate_tests`` gave a node (or would have: an
    ``allreduce`` check of a spec without ``floors.allreduce`` has no parameters at all)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and isinstance(callspec.params.get("node"), Node):
        return True
    return "node" in getattr(item, "fixturenames", ()) and _checks_here(item.config, item.path)


def pytest_collection_modifyitems(config, items):
    keep, dropped = [], []
    for item in items:
        if not is_check(item):
            keep.append(item)
            continue
        node = getattr(item, "callspec", None) and item.callspec.params.get("node")
        if "multinode" in item.fixturenames and not isinstance(node, Node):
            continue  # no node has floors.multinode: not a check here (single nodes: the norm)
        tier = next((t for t in OPT_IN if item.get_closest_marker(t)), None)
        if tier is not None and not asked_for(config, tier):
            dropped.append(item)
            config._gpubox_not_asked[tier] = config._gpubox_not_asked.get(tier, 0) + 1
            continue
        # Keep each host on one xdist worker (--dist loadgroup): one snapshot per host.
        node = getattr(item, "callspec", None) and item.callspec.params.get("node")
        if isinstance(node, Node):
            item.add_marker(pytest.mark.xdist_group(node.name))
        keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    """Probe every node at once before the tests run: probing is SSH round trips, so N nodes
    take about as long as one. (xdist workers probe only the nodes they get, on first use.)"""
    config = session.config
    nodes = config._gpubox_nodes or []
    if len(nodes) < 2 or hasattr(config, "workerinput") or config.option.collectonly:
        return
    if not any(item.get_closest_marker("quick") for item in session.items):
        return

    def probe(node):
        with contextlib.suppress(NodeError):  # kept on the node; its tests report it
            _ = node.snapshot

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        list(pool.map(probe, nodes))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A node that cannot be reached from inside a check (``node.run``, ``host.run``) fails it
    with the reason in one line, not a traceback."""
    try:
        return (yield)
    except remote.RemoteError as exc:
        raise _failure(exc) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """The same for a fixture of your own that reaches the node."""
    try:
        return (yield)
    except remote.RemoteError as exc:
        raise _failure(exc) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """What the JSON results keep of a check (verdict, documents) travels on its report (also
    from xdist workers), never into the JUnit XML."""
    report = yield
    docs = item.stash.get(_DOCS, None)
    if docs:
        report.gpubox = dict(docs)
    return report


def _failure(exc: Exception) -> BaseException:
    """The failure a check reports for ``exc``: its one line, no traceback and, raised ``from
    None``, not the exception it was raised while handling (pytest would print that too)."""
    return pytest.fail.Exception(str(exc), pytrace=False)


def _keep(request, key: str, value) -> None:
    request.node.stash.setdefault(_DOCS, {})[key] = value


@pytest.fixture
def snapshot(node, request):
    """The node's snapshot; kept with the first check per host so the JSON file has it."""
    try:
        snap = node.snapshot
    except NodeError as exc:
        raise _failure(exc) from None
    if not getattr(node, "_reported", False):
        node._reported = True
        _keep(request, "snapshot", {node.name: snap})
    return snap


@pytest.fixture
def bench(node, request):
    """The node's bench document (``gpubox bench run --json``, run once per host and session);
    kept with the first check per host so the JSON file has it."""
    try:
        doc = node.bench
    except NodeError as exc:
        raise _failure(exc) from None
    if not getattr(node, "_bench_reported", False):
        node._bench_reported = True
        _keep(request, "bench", {node.name: doc})
    return doc


@pytest.fixture
def baseline(node):
    """The node's calibrated baseline (``gpubox calibrate``), or None."""
    try:
        return node.baseline
    except NodeError as exc:
        raise _failure(exc) from None


class GpuboxWarning(UserWarning):
    """A check passed, but close to its floor (``warn``)."""


@pytest.fixture
def burn(node, request):
    """The node's burn document (one burn per host and session); kept with the first check per
    host, so the JSON results file has it under ``hosts[name]["burn"]``."""
    try:
        doc = node.burn
    except NodeError as exc:
        raise _failure(exc) from None
    if not getattr(node, "_burn_reported", False):
        node._burn_reported = True
        _keep(request, "burn", {node.name: doc})
    return doc


def _figure(value) -> str:
    """A property value for JUnit: the figure itself, or compact JSON, cut to 500 characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= 500 else text[:497] + "..."


def check(request, verdict: judge.Verdict):
    """Record ``verdict`` on the test, then pass, skip or fail with its message (a ``warn``
    passes with a warning). JUnit gets its level, expected and found; the JSON results all."""
    _keep(request, "verdict", verdict.as_dict())
    request.node.user_properties.append(("level", verdict.level))
    for name in ("expected", "found"):
        if getattr(verdict, name) is not None:
            request.node.user_properties.append((name, _figure(getattr(verdict, name))))
    if verdict.level == judge.SKIP:
        pytest.skip(verdict.message)
    if verdict.level == judge.FAIL:
        pytest.fail(verdict.message, pytrace=False)
    if verdict.level == judge.WARN:
        warnings.warn(GpuboxWarning(verdict.message), stacklevel=2)


class Results:
    """Collects every check's outcome (on the xdist controller too) and writes the JSON file."""

    def __init__(self, config):
        self.config = config
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.hosts: dict[str, dict] = {}
        self.checks: list[dict] = []
        self.path: Path | None = None
        self.collected = 0

    def pytest_collection_modifyitems(self, items):
        self.collected = sum(is_check(i) for i in items)

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        docs = getattr(report, "gpubox", None) or {}
        for what in ("snapshot", "bench", "burn"):
            for host, doc in (docs.get(what) or {}).items():
                self.hosts.setdefault(host, {})[what] = doc
        verdict = docs.get("verdict")
        self.checks.append(
            {
                "id": report.nodeid,
                "outcome": report.outcome,
                "duration_s": round(report.duration, 4),
                "message": verdict["message"] if verdict else _longrepr(report),
                "verdict": verdict,
            }
        )

    def pytest_sessionfinish(self, session, exitstatus):
        explicit = self.config.getoption("--results-json")
        if self.config.option.collectonly or not (explicit or self.collected or self.checks):
            return
        for node in self.config._gpubox_nodes or []:
            entry = self.hosts.setdefault(node.name, {})
            entry["spec"] = node.spec.to_data()
            for what in ("snapshot", "burn", "bench"):
                if node.cached(what) is not None:
                    entry.setdefault(what, node.cached(what))
        counts: dict[str, int] = {}
        for c in self.checks:
            counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
        document = {
            "schema": "gpubox.results/1",
            "started": self.started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "exit_status": int(exitstatus),
            "counts": counts,
            "hosts": self.hosts,
            "checks": self.checks,
        }
        path = Path(explicit or Path("results") / "checks.json")
        write_atomic(path, json.dumps(document, indent=2, default=str))
        self.path = path

    def pytest_terminal_summary(self, terminalreporter):
        not_asked = self.config._gpubox_not_asked
        if self.path is None and not not_asked:
            return
        terminalreporter.section("gpubox")
        for tier, count in not_asked.items():
            terminalreporter.write_line(
                f"not run: the {tier} tier ({count} checks, {OPT_IN[tier]}); ask with "
                f"-m {tier} or --gpubox-{tier}"
            )
        # A reason shared by many checks (a node that cannot be reached) is shown once.
        failed: dict[str, list[str]] = {}
        for c in self.checks:
            if c["outcome"] == "failed":
                failed.setdefault(c["message"] or "", []).append(c["id"].split("::")[-1])
            elif (c["verdict"] or {}).get("level") == judge.WARN:
                terminalreporter.write_line(f"WARN {c['id'].split('::')[-1]}: {c['message']}")
        for message, ids in failed.items():
            who = ids[0] if len(ids) == 1 else f"{len(ids)} checks ({ids[0]}, ...)"
            terminalreporter.write_line(f"FAIL {who}: {message}")
        if self.path is not None:
            junit = self.config.option.xmlpath
            terminalreporter.write_line(
                f"results: {self.path}" + (f", junit: {junit}" if junit else "")
            )


def _longrepr(report) -> str | None:
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        return report.longrepr[2]
    return str(report.longrepr) if report.longrepr else None


def write_atomic(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
