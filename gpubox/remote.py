"""Reaching a node from the machine running the checks: OpenSSH, host keys verified as the deploy
verifies them, and a timeout on every command.

:func:`connect` turns a pyinfra host's connection data into a pytest-testinfra host on testinfra's
``ssh://`` backend, i.e. the ``ssh`` program, so ``~/.ssh/config``, ``ProxyJump``, agents and
``known_hosts`` work exactly as for ``ssh`` itself. pyinfra's keys become OpenSSH options, written
to a small ssh_config per host that reads the user's own configuration after them (OpenSSH takes
the first value it finds, so the inventory's data wins, as it does for the deploy):

==================================  ===========================================================
pyinfra host data                   OpenSSH
==================================  ===========================================================
``ssh_hostname`` (else the name)    the host ``ssh`` connects to (and looks up in ssh_config)
``ssh_port``, ``ssh_user``          ``Port``, ``User``
``ssh_key``                         ``-i`` (an identity file)
``ssh_known_hosts_file``            ``UserKnownHostsFile`` (default ``~/.ssh/known_hosts``)
``ssh_strict_host_key_checking``    ``StrictHostKeyChecking``: pyinfra's default ``accept-new``
                                    records an unknown key and refuses a changed one; ``yes``
                                    refuses both; ``no``/``off`` (as pyinfra, not as OpenSSH's
                                    ``no``) accepts an unknown key without recording it and
                                    still refuses a changed one: ``accept-new`` against a
                                    private copy of the known_hosts file
``ssh_config_file``                 included after gpubox's options (default ``~/.ssh/config``)
==================================  ===========================================================

``BatchMode yes`` (never a prompt that would hang pytest), ``ConnectTimeout`` and server
keep-alives are always set. A refused host key raises :class:`HostKeyError` naming the host and
the fingerprint the node offered; any other connection failure :class:`RemoteError`; a command
that outlives its timeout :class:`CommandTimeout` (it is killed). Every command runs under a
timeout: the one given to :func:`call`, else :data:`DEFAULT_TIMEOUT_S`, also for the commands a
user's own check runs through testinfra's ``host``.

    >>> host = connect("home", {"ssh_hostname": "192.168.1.20", "ssh_user": "root"})  # doctest: +SKIP
    >>> with call(timeout=30):                                                        # doctest: +SKIP
    ...     host.run("systemctl is-active gpubox-clocks.service").stdout
    'active\\n'
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 300.0  # a command nobody gave a timeout (a user's own check's host.run)
CONNECT_TIMEOUT_S = 10  # OpenSSH ConnectTimeout: an address that does not answer
ALIVE_INTERVAL_S = 10  # ServerAliveInterval x ServerAliveCountMax: a connection that went silent
ALIVE_COUNT = 3
PYINFRA_STRICT_DEFAULT = "accept-new"  # pyinfra's default for ssh_strict_host_key_checking
STRICT = {"yes": "yes", "accept-new": "accept-new", "ask": "ask", "no": "no", "off": "no"}


class RemoteError(RuntimeError):
    """A node could not be reached, or a command on it not run: one line naming the host."""


class HostKeyError(RemoteError):
    """The node's SSH host key is unknown (strict checking) or not the one recorded."""


class CommandTimeout(RemoteError):
    """A command ran past its timeout and was killed."""


# ---- the OpenSSH side -------------------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """Where and how to connect, from pyinfra host data."""

    name: str  # the inventory name, for messages
    address: str
    port: int | None
    user: str
    key: str | None
    known_hosts: str | None
    strict: str
    config_file: str | None

    @classmethod
    def from_data(cls, name: str, data: dict) -> SshTarget:
        strict = str(data.get("ssh_strict_host_key_checking") or PYINFRA_STRICT_DEFAULT).lower()
        if strict not in STRICT:
            raise RemoteError(
                f"{name}: ssh_strict_host_key_checking {strict!r}: expected one of "
                f"{', '.join(STRICT)}"
            )
        return cls(
            name=name,
            address=str(data.get("ssh_hostname") or name),
            port=int(data["ssh_port"]) if data.get("ssh_port") else None,
            user=str(data.get("ssh_user") or "root"),
            key=os.path.expanduser(data["ssh_key"]) if data.get("ssh_key") else None,
            known_hosts=(
                os.path.expanduser(data["ssh_known_hosts_file"])
                if data.get("ssh_known_hosts_file")
                else None
            ),
            strict=STRICT[strict],
            config_file=(
                os.path.expanduser(data["ssh_config_file"]) if data.get("ssh_config_file") else None
            ),
        )

    @property
    def known_hosts_entry(self) -> str:
        """The name known_hosts files record this host under: ``[addr]:port`` off port 22."""
        return f"[{self.address}]:{self.port}" if self.port and self.port != 22 else self.address

    @property
    def where(self) -> str:
        return f"{self.user}@{self.address}" + (f":{self.port}" if self.port else "")

    def ssh_config(self, known_hosts_copy: str | None = None) -> str:
        """The ssh_config text: gpubox's options first, then the user's and the system's files.

        ``known_hosts_copy`` (with ``strict`` ``no``): the throwaway known_hosts to check against.
        """
        strict, known = self.strict, self.known_hosts
        if strict == "no":
            strict, known = "accept-new", known_hosts_copy
        lines = [
            f"# How gpubox's checks reach {self.name}: its pyinfra host data as OpenSSH options",
            "# (gpubox.remote), then the ssh configuration it would read anyway.",
            f"StrictHostKeyChecking {strict}",
        ]
        if known:
            lines.append(f"UserKnownHostsFile {_quote(known)}")
        lines += [
            "BatchMode yes",
            f"ConnectTimeout {CONNECT_TIMEOUT_S}",
            f"ServerAliveInterval {ALIVE_INTERVAL_S}",
            f"ServerAliveCountMax {ALIVE_COUNT}",
            "LogLevel ERROR",
        ]
        user_config = self.config_file or os.path.expanduser("~/.ssh/config")
        for path in (user_config, "/etc/ssh/ssh_config"):
            if os.path.isfile(path):
                lines.append(f"Include {_quote(os.path.abspath(path))}")
        return "\n".join(lines) + "\n"


def _quote(path: str) -> str:
    return f'"{path}"' if any(c.isspace() for c in path) else path


_CONFIG_DIR: Path | None = None
_CONFIG_LOCK = threading.Lock()


def _config_dir() -> Path:
    global _CONFIG_DIR
    with _CONFIG_LOCK:
        if _CONFIG_DIR is None:
            _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="gpubox-ssh-"))
            atexit.register(shutil.rmtree, _CONFIG_DIR, True)
        return _CONFIG_DIR


def write_ssh_config(target: SshTarget) -> Path:
    """The target's ssh_config in a private temporary folder (removed at exit)."""
    fd, path = tempfile.mkstemp(
        prefix=f"{re.sub(r'[^A-Za-z0-9_.-]', '_', target.name)}-", suffix=".config",
        dir=_config_dir(),
    )  # fmt: skip
    copy = None
    if target.strict == "no":  # pyinfra's "no": unknown keys pass unrecorded, changed ones not
        copy = f"{path[: -len('.config')]}.known_hosts"
        source = target.known_hosts or os.path.expanduser("~/.ssh/known_hosts")
        try:
            shutil.copyfile(source, copy)
        except OSError:
            Path(copy).write_text("")
    with os.fdopen(fd, "w") as f:
        f.write(target.ssh_config(copy))
    return Path(path)


def hostspec(target: SshTarget, config: Path) -> str:
    """The testinfra host spec (``ssh://user@address:port?ssh_config=...``)."""
    spec = f"ssh://{target.user}@{target.address}" + (f":{target.port}" if target.port else "")
    query = [f"ssh_config={config}", f"timeout={CONNECT_TIMEOUT_S}", "controlpersist=0"]
    if target.key:
        query.append(f"ssh_identity_file={target.key}")
    return spec + "?" + "&".join(query)


# ---- running commands: a timeout always, progress lines when asked ------------------------------


Progress = Callable[[float, str], None]  # (seconds so far, the last line it printed on stderr)


@dataclass
class _Call:
    timeout: float
    progress: Progress | None = None
    every: float = 30.0


_CURRENT: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("gpubox_remote_call")


@contextlib.contextmanager
def call(timeout: float, progress: Progress | None = None, every: float = 30.0) -> Iterator[None]:
    """Commands run in this block get ``timeout`` seconds; ``progress(seconds, last stderr
    line)`` is called every ``every`` seconds while one runs (from the waiting thread)."""
    token = _CURRENT.set(_Call(timeout, progress, every))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def run_shell(
    command: bytes | str, timeout: float, progress: Progress | None = None, every: float = 30.0
) -> tuple[int, bytes, bytes]:
    """Run a shell command line in its own process group; kill the group at ``timeout``.

    Stops waiting for output once the command has exited: an ``ssh`` ControlPersist master it
    left behind may keep the pipes open for minutes.
    """
    proc = subprocess.Popen(
        command,
        shell=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    out: list[bytes] = []
    err: list[bytes] = []

    def pump(stream, sink):
        for chunk in iter(stream.readline, b""):
            sink.append(chunk)

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    started = time.monotonic()
    deadline = started + timeout
    if progress is None:
        # Block in waitpid, a timer stopping the command at its deadline: Popen.wait(timeout)
        # polls, with sleeps up to 50 ms after the command has already exited.
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill_group(proc)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            rc = proc.wait()
        finally:
            timer.cancel()
        if expired.is_set():
            raise CommandTimeout(f"still running after {timeout:g} s: stopped")
        for reader in readers:
            reader.join(timeout=2.0)
        return rc, b"".join(out), b"".join(err)
    while True:
        step = deadline - time.monotonic()
        if progress is not None:
            step = min(step, every)
        try:
            rc = proc.wait(timeout=max(0.0, step))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                _kill_group(proc)
                raise CommandTimeout(f"still running after {timeout:g} s: stopped") from None
            last = next((c for c in reversed(err) if c.strip()), b"")
            with contextlib.suppress(Exception):  # progress must never break the command
                progress(time.monotonic() - started, last.decode(errors="replace").strip())
    for reader in readers:
        reader.join(timeout=2.0)
    return rc, b"".join(out), b"".join(err)


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


class _Timed:
    """Mixin for testinfra's command backends (they all run a local command line through
    ``run_local``: ssh, docker, podman, kubectl, lxc, local): a timeout and progress lines."""

    def run_local(self, command: str, *args: str) -> Any:
        current = _CURRENT.get(None) or _Call(DEFAULT_TIMEOUT_S)
        cmd = self.encode(self.quote(command, *args))
        rc, stdout, stderr = run_shell(cmd, current.timeout, current.progress, current.every)
        return self.result(rc, cmd, stdout, stderr)


def _timed_backend_class(base: type) -> type:
    return type(f"Timed{base.__name__}", (_Timed, base), {})


def _timed_host(backend_class: type, *args, **kwargs):
    import testinfra.host

    backend = _timed_backend_class(backend_class)(*args, **kwargs)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def local_host():
    """testinfra's ``local://`` host, its commands timed."""
    from testinfra.backend.local import LocalBackend

    return _timed_host(LocalBackend)


@dataclass
class Connection:
    """One node's testinfra host and what is needed to explain a failure to reach it."""

    name: str
    host: Any  # testinfra.host.Host
    target: SshTarget | None = None  # None: not an SSH connection gpubox made
    config: Path | None = None

    def run(self, command: str, timeout: float, progress: Progress | None = None, every=30.0):
        """``host.run(command)`` under ``timeout``; :class:`RemoteError` (one line) when the
        node cannot be reached, :class:`CommandTimeout` when the command hangs."""
        try:
            with call(timeout, progress, every):
                return self.host.run(command)
        except CommandTimeout as exc:
            raise CommandTimeout(f"{self.name}: `{_short(command)}` {exc}") from None
        except RemoteError:
            raise
        except RuntimeError as exc:  # testinfra's ssh backends: ssh itself exited 255
            result = exc.args[0] if exc.args else None
            stderr = getattr(result, "stderr", "") or str(exc)
            raise self.failure(stderr) from None
        except OSError as exc:
            raise RemoteError(f"{self.name}: cannot run `{_short(command)}`: {exc}") from None

    def failure(self, stderr: str) -> RemoteError:
        """The error for ``ssh``'s own failure (exit 255), from what it printed."""
        if self.target is None:
            return RemoteError(f"{self.name}: cannot reach the node: {_last_line(stderr)}")
        return explain_ssh_failure(self.target, self.config, stderr)


def connect(name: str, data: dict) -> Connection:
    """The connection to inventory host ``name`` (pyinfra host ``data``): ``@local`` hosts run
    here, every other host over OpenSSH (see the module docstring)."""
    if name.startswith("@local"):
        return Connection(name, local_host())
    from testinfra.backend.ssh import SshBackend

    target = SshTarget.from_data(name, data)
    config = write_ssh_config(target)
    host_part, kw = _parse(hostspec(target, config))
    host = _timed_host(SshBackend, host_part, **kw)
    return Connection(name, host, target, config)


def connect_hostspec(spec: str, **options) -> Connection:
    """The connection for a testinfra host spec (``--hosts``): its own backend, commands timed.

    ``paramiko://`` is refused: testinfra's paramiko backend accepts any host key.
    """
    import testinfra.backend

    host_part, kw = testinfra.backend.parse_hostspec(spec)
    for key, value in options.items():
        if value is not None:
            kw.setdefault(key, value)
    connection = kw.get("connection") or ("local" if host_part is None else "ssh")
    kw["connection"] = connection
    if connection == "paramiko":
        raise RemoteError(
            f"--hosts {spec}: testinfra's paramiko backend does not verify SSH host keys; "
            "use ssh:// (OpenSSH: known_hosts, ~/.ssh/config)"
        )
    cls = testinfra.backend.get_backend_class(connection)
    if not hasattr(cls, "run_local") or connection in ("salt", "ansible", "winrm"):
        raise RemoteError(f"--hosts {spec}: the {connection} backend is not supported by gpubox")
    args = () if connection == "local" else (host_part,)
    kw.pop("connection")
    host = _timed_host(cls, *args, **kw)
    name = host.backend.get_hostname() if connection != "local" else "local"
    return Connection(name, host)


def _parse(spec: str) -> tuple[str, dict]:
    import testinfra.backend

    host_part, kw = testinfra.backend.parse_hostspec(spec)
    kw.pop("connection", None)
    return host_part, kw


def _short(command: str, limit: int = 120) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ssh exited 255 and said nothing"


# ---- explaining ssh's failures --------------------------------------------------------------------

_SENT = re.compile(r"fingerprint for the (\S+) key sent by the remote host is\s+(SHA256:[\w+/=]+)")
_OFFENDING = re.compile(r"Offending (\S+) key in (\S+?):(\d+)")
_UNKNOWN = re.compile(r"No (\S+) host key is known for (\S+)")
_SERVER_KEY = re.compile(r"Server host key: (\S+) (SHA256:\S+)")


def explain_ssh_failure(target: SshTarget, config: Path | None, stderr: str) -> RemoteError:
    """One line from what ``ssh`` printed: a host key problem names the fingerprint offered."""
    known = target.known_hosts or "~/.ssh/known_hosts"
    entry = target.known_hosts_entry
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have" in stderr:
        sent = _SENT.search(stderr)
        kind, fingerprint = (sent.group(1), sent.group(2)) if sent else ("", "")
        offending = _OFFENDING.search(stderr)
        where = f"{offending.group(2)}:{offending.group(3)}" if offending else known
        return HostKeyError(
            f"{target.name}: SSH host key of {entry} changed: the node offers {kind} "
            f"{fingerprint or '(fingerprint not shown)'}, {where} records another key; refusing "
            "to connect (someone may be intercepting the connection). If the node was "
            f"reinstalled, check that fingerprint on it and remove the old key: "
            f"ssh-keygen -R {shlex.quote(entry)} -f {shlex.quote(where.rsplit(':', 1)[0])}"
        )
    unknown = _UNKNOWN.search(stderr)
    if unknown or "Host key verification failed" in stderr:
        kind, fingerprint = _offered_key(target, config)
        kind = kind or (unknown.group(1) if unknown else "")
        return HostKeyError(
            f"{target.name}: SSH host key of {entry} is unknown: the node offers {kind} "
            f"{fingerprint or '(fingerprint not shown)'}, not in {known} "
            f"(ssh_strict_host_key_checking: {target.strict}); refusing to connect. Check that "
            f"fingerprint on the node, then add its key to {known}"
        )
    return RemoteError(
        f"{target.name}: cannot connect over SSH ({target.where}): {_last_line(stderr)}"
    )


def _offered_key(target: SshTarget, config: Path | None) -> tuple[str, str]:
    """The key type and fingerprint the node offers: one more ``ssh -v`` attempt (the same
    configuration, so the same route, ProxyJump included), which stops at the key check."""
    argv = ["ssh", "-v", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    if config is not None:
        argv += ["-F", str(config)]
    if target.port:
        argv += ["-o", f"Port={target.port}"]
    argv += ["-o", f"User={target.user}", target.address, "true"]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=CONNECT_TIMEOUT_S * 2,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "", ""
    found = _SERVER_KEY.search(proc.stderr)
    if not found:
        return "", ""
    kind = found.group(1).removeprefix("ssh-").removeprefix("ecdsa-sha2-").upper()
    return ("ECDSA" if kind.startswith("NISTP") else kind), found.group(2)
