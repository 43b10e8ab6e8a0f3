"""The pytest plugin behind ``checks/``: nodes from an inventory, one snapshot per node, verdicts.

``checks/conftest.py`` imports this module. What it adds to pytest:

* ``--inventory FILE`` (pyinfra inventory; without it, the node pytest runs on, with the spec the
  deploy wrote to ``/etc/gpubox/spec.json``), ``--limit HOST``, ``--results-json FILE``;
* fixtures ``node`` (one per inventory host, session-scoped snapshot), ``gpu`` and ``pair``
  parametrised from that host's spec, with ids that read like ``test_p2p[gpu0-gpu1]``
  (``test_p2p[home-gpu0-gpu1]`` when the inventory has several hosts);
* fixtures ``allreduce`` (one per ``floors.allreduce`` entry: ``test_allreduce[gpu0+gpu1]``),
  ``bench`` (the node's ``gpubox bench run --json`` document, measured once per host and session,
  only when a bandwidth check runs) and ``baseline`` (the calibrated baseline, or None);
* :func:`check`, which turns a :class:`gpubox.judge.Verdict` into pass / skip / fail (``warn``
  passes with a :class:`GpuboxWarning`);
* a JSON results file (every host's spec and snapshot, every check's outcome and message) and a
  JUnit XML file, written on every run (``results/`` unless told otherwise).

Over SSH the probe runs on the node (``/opt/gpubox/venv/bin/gpubox probe --json``, installed by the
deploy); on the node itself it runs with the same Python as pytest. Both are the same code, so the
two places give the same verdicts. Hosts can be checked in parallel: ``-n auto --dist loadgroup``
(each host's tests stay on one worker, so each node is probed once).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shlex
import socket
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gpubox import judge
from gpubox.spec import NodeSpec, gpu_id, pair_id

NODE_SPEC = "/etc/gpubox/spec.json"
REMOTE_GPUBOX = "{install_dir}/venv/bin/gpubox"
CLOCK_UNIT = "gpubox-clocks.service"
_SNAPSHOT_KEY = "gpubox_snapshot"
_BENCH_KEY = "gpubox_bench"
_VERDICT_KEY = "gpubox_verdict"
_BURN_KEY = "gpubox_burn"


class NodeError(RuntimeError):
    """A node could not be reached or probed: names the host and what failed."""


@dataclass
class Node:
    """One host under test: its spec, a testinfra host, and what was measured on it (once each).

    Three documents come from gpubox itself on the node, each run at most once per session and
    then cached (a failure too, so later checks fail fast with the same cause): the NVML snapshot
    (``gpubox probe``), the bandwidth measurements (``gpubox bench run``) and the burn
    (``gpubox burn``).
    """

    name: str
    spec: NodeSpec
    hostspec: str | None  # testinfra host spec; None = this machine
    remote: bool
    node_spec: str = NODE_SPEC  # the spec file the local commands read (library override)
    _docs: dict = field(default_factory=dict, repr=False)  # what -> document or NodeError
    _baseline: Any = field(default=False, repr=False)  # False: not loaded yet
    _host: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def host(self):
        """The pytest-testinfra host (``local://`` on the node itself)."""
        if self._host is None:
            import testinfra

            self._host = testinfra.get_host(self.hostspec or "local://")
        return self._host

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

    def gpubox_command(self, args: str) -> str:
        """``gpubox ARGS`` as it runs on the node: its venv over SSH, this Python locally."""
        if self.remote:
            return f"{REMOTE_GPUBOX.format(install_dir=self.spec.software.install_dir)} {args}"
        return (
            f"{shlex.quote(sys.executable)} -m gpubox {args} --spec {shlex.quote(self.node_spec)}"
        )

    def _run_json(self, args: str, doing: str, ok: tuple[int, ...] = (0,)) -> dict:
        """Run ``gpubox ARGS`` on the node and return the JSON document it prints."""
        cmd = self.gpubox_command(args)
        try:
            result = self.host.run(cmd)
        except Exception as exc:  # paramiko/socket errors come in many types
            raise NodeError(f"{self.name}: cannot reach the node to {doing} ({exc})") from None
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
        return self._once("snapshot", lambda: self._run_json("probe --json", "probe it"))

    # ---- the bandwidth tier: `gpubox bench run --json` ----------------------------------------

    def bench_command(self) -> str:
        return self.gpubox_command("bench run --json --quiet")

    @property
    def bench(self) -> dict:
        """The bench document (see gpubox.bench.tier), measured on first use, then cached."""
        return self._once("bench", self.run_bench)

    def run_bench(self) -> dict:
        """Run the bandwidth tier's measurements on the node now (no caching).

        Exit 1 means a tool failed, and the document says which; anything else is gpubox's own.
        """
        return self._run_json("bench run --json --quiet", "run the benchmarks", ok=(0, 1))

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
            try:
                f = self.host.file(path)
                if f.exists:
                    text, where = f.content_string, f"{self.name}:{path}" if self.remote else path
            except Exception as exc:  # paramiko/socket errors come in many types
                raise NodeError(f"{self.name}: cannot read the baseline {path} ({exc})") from None
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

    @property
    def burn(self) -> dict:
        """The burn document (see gpubox.burn.run), burned on first use, then cached."""
        return self._once("burn", self.run_burn)

    def run_burn(self) -> dict:
        """Burn the node's GPUs now (no caching); progress goes to the command's stderr.

        Exit 1: the burn failed or was stopped, and the document says why; 2: it could not start.
        """
        return self._run_json(self._burn_args(), "burn it", ok=(0, 1))


def hostspec_from_data(name: str, data: dict) -> str:
    """A testinfra host spec for a pyinfra host's connection data (SSH only).

    pyinfra's ``ssh_strict_host_key_checking`` / ``ssh_known_hosts_file`` carry over through a
    small ssh_config, so testinfra verifies host keys exactly as the deploy did.
    """
    if name.startswith("@local"):
        return "local://"
    address = data.get("ssh_hostname") or name
    user = data.get("ssh_user") or "root"
    spec = f"paramiko://{user}@{address}"
    if data.get("ssh_port"):
        spec += f":{data['ssh_port']}"
    query = []
    if data.get("ssh_key"):
        query.append(f"ssh_identity_file={data['ssh_key']}")
    config = _ssh_config(data)
    if config:
        query.append(f"ssh_config={config}")
    return spec + ("?" + "&".join(query) if query else "")


def _ssh_config(data: dict) -> str | None:
    lines = []
    if str(data.get("ssh_strict_host_key_checking", "")).lower() in ("no", "off", "false"):
        lines.append("StrictHostKeyChecking no")
    if data.get("ssh_known_hosts_file"):
        lines.append(f"UserKnownHostsFile {data['ssh_known_hosts_file']}")
    if not lines:
        return None
    import tempfile

    text = "Host *\n" + "".join(f"  {line}\n" for line in lines)
    fd, path = tempfile.mkstemp(prefix="gpubox-ssh-", suffix=".config")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    atexit.register(lambda: os.path.exists(path) and os.unlink(path))
    return path


# ---- pytest hooks -----------------------------------------------------------------------------


def pytest_addoption(parser):
    group = parser.getgroup("gpubox")
    group.addoption(
        "--inventory", help="pyinfra inventory file (default: this node's deployed spec)"
    )
    group.addoption("--limit", action="append", default=[], help="only this inventory host")
    group.addoption(
        "--results-json", default=None, help="JSON results (default results/checks.json)"
    )
    group.addoption("--node-spec", default=NODE_SPEC, help=f"local spec file (default {NODE_SPEC})")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    for marker in ("quick", "bandwidth", "stress"):
        config.addinivalue_line("markers", f"{marker}: gpubox {marker} tier")
    if getattr(config.option, "xmlpath", None) is None and not hasattr(config, "workerinput"):
        config.option.xmlpath = str(Path("results") / "checks-junit.xml")
    config._gpubox_nodes = None  # loaded on first use
    if not hasattr(config, "workerinput"):  # results are gathered on the controller only
        config.pluginmanager.register(Results(config), "gpubox-results")


def _nodes(config) -> list[Node]:
    if config._gpubox_nodes is None:
        config._gpubox_nodes = load_nodes(
            config.getoption("--inventory"),
            config.getoption("--limit"),
            config.getoption("--node-spec"),
        )
    return config._gpubox_nodes


def load_nodes(inventory: str | None, limit: list[str], node_spec: str = NODE_SPEC) -> list[Node]:
    if inventory:
        from gpubox.inventory import load

        return [
            Node(
                h.name, h.spec, hostspec_from_data(h.name, h.data), not h.name.startswith("@local")
            )
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
    return [Node(name, NodeSpec.from_data(data, host=name), None, False, node_spec)]


def pytest_generate_tests(metafunc):
    if "node" not in metafunc.fixturenames:
        return
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
    else:
        metafunc.parametrize("node", nodes, ids=[n.name for n in nodes], scope="session")


def _allreduce_id(spec: NodeSpec, floor) -> str:
    """``gpu0+gpu1``; ``gpu0+gpu1@32M`` when the spec lists that GPU set at several sizes."""
    from gpubox.floors import format_size

    twice = sum(f.gpus == floor.gpus for f in spec.floors.allreduce) > 1
    return f"{floor.id}@{format_size(floor.size)}" if twice else floor.id


def pytest_collection_modifyitems(config, items):
    # Keep each host on one xdist worker (--dist loadgroup): one snapshot per host.
    for item in items:
        callspec = getattr(item, "callspec", None)
        node = callspec.params.get("node") if callspec else None
        if node is not None:
            item.add_marker(pytest.mark.xdist_group(node.name))


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

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        list(pool.map(probe, nodes))


@pytest.fixture
def snapshot(node, request):
    """The node's snapshot; attached to the first report per host so the JSON file has it."""
    try:
        snap = node.snapshot
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not getattr(node, "_reported", False):
        node._reported = True
        request.node.user_properties.append((_SNAPSHOT_KEY, {node.name: snap}))
    return snap


@pytest.fixture
def bench(node, request):
    """The node's bench document (``gpubox bench run --json``, run once per host and session);
    attached to the first report per host so the JSON file has it."""
    try:
        doc = node.bench
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not getattr(node, "_bench_reported", False):
        node._bench_reported = True
        request.node.user_properties.append((_BENCH_KEY, {node.name: doc}))
    return doc


@pytest.fixture
def baseline(node):
    """The node's calibrated baseline (``gpubox calibrate``), or None."""
    try:
        return node.baseline
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)


class GpuboxWarning(UserWarning):
    """A check passed, but close to its floor (``warn``)."""


@pytest.fixture
def burn(node, request):
    """The node's burn document (one burn per host and session); attached to the first report
    per host, so the JSON results file has it under ``hosts[name]["burn"]``."""
    try:
        doc = node.burn
    except NodeError as exc:
        pytest.fail(str(exc), pytrace=False)
    if not getattr(node, "_burn_reported", False):
        node._burn_reported = True
        request.node.user_properties.append((_BURN_KEY, {node.name: doc}))
    return doc


def check(request, verdict: judge.Verdict):
    """Record ``verdict`` on the test, then pass, skip or fail with its message (a ``warn``
    passes with a warning)."""
    request.node.user_properties.append((_VERDICT_KEY, verdict.as_dict()))
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

    def pytest_runtest_logreport(self, report):
        if report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
            return
        verdict = None
        for key, value in report.user_properties:
            if key == _SNAPSHOT_KEY:
                for host, snap in value.items():
                    self.hosts.setdefault(host, {})["snapshot"] = snap
            elif key == _BENCH_KEY:
                for host, doc in value.items():
                    self.hosts.setdefault(host, {})["bench"] = doc
            elif key == _BURN_KEY:
                for host, doc in value.items():
                    self.hosts.setdefault(host, {})["burn"] = doc
            elif key == _VERDICT_KEY:
                verdict = value
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
        nodes = self.config._gpubox_nodes or []
        for node in nodes:
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
        path = Path(self.config.getoption("--results-json") or Path("results") / "checks.json")
        write_atomic(path, json.dumps(document, indent=2, default=str))
        self.path = path

    def pytest_terminal_summary(self, terminalreporter):
        if self.path is None:
            return
        terminalreporter.section("gpubox")
        for c in self.checks:
            if c["outcome"] == "failed":
                terminalreporter.write_line(f"FAIL {c['id'].split('::')[-1]}: {c['message']}")
            elif (c["verdict"] or {}).get("level") == judge.WARN:
                terminalreporter.write_line(f"WARN {c['id'].split('::')[-1]}: {c['message']}")
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
