"""Simulated GPU nodes: booted Debian systemd-nspawn containers reached over SSH on 127.0.0.1.

Each target is a full booted Debian 13 (trixie) or Debian 12 (bookworm) system (``os``: systemd
as PID 1, sshd, apt) whose NVML library is
the simulated ``libnvidia-ml.so.1`` from :mod:`gpubox.sim.nvml`, driven by a scenario file from
:mod:`gpubox.sim.scenario`. pyinfra deploys to it and pytest-testinfra checks it exactly as it
would a real node; a reboot stops the container and boots the same root file system again, so
``/run`` starts empty as on real hardware.

Layout outside the target::

    $GPUBOX_SIM_CACHE (default /var/cache/gpubox/sim)
        base-<suite>-<hash>.tar.zst  debootstrapped root file system per OS, shared by its targets
        apt-archives/                bind-mounted onto every target's /var/cache/apt/archives
    $GPUBOX_SIM_HOME (default /var/lib/gpubox/sim)/<name>/
        rootfs/                      the target's root file system
        id_ed25519[.pub]             the target's SSH test key (root login)
        known_hosts                  the target's host keys (``[127.0.0.1]:PORT ssh-ed25519 ...``)
        ssh_config                   ``ssh -F ssh_config <name>``
        target.json                  name, os, port, pid, scenario, key path, created, ...
        inventory.json, inventory.py pyinfra host data of this target
        nspawn.log                   console output of every boot

Inside the target: the library at ``/usr/lib/gpubox-sim/libnvidia-ml.so.1`` (not on the linker
path), the scenario at ``/etc/gpubox-sim/scenario.json`` (its PCIe tree as a sysfs in
``/etc/gpubox-sim/sys``, :mod:`gpubox.sim.sysfs`) and the library's state under
``/run/gpubox-sim`` (a tmpfs, cleared by a reboot). The benchmark replay (a simulation input,
:mod:`gpubox.sim.replay`) sits at ``/usr/lib/gpubox-sim/replay.py`` with the benchmark tools'
names linked to it in ``/usr/lib/gpubox-sim/bin/``; it prints the scenario's recorded output.

Everything here needs root (debootstrap, chroot and systemd-nspawn do).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# --------------------------------------------------------------------------------------------
# Recipe of the base root file system. Any change here must bump RECIPE_VERSION (or change the
# package list), which changes the cache key and so rebuilds the base on the next ``up``.
# --------------------------------------------------------------------------------------------

RECIPE_VERSION = 2
# The OS releases a target can run, and the Debian suite each is debootstrapped from.
OS_SUITES = {"debian-13": "trixie", "debian-12": "bookworm"}
DEFAULT_OS = "debian-13"
SUITE = OS_SUITES[DEFAULT_OS]
MIRROR = "http://deb.debian.org/debian"
VARIANT = "minbase"
COMPONENTS = ("main", "contrib", "non-free", "non-free-firmware")
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-sftp-server",  # pyinfra transfers files over SFTP
    "python3",
    "python3-venv",
    "ca-certificates",
    "iproute2",
    "procps",
    "kmod",
    "curl",  # pyinfra files.download
    "gpg",  # pyinfra apt.key, signed third-party repositories
)

DEFAULT_NAME = "sim0"
DEFAULT_SCENARIO = "pg199-quad-debian13"
# A new target's scenario per OS: what the node reports after that OS's deploy (Debian 12 runs
# the first user's cuda-repo install: driver 570.124.06).
DEFAULT_SCENARIOS = {"debian-13": DEFAULT_SCENARIO, "debian-12": "pg199-quad-cuda-repo"}

# Paths inside the target.
LIBRARY_IN_TARGET = "/usr/lib/gpubox-sim/libnvidia-ml.so.1"
SCENARIO_IN_TARGET = "/etc/gpubox-sim/scenario.json"
# The scenario's PCIe tree as a sysfs (gpubox/sim/sysfs.py), where the spec's software.sysfs_root
# points the PCIe path walk: the container's own /sys is the host's, read-only.
SYSFS_IN_TARGET = "/etc/gpubox-sim/sys"
STATE_IN_TARGET = "/run/gpubox-sim"
APT_ARCHIVES_IN_TARGET = "/var/cache/apt/archives"
# The simulated gpu-burn (a simulation input): gpubox/sim/burn_replay.py, linked as the tool.
BURN_REPLAY_IN_TARGET = "/usr/lib/gpubox-sim/burn_replay.py"
GPU_BURN_IN_TARGET = "/usr/lib/gpubox-sim/bin/gpu_burn"
# Benchmark replay (a simulation input): gpubox/sim/replay.py, and the tools' names linked to it.
REPLAY_IN_TARGET = "/usr/lib/gpubox-sim/replay.py"
REPLAY_BIN_IN_TARGET = "/usr/lib/gpubox-sim/bin"
_COLLECTIVES = "all_reduce all_gather alltoall broadcast gather hypercube reduce reduce_scatter"
REPLAY_TOOLS = (
    "bandwidthTest",
    "p2pBandwidthLatencyTest",
    *(f"{c}_perf" for c in f"{_COLLECTIVES} scatter sendrecv".split()),
)

BOOT_TIMEOUT_S = 120.0
HOST_KEY_TYPES = ("ed25519", "ecdsa")
STOP_TIMEOUT_S = 30.0

# Host binary -> Debian package that provides it.
HOST_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "zstd": "zstd",
    "tar": "tar",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
_RUN_TOOLS = ("systemd-nspawn", "zstd", "tar", "ssh", "ssh-keygen")
_BUILD_TOOLS = ("debootstrap", "zstd", "tar")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

Progress = Callable[[str], None]


class SimError(Exception):
    """A problem the user can fix, explained in one message."""


def _stderr_progress(message: str) -> None:
    print(f"gpubox sim: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Paths and host checks
# --------------------------------------------------------------------------------------------


def sim_home() -> Path:
    """Base directory of all targets (``$GPUBOX_SIM_HOME``, default /var/lib/gpubox/sim)."""
    return Path(os.environ.get("GPUBOX_SIM_HOME") or "/var/lib/gpubox/sim").absolute()


def cache_dir() -> Path:
    """Cache of base root file systems and apt archives (``$GPUBOX_SIM_CACHE``)."""
    return Path(os.environ.get("GPUBOX_SIM_CACHE") or "/var/cache/gpubox/sim").absolute()


def apt_archives_dir() -> Path:
    """Host folder bind-mounted onto every target's /var/cache/apt/archives."""
    return cache_dir() / "apt-archives"


def check_root(euid: int | None = None) -> None:
    """Raise SimError unless running as root (``euid`` is for tests)."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise SimError(
            "simulated nodes need root (debootstrap, chroot and systemd-nspawn do): "
            "run this as root, e.g. with sudo"
        )


def check_tools(tools: Sequence[str] = tuple(HOST_TOOLS), path: str | None = None) -> None:
    """Raise SimError naming the apt packages to install if a host tool is missing."""
    missing = [tool for tool in tools if shutil.which(tool, path=path) is None]
    if missing:
        packages = sorted({HOST_TOOLS.get(tool, tool) for tool in missing})
        raise SimError(
            f"missing host tool(s): {', '.join(missing)}; install them with "
            f"`apt-get install {' '.join(packages)}` (or run scripts/host-setup.sh)"
        )


def check_host(
    euid: int | None = None, path: str | None = None, tools: Sequence[str] = _RUN_TOOLS
) -> None:
    """All host prerequisites of running targets: root and the tools."""
    check_root(euid)
    check_tools(tools, path)


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise SimError(
            f"invalid target name {name!r}: use 1-30 lower-case letters, digits and '-', "
            "starting with a letter or digit"
        )
    return name


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _tail(path: Path, lines: int = 20, start: int = 0) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    text = _ANSI.sub("", data.decode(errors="replace"))
    return "\n".join(text.splitlines()[-lines:])


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/mounts") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 2:
                continue
            point = fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def _umount_under(path: Path) -> None:
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        raise SimError(f"could not unmount {', '.join(left)}")


def _remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount point out of the tree (a killed debootstrap leaves
    /proc and /sys mounted inside its root)."""
    if not path.exists() and not path.is_symlink():
        return
    _umount_under(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)
    if path.exists():
        raise SimError(f"could not remove {path}")


def _pid_state(pid: int) -> str | None:
    """The process state letter of ``pid`` (R, S, Z, ...), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    _reap(pid)
    state = _pid_state(pid)
    return state is not None and state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def _is_nspawn_of(pid: int | None, rootfs: Path) -> bool:
    """Whether ``pid`` is a live systemd-nspawn booting ``rootfs`` (guards against a stale
    pid file whose number was reused)."""
    if not _alive(pid):
        return False
    argv = _cmdline(pid)  # type: ignore[arg-type]
    return bool(argv) and argv[0].endswith("systemd-nspawn") and str(rootfs) in argv


def _nspawn_pids_of_machine(machine: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = _cmdline(int(entry))
            if argv and argv[0].endswith("systemd-nspawn") and f"--machine={machine}" in argv:
                pids.append(int(entry))
    return pids


def _container_pids(rootfs: Path) -> list[int]:
    """Processes whose root directory is ``rootfs`` (the container's processes, whatever their
    pid namespace): /proc/PID/root is a magic link, stat() follows it across namespaces."""
    try:
        ref = os.stat(rootfs)
    except OSError:
        return []
    own = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own:
            continue
        try:
            st = os.stat(f"/proc/{entry}/root")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (ref.st_dev, ref.st_ino):
            pids.append(int(entry))
    return pids


def port_free(port: int) -> bool:
    """Whether sshd could listen on 127.0.0.1:port (SO_REUSEADDR, as sshd binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pick_port(avoid: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port_free(port):
            return port
    raise SimError("no free TCP port on 127.0.0.1 for the target's sshd")


# --------------------------------------------------------------------------------------------
# The base root file system (debootstrap, cached as a zstd tarball)
# --------------------------------------------------------------------------------------------


def check_os(os_release: str) -> str:
    if os_release not in OS_SUITES:
        raise SimError(
            f"unknown OS {os_release!r} for a simulated node; known: {', '.join(OS_SUITES)}"
        )
    return os_release


def base_key(os_release: str = DEFAULT_OS) -> str:
    """Hash of everything the base root file system of ``os_release`` is built from."""
    recipe = {
        "suite": OS_SUITES[check_os(os_release)],
        "mirror": MIRROR,
        "variant": VARIANT,
        "components": list(COMPONENTS),
        "packages": sorted(PACKAGES),
        "recipe": RECIPE_VERSION,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def base_tarball_path(os_release: str = DEFAULT_OS) -> Path:
    return cache_dir() / f"base-{OS_SUITES[check_os(os_release)]}-{base_key(os_release)}.tar.zst"


_TAR_FLAGS = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"]


def _customize_base(root: Path) -> None:
    """Per-recipe changes to the fresh debootstrap root, before it is packed."""
    # Host keys and machine-id are made per target.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    # Keep downloaded debs: /var/cache/apt/archives is a host folder shared by all targets.
    # (apt-get install takes that folder's lock without waiting: two targets installing at the
    # same moment make the second fail with "Unable to lock the download directory".)
    _write_atomic(
        root / "etc/apt/apt.conf.d/90gpubox-sim",
        "// gpubox sim: /var/cache/apt/archives is a host folder shared by all simulated nodes\n"
        'Binary::apt::APT::Keep-Downloaded-Packages "true";\n'
        'APT::Keep-Downloaded-Packages "true";\n'
        "// wait for dpkg's lock rather than fail at once\n"
        'DPkg::Lock::Timeout "300";\n',
    )
    # The simulated library's state directory (a tmpfs: a reboot clears it).
    _write_atomic(
        root / "usr/lib/tmpfiles.d/gpubox-sim.conf",
        f"d {STATE_IN_TARGET} 0755 root root -\n",
    )
    # No debs in the image (package lists are already gone: a deploy runs apt-get update).
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def ensure_base(progress: Progress | None = _stderr_progress, os_release: str = DEFAULT_OS) -> Path:
    """The cached base tarball of ``os_release``, built first if missing (takes ~30-60 s).

    Built atomically: the tarball appears under its final name only once complete, and a
    build killed half-way leaves only a build folder that the next build removes.
    """
    say = progress or (lambda _message: None)
    tarball = base_tarball_path(os_release)
    key = base_key(os_release)
    if tarball.exists():
        return tarball
    check_tools(_BUILD_TOOLS)
    cache = cache_dir()
    with _locked(cache / ".build.lock"):
        if tarball.exists():  # built by someone else while we waited for the lock
            return tarball
        for stale in cache.glob("build-*"):  # left behind by a killed build
            _remove_tree(stale)
        for stale in cache.glob(".base-*.partial"):
            stale.unlink()
        build = Path(tempfile.mkdtemp(prefix=f"build-{key}-", dir=cache))
        try:
            root = build / "root"
            _debootstrap(root, build / "debootstrap.log", say, OS_SUITES[os_release])
            _customize_base(root)
            say(f"packing base root file system into {tarball}")
            partial = cache / f".base-{key}.{os.getpid()}.partial"
            with open(partial, "wb") as out:
                tar = subprocess.Popen(
                    ["tar", *_TAR_FLAGS, "-C", str(root), "-cf", "-", "."],
                    stdout=subprocess.PIPE,
                )
                assert tar.stdout is not None
                zstd = subprocess.run(["zstd", "-q", "-T0", "-3"], stdin=tar.stdout, stdout=out)
                tar.stdout.close()
                tar_rc = tar.wait()
            if tar_rc != 0 or zstd.returncode != 0:
                partial.unlink()
                raise SimError(f"packing the base root file system failed (tar {tar_rc})")
            os.replace(partial, tarball)
        finally:
            _remove_tree(build)
    say(f"base root file system cached: {tarball} ({tarball.stat().st_size >> 20} MiB)")
    return tarball


def _debootstrap(root: Path, log: Path, say: Progress, suite: str = SUITE) -> None:
    cmd = [
        "debootstrap",
        f"--variant={VARIANT}",
        f"--components={','.join(COMPONENTS)}",
        f"--include={','.join(PACKAGES)}",
        suite,
        str(root),
        MIRROR,
    ]
    say(f"building the base root file system: debootstrap {suite} (about a minute, once)")
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        next_report = start + 10
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() >= next_report:
                    next_report += 10
                    last = _tail(log, 1)
                    say(f"  debootstrap {time.monotonic() - start:.0f} s: {last}")
        except BaseException:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
    if proc.returncode != 0:
        details = _tail(log, 15)
        inner = _tail(root / "debootstrap/debootstrap.log", 10)
        if inner:
            details += "\n  debootstrap/debootstrap.log:\n" + inner
        raise SimError(
            f"debootstrap failed (exit {proc.returncode}). The Debian archive {MIRROR} must be "
            f"reachable from this machine. Last lines of its log:\n{_indent(details)}"
        )
    say(f"debootstrap done in {time.monotonic() - start:.0f} s")


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    """One simulated node and how to reach it."""

    name: str
    port: int
    key: Path
    ssh_config: Path
    state_dir: Path
    scenario: str
    created: str
    pid: int | None = None
    running: bool = False
    booted: str | None = None
    base: Path | None = None
    os: str = DEFAULT_OS  # the Debian release it runs (OS_SUITES)

    @property
    def rootfs(self) -> Path:
        return self.state_dir / "rootfs"

    @property
    def machine(self) -> str:
        return f"gpubox-{self.name}"

    @property
    def state(self) -> str:
        return "running" if self.running else "stopped"

    @property
    def known_hosts(self) -> Path:
        """The target's own host keys, as a user's ``known_hosts`` would hold them."""
        return self.state_dir / "known_hosts"

    @property
    def hosts(self) -> str:
        """testinfra ``--hosts`` value (OpenSSH with the target's ssh_config: keys verified)."""
        return f"ssh://{self.name}?ssh_config={self.ssh_config}"

    @property
    def host_data(self) -> dict:
        """pyinfra host data (connect with the @ssh connector). The sim made the target's host
        keys, so it knows them: pyinfra and the checks verify them strictly, as against a real
        node whose key was recorded once."""
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.port,
            "ssh_user": "root",
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
        }

    @property
    def inventory_host(self) -> tuple[str, dict]:
        return (self.name, self.host_data)

    @property
    def inventory_file(self) -> Path:
        """A pyinfra inventory file with this one host (``pyinfra INVENTORY deploy.py``)."""
        return self.state_dir / "inventory.py"

    @property
    def log(self) -> Path:
        return self.state_dir / "nspawn.log"

    def ssh_command(self, *command: str) -> list[str]:
        """argv of ``ssh`` into the target as root (``command`` empty: a login shell)."""
        return ["ssh", "-F", str(self.ssh_config), self.name, *command]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "os": self.os,
            "port": self.port,
            "pid": self.pid,
            "scenario": self.scenario,
            "key": str(self.key),
            "ssh_config": str(self.ssh_config),
            "known_hosts": str(self.known_hosts),
            "rootfs": str(self.rootfs),
            "created": self.created,
            "booted": self.booted,
            "base": str(self.base) if self.base else None,
            "state": self.state,
            "hosts": self.hosts,
            "inventory": str(self.inventory_file),
            "host_data": self.host_data,
        }


def _state_dir(name: str) -> Path:
    return sim_home() / validate_name(name)


def _load(name: str) -> tuple[Target, dict] | None:
    state_dir = _state_dir(name)
    try:
        raw = json.loads((state_dir / "target.json").read_text())
    except (OSError, ValueError):
        return None
    target = Target(
        name=name,
        port=int(raw.get("port") or 0),
        key=state_dir / "id_ed25519",
        ssh_config=state_dir / "ssh_config",
        state_dir=state_dir,
        scenario=raw.get("scenario") or DEFAULT_SCENARIO,
        created=raw.get("created") or "",
        pid=raw.get("pid"),
        booted=raw.get("booted"),
        base=Path(raw["base"]) if raw.get("base") else None,
        os=raw.get("os") or DEFAULT_OS,  # targets made before the OS was recorded: Debian 13
    )
    target.running = _is_nspawn_of(target.pid, target.rootfs)
    if not target.running:
        target.pid = None
    return target, raw


def _save(target: Target, extra: dict | None = None) -> None:
    record = {
        "name": target.name,
        "os": target.os,
        "port": target.port,
        "pid": target.pid,
        "scenario": target.scenario,
        "key": str(target.key),
        "ssh_config": str(target.ssh_config),
        "rootfs": str(target.rootfs),
        "created": target.created,
        "booted": target.booted,
        "base": str(target.base) if target.base else None,
        **(extra or {}),
    }
    _write_atomic(target.state_dir / "target.json", json.dumps(record, indent=2) + "\n")
    _write_atomic(
        target.state_dir / "inventory.json",
        json.dumps([list(target.inventory_host)], indent=2) + "\n",
    )
    _write_atomic(
        target.inventory_file,
        "# pyinfra inventory of one simulated node, written by `gpubox sim up`.\n"
        f"hosts = [{target.inventory_host!r}]\n",
    )
    _write_atomic(
        target.ssh_config,
        f"Host {target.name}\n"
        "    HostName 127.0.0.1\n"
        f"    Port {target.port}\n"
        "    User root\n"
        f"    IdentityFile {target.key}\n"
        "    IdentitiesOnly yes\n"
        "    BatchMode yes\n"
        "    StrictHostKeyChecking yes\n"
        f"    UserKnownHostsFile {target.known_hosts}\n"
        "    LogLevel ERROR\n"
        "    ConnectTimeout 5\n",
    )


def _require(name: str) -> None:
    if not (_state_dir(name) / "target.json").is_file():
        raise SimError(f"no simulated node named {name!r} (under {sim_home()})")


def get_target(name: str) -> Target:
    """The target ``name`` (running or stopped); SimError if there is none."""
    loaded = _load(name)
    if loaded is None:
        raise SimError(f"no simulated node named {name!r} (under {sim_home()})")
    return loaded[0]


def list_targets() -> list[Target]:
    """All targets under ``sim_home()``, with ``running`` checked against the live process."""
    home = sim_home()
    if not home.is_dir():
        return []
    targets = []
    for entry in sorted(home.iterdir()):
        if entry.is_dir() and _NAME_RE.match(entry.name):
            loaded = _load(entry.name)
            if loaded is not None:
                targets.append(loaded[0])
    return targets


def inventory_hosts() -> list[tuple[str, dict]]:
    """``[(name, pyinfra host data)]`` for every running target."""
    return [target.inventory_host for target in list_targets() if target.running]


# ----- scenario and library -----------------------------------------------------------------


def _scenario_names() -> list[str]:
    from gpubox.sim import scenario as scenario_mod

    return sorted(scenario_mod.names())


def check_scenario(scenario: str) -> str:
    """``scenario`` as a target records it: a known scenario name as is, an existing file as its
    absolute path; SimError for anything else."""
    if Path(scenario).is_file():
        return str(Path(scenario).resolve())
    known = _scenario_names()
    if scenario not in known:
        raise SimError(
            f"unknown scenario {scenario!r}; known: {', '.join(known) or '(none)'} "
            "(or give the path of a scenario file)"
        )
    return scenario


def _install_scenario(rootfs: Path, scenario: str) -> None:
    from gpubox.sim import scenario as scenario_mod
    from gpubox.sim import sysfs

    check_scenario(scenario)
    dest = rootfs / SCENARIO_IN_TARGET.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        scenario_mod.resolve_to_file(scenario, tmp)
        os.chmod(tmp, 0o644)
        sysfs.install(scenario_mod.load(scenario), rootfs / SYSFS_IN_TARGET.lstrip("/"))
        os.replace(tmp, dest)
    except SimError:
        raise
    except Exception as exc:
        raise SimError(f"scenario {scenario!r} could not be resolved: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _install_library(rootfs: Path) -> None:
    from gpubox.sim import nvml

    try:
        library = Path(nvml.library_path())
    except Exception as exc:
        raise SimError(f"building the simulated NVML library failed: {exc}") from exc
    dest = rootfs / LIBRARY_IN_TARGET.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(library, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def _install_replay(rootfs: Path) -> None:
    """The benchmark replay and, in REPLAY_BIN_IN_TARGET, the tools' names linked to it: run under
    such a name it prints the scenario's recorded output (see gpubox/sim/replay.py)."""
    source = Path(__file__).resolve().with_name("replay.py")
    dest = rootfs / REPLAY_IN_TARGET.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    folder = rootfs / REPLAY_BIN_IN_TARGET.lstrip("/")
    folder.mkdir(parents=True, exist_ok=True)
    link = os.path.relpath(dest, folder)
    for tool in REPLAY_TOOLS:
        path = folder / tool
        if path.is_symlink() and os.readlink(path) == link:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(link)


def _install_burn_replay(rootfs: Path) -> None:
    """The simulated gpu-burn (gpubox/sim/burn_replay.py) and ``gpu_burn``/``gpu-burn`` linked to
    it next to GPU_BURN_IN_TARGET: it prints gpu-burn's output from the scenario's burn timeline
    while the simulated NVML follows the same timeline."""
    source = Path(__file__).resolve().with_name("burn_replay.py")
    dest = rootfs / BURN_REPLAY_IN_TARGET.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    folder = (rootfs / GPU_BURN_IN_TARGET.lstrip("/")).parent
    folder.mkdir(parents=True, exist_ok=True)
    link = os.path.relpath(dest, folder)
    for name in ("gpu_burn", "gpu-burn"):
        path = folder / name
        if path.is_symlink() and os.readlink(path) == link:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        path.symlink_to(link)


HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def _install_host_cas(rootfs: Path, source: Path = HOST_CA_DIR) -> None:
    """Trust the certificate authorities the host added locally (a TLS-inspecting proxy, a
    company CA), as a real node on the same network would: the deploy fetches from PyPI."""
    certs = sorted(source.rglob("*.crt")) if source.is_dir() else []
    dest = rootfs / "usr/local/share/ca-certificates/gpubox-host"
    current = sorted(dest.glob("*.crt")) if dest.is_dir() else []
    bundle = rootfs / "etc/ssl/certs/ca-certificates.crt"
    trusted = bundle.read_text(errors="replace") if bundle.is_file() else ""
    in_bundle = all(_pem_body(c) in trusted for c in certs)
    if in_bundle and [c.read_bytes() for c in certs] == [c.read_bytes() for c in current]:
        return
    _remove_tree(dest)
    if not certs:
        return
    dest.mkdir(parents=True)
    for i, cert in enumerate(certs):
        shutil.copyfile(cert, dest / f"{i:02d}-{cert.name}")
    result = subprocess.run(
        ["chroot", str(rootfs), "update-ca-certificates"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SimError(f"update-ca-certificates in the target failed: {result.stderr.strip()}")


def _pem_body(cert: Path) -> str:
    """The base64 body of a PEM certificate (what a CA bundle must contain to trust it)."""
    lines = cert.read_text(errors="replace").splitlines()
    return "\n".join(line for line in lines if line and not line.startswith("-----"))[:200]


# ----- preparing a root file system ---------------------------------------------------------


def base_dir_path(key: str | None = None, os_release: str = DEFAULT_OS) -> Path:
    """The unpacked base root file system: the read-only lower layer of every target of an OS."""
    suite = OS_SUITES[check_os(os_release)]
    return cache_dir() / f"base-{suite}-{key or base_key(os_release)}"


def ensure_base_dir(
    progress: Progress | None = _stderr_progress, os_release: str = DEFAULT_OS
) -> Path:
    """The unpacked base of ``os_release`` (from the cached tarball, built first if missing)."""
    say = progress or (lambda _message: None)
    lower = base_dir_path(os_release=os_release)
    if lower.is_dir():
        return lower
    tarball = ensure_base(progress, os_release)
    with _locked(cache_dir() / ".build.lock"):
        if lower.is_dir():
            return lower
        for stale in cache_dir().glob(f".{lower.name}.*.partial"):
            _remove_tree(stale)
        partial = lower.with_name(f".{lower.name}.{os.getpid()}.partial")
        partial.mkdir(parents=True)
        say(f"unpacking {tarball.name}")
        zstd = subprocess.Popen(["zstd", "-q", "-dc", str(tarball)], stdout=subprocess.PIPE)
        assert zstd.stdout is not None
        tar = subprocess.run(
            ["tar", *_TAR_FLAGS, "-xpf", "-", "-C", str(partial)],
            stdin=zstd.stdout,
            capture_output=True,
        )
        zstd.stdout.close()
        if zstd.wait() != 0 or tar.returncode != 0:
            _remove_tree(partial)
            raise SimError(
                f"unpacking {tarball} failed: {tar.stderr.decode(errors='replace').strip()} "
                "(delete the tarball to rebuild it)"
            )
        os.rename(partial, lower)
    return lower


def _is_mountpoint(path: Path) -> bool:
    return str(path) in _mounts_under(path)


def _mount_rootfs(target: Target, lower: Path) -> None:
    """Mount the target's root: an overlay of its own upper layer on the shared base."""
    if _is_mountpoint(target.rootfs):
        return
    if not lower.is_dir():
        raise SimError(
            f"the base root file system of {target.name!r} ({lower}) is gone; "
            f"`gpubox sim down --purge {target.name}` and create it again"
        )
    for part in ("upper", "work", "rootfs"):
        (target.state_dir / part).mkdir(exist_ok=True)
    options = (
        f"lowerdir={lower},upperdir={target.state_dir / 'upper'},"
        f"workdir={target.state_dir / 'work'}"
    )
    result = subprocess.run(
        ["mount", "-t", "overlay", f"gpubox-sim-{target.name}", "-o", options, str(target.rootfs)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SimError(
            f"mounting the overlay root of {target.name!r} failed: {result.stderr.strip()} "
            "(the kernel needs overlayfs)"
        )


def _passwd_ids(rootfs: Path, user: str) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        for line in (rootfs / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[0] == user:
                return int(fields[2]), int(fields[3])
    return None


def _first_boot_setup(target: Target) -> None:
    """Identity of a new target: host keys, machine-id, hostname (each only if missing)."""
    rootfs = target.rootfs
    for kind in HOST_KEY_TYPES:  # no RSA: generating one takes ~1 s, and nothing needs it
        key = rootfs / f"etc/ssh/ssh_host_{kind}_key"
        if not key.exists():
            for stale in (key, key.with_name(key.name + ".pub")):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            subprocess.run(
                ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"root@{target.name}"]
                + ["-f", str(key)],
                check=True,
                capture_output=True,
            )
    # A root SSH login leaves user@0.service behind, which can hang in final-sigkill at
    # shutdown until nspawn's own stop timeout (30 s): keep a simulated reboot quick.
    for path, text in (
        ("etc/systemd/system.conf.d/gpubox-sim.conf", "[Manager]\nDefaultTimeoutStopSec=10s\n"),
        ("etc/systemd/system/user@.service.d/gpubox-sim.conf", "[Service]\nTimeoutStopSec=3s\n"),
    ):
        dropin = rootfs / path
        if not dropin.exists():
            dropin.parent.mkdir(parents=True, exist_ok=True)
            dropin.write_text(f"# gpubox sim: quick shutdown of a simulated node\n{text}")
    machine_id = rootfs / "etc/machine-id"
    if not machine_id.exists() or len(machine_id.read_text().strip()) != 32:
        machine_id.write_text(os.urandom(16).hex() + "\n")
    (rootfs / "etc/hostname").write_text(f"{target.name}\n")
    hosts_file = rootfs / "etc/hosts"
    hosts = hosts_file.read_text() if hosts_file.exists() else ""
    if target.name not in hosts.split():
        hosts = f"127.0.0.1\tlocalhost\n127.0.1.1\t{target.name}\n" + "".join(
            line + "\n" for line in hosts.splitlines() if not line.startswith("127.0.")
        )
        hosts_file.write_text(hosts)


def _ensure_key(target: Target) -> None:
    if not target.key.exists():
        with contextlib.suppress(FileNotFoundError):
            target.key.with_suffix(".pub").unlink()
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"gpubox-sim-{target.name}"]
            + ["-f", str(target.key)],
            check=True,
            capture_output=True,
        )
    ssh_dir = target.rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    _write_atomic(
        ssh_dir / "authorized_keys", target.key.with_suffix(".pub").read_text(), mode=0o600
    )


def _write_known_hosts(target: Target) -> None:
    """``known_hosts`` of the target's host keys at its current port (rootfs mounted)."""
    lines = []
    for kind in HOST_KEY_TYPES:
        pub = (target.rootfs / f"etc/ssh/ssh_host_{kind}_key.pub").read_text().split()
        lines.append(f"[127.0.0.1]:{target.port} {pub[0]} {pub[1]}\n")
    _write_atomic(target.known_hosts, "".join(lines))


def _write_sshd_config(target: Target) -> None:
    _write_atomic(
        target.rootfs / "etc/ssh/sshd_config.d/gpubox-sim.conf",
        "# written by gpubox sim up: the simulated node's sshd shares the host's network\n"
        f"Port {target.port}\n"
        "ListenAddress 127.0.0.1\n"
        + "".join(f"HostKey /etc/ssh/ssh_host_{kind}_key\n" for kind in HOST_KEY_TYPES)
        + "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "UseDNS no\n",
    )


def _prepare_apt_archives(target: Target) -> Path:
    """The target's own apt archive folder, seeded from the machine-wide cache.

    Each target gets its own folder (apt locks its archive folder without waiting, so targets
    sharing one would fail when deployed in parallel); packages already downloaded by any
    target are hard-linked in, and new ones go back to the shared cache when it stops."""
    archives = target.state_dir / "apt-archives"
    partial = archives / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    _link_debs(apt_archives_dir(), archives)
    ids = _passwd_ids(target.rootfs, "_apt")
    if ids is not None:  # apt downloads as _apt into partial/
        with contextlib.suppress(OSError):
            os.chown(partial, ids[0], 0)
            os.chmod(partial, 0o700)
    return archives


def _link_debs(source: Path, dest: Path) -> None:
    """Hard-link (or copy, across file systems) every .deb of ``source`` missing in ``dest``."""
    if not source.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    have = {p.name for p in dest.glob("*.deb")}
    for deb in source.glob("*.deb"):
        if deb.name in have:
            continue
        tmp = dest / f".{deb.name}.{os.getpid()}.tmp"
        try:
            os.link(deb, tmp)
        except OSError:
            shutil.copyfile(deb, tmp)
        os.replace(tmp, dest / deb.name)


# ----- boot and stop ------------------------------------------------------------------------


def _nspawn_argv(target: Target, archives: Path) -> list[str]:
    return [
        shutil.which("systemd-nspawn") or "systemd-nspawn",
        "--register=no",
        "--keep-unit",
        "-b",
        "-D",
        str(target.rootfs),
        "--console=passive",
        f"--machine={target.machine}",
        "--link-journal=no",
        f"--bind={archives}:{APT_ARCHIVES_IN_TARGET}",
    ]


def _spawn(target: Target, argv: list[str]) -> int:
    """Start nspawn in its own session, detached from us (not our child); return its pid."""
    with open(target.log, "ab") as log:
        log.write(f"\n=== gpubox sim: boot at {_now()} ===\n".encode())
    shell = 'setsid "$@" </dev/null >>"$GPUBOX_SIM_LOG" 2>&1 & echo $!'
    env = {**os.environ, "GPUBOX_SIM_LOG": str(target.log)}
    out = subprocess.run(
        ["sh", "-c", shell, "sh", *argv], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


def _ssh_quiet(target: Target, *command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        target.ssh_command(*command),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class _PortTaken(Exception):
    pass


def _container_exec(nspawn_pid: int, *command: str) -> subprocess.CompletedProcess | None:
    """Run ``command`` inside the container of ``nspawn_pid`` (nsenter into its init's
    namespaces, no SSH needed); None when that is not possible."""
    try:
        children = Path(f"/proc/{nspawn_pid}/task/{nspawn_pid}/children").read_text().split()
    except OSError:
        return None
    if not children or shutil.which("nsenter") is None:
        return None
    try:
        return subprocess.run(
            ["nsenter", "-t", children[0], "-m", "-u", "-i", "-p", "--", *command],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        return None


def _container_run(nspawn_pid: int, *command: str) -> str:
    result = _container_exec(nspawn_pid, *command)
    return "(could not run it)" if result is None else (result.stdout + result.stderr).strip()


def _sshd_failed(nspawn_pid: int) -> bool:
    """Whether ssh.service inside the container has failed (e.g. its port was taken after we
    picked it); False when that cannot be told."""
    result = _container_exec(nspawn_pid, "systemctl", "is-failed", "--quiet", "ssh.service")
    return result is not None and result.returncode == 0


def _wait_ready(target: Target, log_start: int, timeout: float) -> str:
    """Wait until the target's systemd reports running or degraded; return that state."""
    start = time.monotonic()
    deadline = start + timeout
    last = ""
    next_sshd_check = start + 1.0
    while time.monotonic() < deadline:
        if not _alive(target.pid):
            raise SimError(
                f"systemd-nspawn of {target.name!r} exited during boot. Last lines of "
                f"{target.log}:\n{_indent(_tail(target.log, 20, log_start))}"
            )
        if time.monotonic() >= next_sshd_check:
            next_sshd_check = time.monotonic() + 1.0
            if _sshd_failed(target.pid):  # type: ignore[arg-type]
                if port_open(target.port):  # someone else listens there
                    raise _PortTaken()
                raise SimError(
                    f"sshd of {target.name!r} failed to start. Its journal:\n"
                    + _indent(_container_run(target.pid, "journalctl", "-u", "ssh", "-n", "15"))
                )
        if not port_open(target.port, timeout=0.3):
            time.sleep(0.1)
            continue
        remaining = max(1.0, deadline - time.monotonic())
        try:
            result = _ssh_quiet(
                target, "systemctl", "is-system-running", "--wait", timeout=remaining
            )
        except subprocess.TimeoutExpired:
            break
        last = (result.stdout.strip() or result.stderr.strip()).splitlines()[-1:] or [""]
        last = last[0]
        if last in ("running", "degraded"):
            return last
        if result.returncode == 255:  # ssh itself failed (sshd not quite ready)
            time.sleep(0.2)
            continue
        raise SimError(
            f"{target.name!r} booted into state {last!r} (expected running or degraded). "
            f"Last lines of {target.log}:\n{_indent(_tail(target.log, 20, log_start))}"
        )
    raise SimError(
        f"{target.name!r} was not ready within {timeout:.0f} s (last answer: {last or 'none'}). "
        f"Last lines of {target.log}:\n{_indent(_tail(target.log, 20, log_start))}"
    )


def _boot(target: Target, say: Progress, timeout: float, keep_port: bool) -> None:
    """Boot ``target.rootfs``; on an sshd port collision, pick another port and boot again."""
    if target.base is None:
        raise SimError(f"{target.name!r} has no base recorded; purge it and create it again")
    for attempt in range(3):
        _mount_rootfs(target, target.base)
        _install_host_cas(target.rootfs)  # at every boot: the host's CAs may have changed
        archives = _prepare_apt_archives(target)
        taken = {t.port for t in list_targets() if t.name != target.name and t.port}
        if not target.port or target.port in taken or not port_free(target.port):
            if keep_port and target.port:
                say(f"port {target.port} is taken; moving {target.name} to another port")
            target.port = _pick_port(taken)
        _write_sshd_config(target)
        _write_known_hosts(target)
        log_start = target.log.stat().st_size if target.log.exists() else 0
        target.pid = _spawn(target, _nspawn_argv(target, archives))
        target.booted = _now()
        target.running = True
        _save(target)
        try:
            state = _wait_ready(target, log_start, timeout)
        except _PortTaken:
            say(f"sshd of {target.name} could not listen on port {target.port}; retrying")
            _stop(target, STOP_TIMEOUT_S)
            target.port = 0
            if attempt == 2:
                raise SimError(
                    f"sshd of {target.name!r} found no free port after 3 tries"
                ) from None
            continue
        except BaseException:
            _stop(target, STOP_TIMEOUT_S)
            raise
        _save(target, {"system_state": state})
        return


def _stop(target: Target, timeout: float) -> None:
    """Stop the container: SIGTERM to nspawn (orderly halt), SIGKILL after ``timeout``; then
    make sure no process of the container and no mount under its root is left."""
    pid = target.pid
    if pid and _is_nspawn_of(pid, target.rootfs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    # Anything left running inside the root (nspawn itself killed hard) goes too.
    for _ in range(50):
        left = [p for p in _container_pids(target.rootfs) if _alive(p)]
        if not left:
            break
        for leftover in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover, signal.SIGKILL)
        time.sleep(0.1)
    _umount_under(target.rootfs)
    with contextlib.suppress(OSError):  # share what this node downloaded with later nodes
        _link_debs(target.state_dir / "apt-archives", apt_archives_dir())
    propagate = Path("/run/systemd/nspawn/propagate") / target.machine
    if propagate.exists():
        _umount_under(propagate)
        with contextlib.suppress(OSError):
            shutil.rmtree(propagate)
    if pid and _alive(pid) and _is_nspawn_of(pid, target.rootfs):
        raise SimError(f"systemd-nspawn of {target.name!r} (pid {pid}) did not stop")
    target.pid = None
    target.running = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ----- public operations --------------------------------------------------------------------


def up(
    name: str = DEFAULT_NAME,
    scenario: str | None = None,
    *,
    os_release: str | None = None,
    timeout: float = BOOT_TIMEOUT_S,
    progress: Progress | None = _stderr_progress,
) -> Target:
    """Boot the target ``name``; create it from the cached base first if it does not exist.

    ``os_release`` (OS_SUITES; default DEFAULT_OS) is chosen when the target is created; booting
    an existing target with another one is an error. ``scenario`` (a scenario name or file)
    defaults to the OS's DEFAULT_SCENARIOS entry for a new target and to the target's current
    scenario when its root file system already exists ("boot again").
    """
    say = progress or (lambda _message: None)
    check_host()
    validate_name(name)
    state_dir = _state_dir(name)
    with _locked(sim_home() / f".{name}.lock"):
        loaded = _load(name)
        raw = loaded[1] if loaded is not None else {}
        if loaded is not None and loaded[0].running:
            raise SimError(
                f"simulated node {name!r} is already running (pid {loaded[0].pid}, port "
                f"{loaded[0].port}); use `gpubox sim reboot {name}` or `gpubox sim down {name}`"
            )
        machine = f"gpubox-{name}"
        others = _nspawn_pids_of_machine(machine)
        if others:
            raise SimError(
                f"a simulated node named {name!r} is already running (pid {others[0]}), "
                "probably under another GPUBOX_SIM_HOME: pick another name"
            )
        if os_release is not None:
            check_os(os_release)
        if loaded is not None:
            target = loaded[0]
            if os_release is not None and os_release != target.os:
                raise SimError(
                    f"simulated node {name!r} runs {target.os}, not {os_release}: "
                    f"`gpubox sim down --purge {name}` first, or pick another name"
                )
        else:
            chosen = os_release or DEFAULT_OS
            target = Target(
                name=name,
                port=0,
                key=state_dir / "id_ed25519",
                ssh_config=state_dir / "ssh_config",
                state_dir=state_dir,
                scenario=DEFAULT_SCENARIOS[chosen],
                created=_now(),
                os=chosen,
            )
        if scenario is not None:
            target.scenario = scenario
        target.scenario = check_scenario(target.scenario)
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir, 0o700)
        if loaded is None or not raw.get("base"):
            lower = ensure_base_dir(progress, target.os)
            say(f"creating {name} on {lower.name}")
        else:
            lower = Path(raw["base"])
        target.base = lower
        _mount_rootfs(target, lower)
        try:
            _first_boot_setup(target)
            _ensure_key(target)
            _install_library(target.rootfs)
            _install_burn_replay(target.rootfs)
            _install_replay(target.rootfs)
            _install_scenario(target.rootfs, target.scenario)
            _save(target)
            say(f"booting {name}")
            _boot(target, say, timeout, keep_port=loaded is not None)
        except BaseException:
            if not _is_nspawn_of(target.pid, target.rootfs):
                _umount_under(target.rootfs)
            raise
        return target


def reboot(
    name: str,
    *,
    timeout: float = BOOT_TIMEOUT_S,
    stop_timeout: float = STOP_TIMEOUT_S,
    progress: Progress | None = _stderr_progress,
) -> Target:
    """Orderly stop + boot of the same root file system; the port stays the same."""
    say = progress or (lambda _message: None)
    check_host()
    _require(name)
    with _locked(sim_home() / f".{name}.lock"):
        loaded = _load(name)
        if loaded is None:
            raise SimError(f"no simulated node named {name!r} (under {sim_home()})")
        target, raw = loaded
        if not target.running:
            raise SimError(f"simulated node {name!r} is not running; `gpubox sim up {name}`")
        target.pid = raw.get("pid")
        say(f"stopping {name}")
        _stop(target, stop_timeout)
        _save(target)
        say(f"booting {name}")
        _boot(target, say, timeout, keep_port=True)
        return target


def down(
    name: str,
    purge: bool = False,
    *,
    stop_timeout: float = STOP_TIMEOUT_S,
    progress: Progress | None = _stderr_progress,
) -> bool:
    """Stop ``name``; ``purge`` also deletes its root file system and state.

    Idempotent: stopping a stopped target, or one that does not exist, is fine. Returns whether
    the target existed.
    """
    say = progress or (lambda _message: None)
    check_root()
    validate_name(name)
    state_dir = _state_dir(name)
    if not state_dir.exists():
        return False
    with _locked(sim_home() / f".{name}.lock"):
        loaded = _load(name)
        if loaded is not None:
            target = loaded[0]
            if target.running:
                say(f"stopping {name}")
            _stop(target, stop_timeout)
            if not purge:
                _save(target)
        elif (state_dir / "rootfs").exists():  # no (readable) target.json: still clean up
            _stop(
                Target(
                    name,
                    0,
                    state_dir / "id_ed25519",
                    state_dir / "ssh_config",
                    state_dir,
                    DEFAULT_SCENARIO,
                    "",
                ),
                stop_timeout,
            )
        existed = state_dir.exists()
        if purge and existed:
            say(f"deleting {state_dir}")
            _remove_tree(state_dir)
    if purge or not existed:
        with contextlib.suppress(FileNotFoundError):
            (sim_home() / f".{name}.lock").unlink()
    return existed


def set_scenario(name: str, scenario: str) -> Target:
    """Switch the target's scenario: replaced inside a running target at once (the next NVML
    process reads it); a stopped target gets it when it boots."""
    check_root()
    _require(name)
    with _locked(sim_home() / f".{name}.lock"):
        loaded = _load(name)
        if loaded is None:
            raise SimError(f"no simulated node named {name!r} (under {sim_home()})")
        target, raw = loaded
        scenario = check_scenario(scenario)
        if target.running:
            _install_scenario(target.rootfs, scenario)
            _install_burn_replay(target.rootfs)  # a target booted before it existed gets it
            _install_replay(target.rootfs)  # a target booted before the replay existed gets it
        target.scenario = scenario
        keep = {k: raw[k] for k in ("system_state",) if k in raw}
        _save(target, keep)
        return target


def ssh(name: str, *command: str, timeout: float | None = 120) -> subprocess.CompletedProcess:
    """Run ``command`` on the target as root; returns the completed process (text output)."""
    target = get_target(name)
    if not target.running:
        raise SimError(f"simulated node {name!r} is not running")
    return subprocess.run(
        target.ssh_command(*command),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_OS",
    "DEFAULT_SCENARIO",
    "DEFAULT_SCENARIOS",
    "OS_SUITES",
    "LIBRARY_IN_TARGET",
    "SCENARIO_IN_TARGET",
    "STATE_IN_TARGET",
    "SimError",
    "Target",
    "apt_archives_dir",
    "cache_dir",
    "check_host",
    "check_root",
    "check_scenario",
    "check_tools",
    "down",
    "ensure_base",
    "get_target",
    "inventory_hosts",
    "list_targets",
    "port_free",
    "port_open",
    "reboot",
    "set_scenario",
    "sim_home",
    "ssh",
    "up",
]
