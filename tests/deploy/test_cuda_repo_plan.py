"""The whole ``deploy.py`` planned for a ``cuda-repo`` node, through pyinfra's own API.

NVIDIA's CUDA apt repository cannot be reached from here, so this path is tested the way pyinfra
tests its own operations: host data + facts in, the operations and shell commands pyinfra would run
out. No SSH, no network, no root.

How a plan is made (the ``plan_deploy`` fixture): a pyinfra ``State`` and ``Inventory`` for one
host built from the host's data, the real ``deploy.py`` loaded with ``load_deploy_file`` as
``pyinfra INVENTORY deploy.py`` loads it, and every ``host.get_fact`` answered from a table the
test supplies. A fact the table lacks stops the plan (:class:`MissingFact`) and a table entry the
deploy never reads fails it, so each table below lists exactly the facts the deploy reads. Then
``state.get_op_order()`` is walked as pyinfra's ``run_ops`` walks it, without a connection: each
operation's ``command_generator`` runs with ``state.is_executing`` set, so ``_if`` conditions
apply, and each operation is recorded as succeeded with the commands it yielded, so an earlier
operation's ``did_change()`` works. The facts stay as the table says, as during pyinfra's change
detection: a plan for the node the table describes.

Plans run in pyinfra's API mode (operations ordered by call order); one test plans in CLI mode
(ordered by call stack, as the command line) and checks both agree. The one thing built for real is
gpubox's wheel (``uv build``), which the deploy uploads.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyinfra
import pytest
from pyinfra.api import Config, FactBase, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.exceptions import PyinfraError
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_config, ctx_host, ctx_inventory, ctx_state
from pyinfra.facts.deb import DebPackage, DebPackages
from pyinfra.facts.files import Directory, File, Link, Sha1File, Sha256File
from pyinfra.facts.server import TmpDir, Which
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra_cli.util import load_deploy_file

from gpubox import __version__
from gpubox.inventory import load as load_inventory
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy.py"
if str(ROOT) not in sys.path:  # as deploy.py does, so `tasks` is the module the deploy imports
    sys.path.insert(0, str(ROOT))

from tasks.gpubox_venv import Bytecode, artifacts  # noqa: E402
from tasks.manifest import ManifestCurrent  # noqa: E402
from tasks.ops import AptState, DpkgInterrupted, FileText, FolderState, HeldPackages, UrlProblem  # noqa: E402

# =================================================================================================
# The harness: plan deploy.py with facts from a table
# =================================================================================================

FactKey = tuple[type, tuple[tuple[str, Any], ...]]


class MissingFact(PyinfraError):
    """The deploy read a fact the test's table does not answer.

    A PyinfraError, so pyinfra's deploy-file loader passes it through as it is.
    """


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def fact(cls: type[FactBase], *args: Any, **kwargs: Any) -> FactKey:
    """The table key for ``host.get_fact(cls, *args, **kwargs)``.

    Arguments are bound to the fact's ``command`` signature and those at their default dropped, so
    ``fact(SystemdStatus, services=["x.service"])`` is the key ``systemd.service`` reads, whatever
    other arguments it passes at their defaults.
    """
    signature = inspect.signature(cls().command)
    bound = signature.bind(*args, **kwargs)
    params = signature.parameters
    kept = {
        name: _freeze(value)
        for name, value in bound.arguments.items()
        if params[name].default is inspect.Parameter.empty or value != params[name].default
    }
    return cls, tuple(sorted(kept.items()))


def describe(key: FactKey) -> str:
    cls, kwargs = key
    inner = ", ".join(f"{k}={v!r}" for k, v in kwargs)
    return f"fact({cls.__name__}{', ' if inner else ''}{inner})"


class FactTable:
    """Answers ``host.get_fact`` from ``{fact(...): value}`` and records what was read."""

    def __init__(self, table: dict[FactKey, Any]):
        self.table = dict(table)
        self.read: list[FactKey] = []

    def get(self, cls: type[FactBase], args: tuple, kwargs: dict) -> Any:
        if cls is AptState:  # one round trip on the node: the three facts it is made of
            self.read.append(fact(AptState))
            return tuple(self.get(c, (), {}) for c in (DpkgInterrupted, DebPackages, HeldPackages))
        # Global operation arguments (`_sudo`, ...) are not part of a fact's identity.
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        key = fact(cls, *args, **kwargs)
        if key not in self.table:
            raise MissingFact(
                f"the deploy read {describe(key)}, which the test's fact table does not answer: "
                "add it (None where the node has no such thing)"
            )
        self.read.append(key)
        return self.table[key]

    def unread(self) -> list[str]:
        read = set(self.read)
        return sorted(describe(k) for k in self.table if k not in read)


@dataclass
class PlannedOp:
    """One operation of the plan and what running it would do."""

    name: str  # "NVIDIA driver | apt pins for the NVIDIA stack"
    will_change: bool  # pyinfra's change detection (before `_if` conditions)
    commands: list[Any] = field(default_factory=list)  # yielded when run (`_if` applied)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(" | ", 1)[-1]

    @property
    def shell(self) -> list[str]:
        """The shell commands, as pyinfra would send them (unmasked)."""
        return [c.get_raw_value() for c in self.commands if isinstance(c, StringCommand)]

    @property
    def argv(self) -> list[list[str]]:
        """Each shell command split as the shell splits it."""
        return [shlex.split(command) for command in self.shell]

    @property
    def scripts(self) -> list[str]:
        """The script of each ``sh -c '<script>'`` command."""
        return [a[2] for a in self.argv if a[:2] == ["sh", "-c"] and len(a) == 3]

    @property
    def uploads(self) -> dict[str, bytes]:
        """``{remote path: content}`` of every file it would upload."""
        out = {}
        for c in self.commands:
            if isinstance(c, FileUploadCommand):
                if hasattr(c.src, "getvalue"):
                    value = c.src.getvalue()
                    out[c.dest] = value.encode() if isinstance(value, str) else value
                else:
                    out[c.dest] = Path(c.src).read_bytes()
        return out

    @property
    def calls(self) -> list[Callable]:
        """Python callbacks it would run on the controller (``python.call``, ``server.reboot``)."""
        return [c.function for c in self.commands if isinstance(c, FunctionCommand)]


@dataclass
class Plan:
    ops: list[PlannedOp]
    facts: FactTable

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def op(self, name: str) -> PlannedOp:
        """The one operation called ``name`` (in full, or the part after ``Deploy | ``)."""
        found = [op for op in self.ops if name in (op.name, op.short_name)]
        if len(found) != 1:
            listing = "\n  ".join(self.names)
            raise AssertionError(f"{len(found)} operations named {name!r} in:\n  {listing}")
        return found[0]

    def has(self, name: str) -> bool:
        return any(name in (op.name, op.short_name) for op in self.ops)

    def changing(self) -> list[str]:
        """Names of the operations that would run at least one command."""
        return [op.name for op in self.ops if op.commands]

    @property
    def uploads(self) -> dict[str, bytes]:
        return {dest: data for op in self.ops for dest, data in op.uploads.items()}


@contextmanager
def _use(manager, value) -> Iterator[None]:
    old = manager.get()
    manager.set(value)
    try:
        yield
    finally:
        manager.set(old)


def _plan(
    monkeypatch, data: dict, facts: dict[FactKey, Any], name: str, exact: bool, cli: bool
) -> Plan:
    table = FactTable(facts)
    # CLI mode orders operations by their call stacks (as `pyinfra INVENTORY deploy.py`), API mode
    # by call order: the same order for one host, and API mode is several times faster.
    monkeypatch.setattr(pyinfra, "is_cli", cli)
    monkeypatch.setattr(Host, "get_fact", lambda _, cls, *a, **kw: table.get(cls, a, kw))
    # pyinfra memoizes the host's temporary folder (a fact) per host *name* for the process.
    monkeypatch.setattr(Host._get_temp_directory, "cache", {})
    inventory = Inventory(([(name, data)], {}))
    config = Config()
    state = State(check_for_changes=True)
    state.cwd = str(ROOT)
    state.init(inventory, config)
    host = inventory.get_host(name)
    ops = []
    with _use(ctx_state, state), _use(ctx_inventory, inventory), _use(ctx_config, config):
        state.set_stage(StateStage.Connect)
        state.activate_host(host)  # "connected": every fact comes from the table
        state.set_stage(StateStage.Prepare)
        state.current_op_file_number = 0
        load_deploy_file(state, str(DEPLOY))
        state.set_stage(StateStage.Execute)
        state.is_executing = True
        with _use(ctx_host, host):
            for op_hash in state.get_op_order():
                (op_name,) = state.get_op_meta(op_hash).names
                op_data = state.get_op_data_for_host(host, op_hash)
                meta = op_data.operation_meta
                planned = PlannedOp(op_name, bool(meta.will_change))
                planned.commands = list(op_data.command_generator())
                meta.set_complete(True, planned.commands, CommandOutput([]))
                ops.append(planned)
    if exact and table.unread():
        raise AssertionError(
            "the fact table answers facts the deploy never read (drop them from the table):\n  "
            + "\n  ".join(table.unread())
        )
    return Plan(ops, table)


@pytest.fixture(scope="module", autouse=True)
def _wheel_folder_removed():
    """The deploy builds gpubox's wheel once per process into a temporary folder it keeps; remove
    the one this module caused."""
    built_before = artifacts.cache_info().currsize > 0
    yield
    if not built_before and artifacts.cache_info().currsize:
        wheel, _ = artifacts()
        shutil.rmtree(wheel.parent, ignore_errors=True)
        artifacts.cache_clear()


_PLANS: dict[str, Plan] = {}


@pytest.fixture
def plan_deploy(monkeypatch):
    """``plan_deploy(host_data, facts, exact=True, cli=False) -> Plan`` of ``deploy.py``.

    A plan depends only on its inputs, so each distinct one is made once per test session (tests
    only read plans).
    """

    def plan(data: dict, facts: dict[FactKey, Any], exact: bool = True, cli: bool = False):
        key = repr((sorted(data.items()), sorted(map(repr, facts.items())), exact, cli))
        if key not in _PLANS:
            with monkeypatch.context() as patch:
                _PLANS[key] = _plan(patch, data, facts, "home", exact, cli)
        return _PLANS[key]

    return plan


# =================================================================================================
# The node: inventories/home.py's host, and the facts of a fresh and of an up-to-date node
# =================================================================================================

OPT = "/opt/gpubox"
KEYRING_DEB = "/var/cache/gpubox/cuda-keyring_1.1-1_all.deb"
PIN_FILE = "/etc/apt/preferences.d/gpubox-nvidia.pref"
BLACKLIST = "/etc/modprobe.d/gpubox-blacklist-nouveau.conf"
WHEEL = f"{OPT}/wheels/gpubox-{__version__}-py3-none-any.whl"
REQUIREMENTS = f"{OPT}/wheels/requirements.txt"
CHECKS = f"{OPT}/checks"
GPUBOX = f"{OPT}/venv/bin/gpubox"
SPEC_JSON = "/etc/gpubox/spec.json"
MANIFEST_INPUTS = "/etc/gpubox/manifest-inputs.json"
CLOCK_UNIT = "/etc/systemd/system/gpubox-clocks.service"
GRUB_DROPIN = "/etc/default/grub.d/gpubox-iommu.cfg"
ACS_SCRIPT = "/usr/local/sbin/gpubox-acs-off"
ACS_UNIT = "/etc/systemd/system/gpubox-acs-off.service"
PERSISTENCED = "nvidia-persistenced.service"
CLOCKS = "gpubox-clocks.service"
ACS = "gpubox-acs-off.service"
ACCEPT = "gpubox-acceptance.service"
ACCEPT_UNIT = f"/etc/systemd/system/{ACCEPT}"
RUNS = "/var/lib/gpubox/runs"

KEYRING = {  # os: (repository, sha256 of its cuda-keyring_1.1-1_all.deb)
    "ubuntu-24.04": (
        "ubuntu2404",
        "d2a6b11c096396d868758b86dab1823b25e14d70333f1dfa74da5ddaf6a06dba",
    ),
    "ubuntu-22.04": (
        "ubuntu2204",
        "d93190d50b98ad4699ff40f4f7af50f16a76dac3bb8da1eaaf366d47898ff8df",
    ),
    "debian-12": ("debian12", "e7f219eab6fe4819cdb5c15b98233dc3420302d9c00883219cd3d896857cf48d"),
}
CUDA_KEYRING_GPG = "/usr/share/keyrings/cuda-archive-keyring.gpg"


def repository(os_release: str) -> str:
    return (
        f"https://developer.download.nvidia.com/compute/cuda/repos/{KEYRING[os_release][0]}/x86_64/"
    )


def sources_list(os_release: str) -> str:
    """Where cuda-keyring puts its sources entry (and the deploy keeps it)."""
    return f"/etc/apt/sources.list.d/cuda-{KEYRING[os_release][0]}-x86_64.list"


NCCL_TESTS_URL = "https://github.com/NVIDIA/nccl-tests/archive/v2.17.6.tar.gz"
NCCL_TESTS_SHA256 = "38974e70342150ede0e3fb8fd24bfe60ccbde90fa20241716ba8bb338e6b61a0"
SAMPLES_URL = "https://github.com/NVIDIA/cuda-samples/archive/refs/tags/v12.4.tar.gz"
SAMPLES_SHA256 = "aa28fa2227768dd31ebbf9cd48b265a0c8810fae03e02c6079c0fa71bbea7319"
GENCODE = "-gencode=arch=compute_80,code=sm_80"
GPU_BURN_COMMIT = "9aefd7c0cc603bbc8c3c102f5338c6af26f8127c"
GPU_BURN_URL = f"https://github.com/wilicc/gpu-burn/archive/{GPU_BURN_COMMIT}.tar.gz"
GPU_BURN_SHA256 = "bc1b598bcd6317f45f2fd48cc2c5e2c569598a957fc258577fab5e07b27b6cf0"
GPU_BURN_TGZ = f"{OPT}/src/gpu-burn-{GPU_BURN_COMMIT}.tar.gz"
GPU_BURN = f"{OPT}/gpu-burn/9aefd7c0cc60"
NVCC = "/usr/local/cuda-12.8/bin/nvcc"

# A fresh server or cloud install: a few base packages, none of ours (no compiler, no headers).
BASE_PACKAGES = {
    "ubuntu-24.04": {
        "bash": {"5.2.21-2ubuntu4"},
        "ca-certificates": {"20240203"},
        "curl": {"8.5.0-2ubuntu10.6"},
        "python3": {"3.12.3-0ubuntu2"},
        "systemd": {"255.4-1ubuntu8.6"},
        "wget": {"1.21.4-1ubuntu4.1"},
    },
    "ubuntu-22.04": {
        "bash": {"5.1-6ubuntu1.1"},
        "ca-certificates": {"20240203~22.04.1"},
        "curl": {"7.81.0-1ubuntu1.20"},
        "python3": {"3.10.6-1~22.04.1"},
        "systemd": {"249.11-0ubuntu3.12"},
        "wget": {"1.21.2-2ubuntu1.1"},
    },
    "debian-12": {  # a Debian netinst has wget, not curl
        "bash": {"5.2.15-2+b7"},
        "ca-certificates": {"20230311"},
        "python3": {"3.11.2-1+b1"},
        "systemd": {"252.33-1~deb12u1"},
        "wget": {"1.21.3-1+b2"},
    },
}

# What apt installed for each pinned pattern on the up-to-date Ubuntu 24.04 node, spelt as
# NVIDIA's repository and Ubuntu spell them.
INSTALLED_24_04 = {
    "cuda-keyring": "1.1-1",
    "cuda-drivers-570": "570.124.06-0ubuntu1",
    "cuda-drivers": "570.124.06-0ubuntu1",
    "cuda-toolkit-12-8": "12.8.1-1",
    "libnccl2": "2.26.2-1+cuda12.8",
    "libnccl-dev": "2.26.2-1+cuda12.8",
    "linux-headers-generic": "6.8.0-60.63",
    "g++": "4:13.2.0-7ubuntu1",
    "make": "4.3-4.1build2",
    "python3-venv": "3.12.3-0ubuntu2",
    "libopenmpi-dev": "4.1.6-7ubuntu2",
    "openmpi-bin": "4.1.6-7ubuntu2",
    "pciutils": "1:3.10.0-2build1",
}
HELD = {"cuda-drivers-570", "cuda-drivers", "cuda-toolkit-12-8", "libnccl2", "libnccl-dev"}


def root_file(mode: int = 644) -> dict:
    return {"user": "root", "group": "root", "mode": mode, "size": 1024}


def root_dir(mode: int = 755) -> dict:
    return {"user": "root", "group": "root", "mode": mode}


def root_link(target: str) -> dict:
    return {"user": "root", "group": "root", "link_target": target}


def local_mode(path: Path) -> int:
    return int(oct(path.stat().st_mode)[-3:])


def local_sha1(remote_path: str) -> str:
    """The sha1 of the checks/ file uploaded to ``remote_path``."""
    return hashlib.sha1((ROOT / "checks" / remote_path.rsplit("/", 1)[1]).read_bytes()).hexdigest()


def local_checks() -> list[tuple[str, int]]:
    """``(remote path, mode)`` of each file ``synced_folder`` uploads from checks/ (it changes)."""
    src = ROOT / "checks"
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]  # bytecode is not copied
        if dirpath != str(src) or dirnames:
            raise AssertionError(f"checks/ has sub-folders {dirnames}: teach this test about them")
        out += [
            (f"{CHECKS}/{name}", local_mode(src / name))
            for name in sorted(filenames)
            if not name.endswith(".pyc")
        ]
    return out


@dataclass(frozen=True)
class Layout:
    """Where the deploy puts the spec's downloads and builds."""

    nccl_tests_tgz: str
    nccl_tests: str  # build prefix
    samples_tgz: str
    samples: str

    @staticmethod
    def of(data: dict) -> Layout:
        sw = NodeSpec.from_data(data, host="home").software
        return Layout(
            nccl_tests_tgz=f"{OPT}/src/nccl-tests-{sw.nccl_tests.version}.tar.gz",
            nccl_tests=f"{OPT}/nccl-tests/{sw.nccl_tests.version}",
            samples_tgz=f"{OPT}/src/cuda-samples-{sw.cuda_samples.version}.tar.gz",
            samples=f"{OPT}/cuda-samples/{sw.cuda_samples.version}",
        )


STAMP = ".gpubox-build.json"


def fresh_node(data: dict, update_grub: str | None = "/usr/sbin/update-grub") -> dict:
    """Every fact the deploy reads on a freshly installed node: nothing of ours on it."""
    at = Layout.of(data)
    tuning = data.get("tuning", {})
    os_release = data["software"]["os"]
    repo = NodeSpec.from_data(data, host="home").software.cuda_repo.resolved_url(os_release)
    facts = {
        fact(DebPackages): BASE_PACKAGES[os_release],
        fact(HeldPackages): set(),
        fact(DpkgInterrupted): None,  # no install was ever cut short here
        fact(TmpDir): "/tmp",  # where pyinfra stages uploads
        # NVIDIA driver: the repository answers; its keyring and sources entry, apt pins,
        # nouveau blacklist, persistence daemon
        fact(UrlProblem, url=f"{repo}Release"): None,
        fact(File, path=KEYRING_DEB): None,
        fact(DebPackage, package=KEYRING_DEB): None,
        fact(File, path=sources_list(os_release)): None,
        fact(Directory, path=sources_list(os_release)): None,
        fact(Directory, path="/etc/apt/sources.list.d"): root_dir(),
        fact(File, path=PIN_FILE): None,
        fact(Directory, path=PIN_FILE): None,
        fact(Directory, path="/etc/apt/preferences.d"): root_dir(),
        fact(File, path=BLACKLIST): None,
        fact(Directory, path=BLACKLIST): None,
        fact(Directory, path="/etc/modprobe.d"): root_dir(),
        fact(Which, command="update-initramfs"): "/usr/sbin/update-initramfs",
        fact(SystemdStatus, services=[PERSISTENCED]): {},
        fact(SystemdEnabled, services=[PERSISTENCED]): {},
        # nccl-tests and the CUDA samples: downloads, build stamps, links
        fact(File, path=at.nccl_tests_tgz): None,
        fact(FileText, path=f"{at.nccl_tests}/{STAMP}"): None,
        fact(Link, path=f"{OPT}/nccl-tests/current"): None,
        fact(Directory, path=f"{OPT}/nccl-tests"): None,
        fact(File, path=at.samples_tgz): None,
        fact(FileText, path=f"{at.samples}/{STAMP}"): None,
        fact(Link, path=f"{OPT}/bin/bandwidthTest"): None,
        fact(Link, path=f"{OPT}/bin/p2pBandwidthLatencyTest"): None,
        fact(Directory, path=f"{OPT}/bin"): None,
        # gpu-burn: the pinned upstream commit, its build stamp, the link
        fact(File, path=GPU_BURN_TGZ): None,
        fact(FileText, path=f"{GPU_BURN}/{STAMP}"): None,
        fact(Link, path=f"{OPT}/bin/gpu_burn"): None,
        # the node spec, gpubox's venv, the checks
        fact(Directory, path="/etc/gpubox"): None,
        fact(File, path=SPEC_JSON): None,
        fact(Directory, path=SPEC_JSON): None,
        fact(File, path=WHEEL): None,
        fact(Directory, path=WHEEL): None,
        fact(Directory, path=f"{OPT}/wheels"): None,
        fact(File, path=REQUIREMENTS): None,
        fact(Directory, path=REQUIREMENTS): None,
        fact(File, path=f"{OPT}/venv/pyvenv.cfg"): None,
        fact(FolderState, path=CHECKS): None,
        # PCIe tuning: is anything of ours there (to remove, or to update)?
        fact(File, path=GRUB_DROPIN): None,
        fact(Which, command="update-grub"): update_grub,
        fact(File, path=ACS_UNIT): None,
        fact(File, path=ACS_SCRIPT): None,
        # the clock-lock unit
        fact(File, path=CLOCK_UNIT): None,
        fact(Directory, path=CLOCK_UNIT): None,
        fact(Directory, path="/etc/systemd/system"): root_dir(),
        fact(SystemdStatus, services=[CLOCKS]): {},
        fact(SystemdEnabled, services=[CLOCKS]): {},
        # the boot-time acceptance unit and its records folder
        fact(Directory, path=RUNS): None,
        fact(File, path=ACCEPT_UNIT): None,
        fact(Directory, path=ACCEPT_UNIT): None,
        fact(SystemdStatus, services=[ACCEPT]): {},
        fact(SystemdEnabled, services=[ACCEPT]): {},
        # the manifest (`gpubox manifest check` cannot run yet: "stale")
        fact(File, path=MANIFEST_INPUTS): None,
        fact(Directory, path=MANIFEST_INPUTS): None,
        fact(ManifestCurrent, gpubox=GPUBOX): False,
    }
    if tuning.get("iommu_passthrough"):
        facts[fact(Directory, path=GRUB_DROPIN)] = None
        facts[fact(Directory, path="/etc/default/grub.d")] = root_dir()
    if tuning.get("disable_acs"):
        facts[fact(Directory, path=ACS_SCRIPT)] = None
        facts[fact(Directory, path="/usr/local/sbin")] = root_dir()
        facts[fact(Directory, path=ACS_UNIT)] = None
        facts[fact(SystemdStatus, services=[ACS])] = {}
        facts[fact(SystemdEnabled, services=[ACS])] = {}
    return facts


def installed_node(data: dict, fresh: Plan) -> dict:
    """Every fact the deploy reads on an Ubuntu 24.04 node the deploy of ``data`` completed on.

    Packages installed at the pinned versions and held; downloads present with the pinned
    sha256; build stamps holding what ``fresh``'s builds write; every uploaded file holding what
    ``fresh`` uploads (its sha1); links, units and the persistence daemon enabled and active.
    """
    at = Layout.of(data)
    sw = NodeSpec.from_data(data, host="home").software
    tuning = data.get("tuning", {})
    uploaded = fresh.uploads

    def as_uploaded(path: str, mode: int = 644) -> dict:
        digest = hashlib.sha1(uploaded[path]).hexdigest()
        return {fact(File, path=path): root_file(mode), fact(Sha1File, path=path): digest}

    packages = {**BASE_PACKAGES["ubuntu-24.04"]}
    packages.update({name: {version} for name, version in INSTALLED_24_04.items()})
    repo = sw.cuda_repo.resolved_url("ubuntu-24.04")
    facts = {
        fact(DebPackages): packages,
        fact(HeldPackages): set(HELD),
        fact(DpkgInterrupted): None,
        fact(UrlProblem, url=f"{repo}Release"): None,
        fact(File, path=KEYRING_DEB): root_file(),
        fact(Sha256File, path=KEYRING_DEB): KEYRING["ubuntu-24.04"][1],
        fact(DebPackage, package=KEYRING_DEB): {"name": "cuda-keyring", "version": "1.1-1"},
        **as_uploaded(sources_list("ubuntu-24.04")),
        fact(Directory, path="/etc/apt/sources.list.d"): root_dir(),
        **as_uploaded(PIN_FILE),
        fact(Directory, path="/etc/apt/preferences.d"): root_dir(),
        **as_uploaded(BLACKLIST),
        fact(Directory, path="/etc/modprobe.d"): root_dir(),
        fact(Which, command="update-initramfs"): "/usr/sbin/update-initramfs",
        fact(SystemdStatus, services=[PERSISTENCED]): {PERSISTENCED: True},
        fact(SystemdEnabled, services=[PERSISTENCED]): {PERSISTENCED: True},
        fact(File, path=at.nccl_tests_tgz): root_file(),
        fact(Sha256File, path=at.nccl_tests_tgz): sw.nccl_tests.sha256,
        fact(FileText, path=f"{at.nccl_tests}/{STAMP}"): written_stamp(
            fresh.op(f"build nccl-tests {sw.nccl_tests.version} for {GENCODE}")
        ),
        fact(Link, path=f"{OPT}/nccl-tests/current"): root_link(at.nccl_tests),
        fact(File, path=at.samples_tgz): root_file(),
        fact(Sha256File, path=at.samples_tgz): sw.cuda_samples.sha256,
        fact(FileText, path=f"{at.samples}/{STAMP}"): written_stamp(
            fresh.op(f"build bandwidthTest and p2pBandwidthLatencyTest for {GENCODE}")
        ),
        fact(Link, path=f"{OPT}/bin/bandwidthTest"): root_link(f"{at.samples}/bandwidthTest"),
        fact(Link, path=f"{OPT}/bin/p2pBandwidthLatencyTest"): root_link(
            f"{at.samples}/p2pBandwidthLatencyTest"
        ),
        fact(File, path=GPU_BURN_TGZ): root_file(),
        fact(Sha256File, path=GPU_BURN_TGZ): GPU_BURN_SHA256,
        fact(FileText, path=f"{GPU_BURN}/{STAMP}"): written_stamp(
            fresh.op("build gpu-burn 9aefd7c0cc60 for compute_80")
        ),
        fact(Link, path=f"{OPT}/bin/gpu_burn"): root_link(f"{GPU_BURN}/gpu_burn"),
        fact(Directory, path="/etc/gpubox"): root_dir(),
        **as_uploaded(SPEC_JSON),
        **as_uploaded(WHEEL),
        fact(Directory, path=f"{OPT}/wheels"): root_dir(),
        **as_uploaded(REQUIREMENTS),
        fact(File, path=f"{OPT}/venv/pyvenv.cfg"): root_file(),
        fact(File, path=GPUBOX): root_file(755),
        fact(FolderState, path=CHECKS): {
            "": ("d", str(local_mode(ROOT / "checks")), None),
            **{
                path.rsplit("/", 1)[1]: ("f", str(mode), local_sha1(path))
                for path, mode in local_checks()
            },
        },
        fact(Bytecode, venv=f"{OPT}/venv", checks=CHECKS): True,
        fact(Which, command="update-grub"): "/usr/sbin/update-grub",
        **as_uploaded(CLOCK_UNIT),
        fact(Directory, path="/etc/systemd/system"): root_dir(),
        fact(SystemdStatus, services=[CLOCKS]): {CLOCKS: True},
        fact(SystemdEnabled, services=[CLOCKS]): {CLOCKS: True},
        fact(Directory, path=RUNS): root_dir(),
        **as_uploaded(ACCEPT_UNIT),
        fact(SystemdStatus, services=[ACCEPT]): {ACCEPT: True},
        fact(SystemdEnabled, services=[ACCEPT]): {ACCEPT: True},
        **as_uploaded(MANIFEST_INPUTS),
        fact(ManifestCurrent, gpubox=GPUBOX): True,
    }
    if tuning.get("iommu_passthrough"):
        facts.update(as_uploaded(GRUB_DROPIN))
        facts[fact(Directory, path="/etc/default/grub.d")] = root_dir()
    else:
        facts[fact(File, path=GRUB_DROPIN)] = None
    if tuning.get("disable_acs"):
        facts.update(as_uploaded(ACS_SCRIPT, 755))
        facts.update(as_uploaded(ACS_UNIT))
        facts[fact(Directory, path="/usr/local/sbin")] = root_dir()
        facts[fact(SystemdStatus, services=[ACS])] = {ACS: True}
        facts[fact(SystemdEnabled, services=[ACS])] = {ACS: True}
    else:
        facts[fact(File, path=ACS_UNIT)] = None
        facts[fact(File, path=ACS_SCRIPT)] = None
    return facts


def written_stamp(build: PlannedOp) -> str:
    """The stamp text a ``build_once`` script writes (``printf '%s\\n' '<json>' > .../stamp``)."""
    (script,) = build.scripts
    words = shlex.split(script)
    i = words.index("printf")
    assert words[i + 1] == "%s\\n" and words[i + 3] == ">", words[i : i + 5]
    return words[i + 2]


def apt_install_requests(op: PlannedOp) -> list[str]:
    """The ``name=pattern`` words of the operation's ``apt-get install`` commands."""
    out = []
    for argv in op.argv:
        if "apt-get" not in argv or "install" not in argv:
            continue
        words = iter(argv[argv.index("install") + 1 :])
        for word in words:
            if word == "-o":
                next(words)
            elif not word.startswith("-"):
                out.append(word)
    return out


def plan_shell(plan: Plan) -> list[str]:
    """Every shell command of the plan, in order."""
    return [command for op in plan.ops for command in op.shell]


def apt_holds(op: PlannedOp) -> list[str]:
    return [w for argv in op.argv if argv[:2] == ["apt-mark", "hold"] for w in argv[2:]]


def pins(text: str) -> dict[str, tuple[str, str]]:
    """``{package: (pin, priority)}`` of an apt preferences file."""
    out = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if line and line[0] != "#"
        )
        if fields:
            out[fields["Package"]] = (fields["Pin"], fields["Pin-Priority"])
    return out


@pytest.fixture(scope="module")
def home() -> dict:
    """``inventories/home.py``'s host data, read through gpubox's (pyinfra's) inventory loader."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("GPUBOX_HOME_HOST", "GPUBOX_HOME_USER", "GPUBOX_HOME_OS"):
            patch.delenv(name, raising=False)
        (host,) = load_inventory(ROOT / "inventories" / "home.py")
    sw = host.spec.software
    assert (sw.os, sw.source, sw.driver_version, sw.cuda_version, sw.nccl_version) == (
        "ubuntu-24.04",
        "cuda-repo",
        "570.124.06",
        "12.8.1",
        "2.26.2",
    )
    return host.data


def variant(data: dict, tuning: dict | None = None, **software: Any) -> dict:
    """``data`` with some ``software`` fields (and ``tuning``) replaced."""
    out = copy.deepcopy(data)
    out["software"] = {**out["software"], **software}
    if tuning is not None:
        out["tuning"] = tuning
    return out


# =================================================================================================
# The tests
# =================================================================================================


def test_the_deploy_reads_only_these_kinds_of_fact(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))  # exact: every table entry read, none missing
    kinds = {cls.__name__ for cls, _ in plan.facts.read}
    assert kinds == {
        "UrlProblem",
        "AptState",
        "DpkgInterrupted",
        "DebPackages",
        "DebPackage",
        "HeldPackages",
        "File",
        "Directory",
        "Link",
        "FileText",
        "FolderState",
        "Which",
        "SystemdStatus",
        "SystemdEnabled",
        "TmpDir",
        "ManifestCurrent",
    }


def test_the_cli_plans_what_the_api_plans(plan_deploy, home):
    """``pyinfra INVENTORY deploy.py`` orders operations by call stack; this module's plans use
    API mode (call order, much faster): for one host both give the same operations and commands."""
    cli = plan_deploy(home, fresh_node(home), cli=True)
    api = plan_deploy(home, fresh_node(home))
    assert cli.names == api.names
    assert [op.shell for op in cli.ops] == [op.shell for op in api.ops]
    assert cli.uploads.keys() == api.uploads.keys()


def test_operations_run_in_the_order_deploy_py_composes_them(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    deploys = list(dict.fromkeys(name.split(" | ")[0] for name in plan.names))
    assert deploys == [
        "NVIDIA driver",
        "CUDA toolkit and NCCL",
        "nccl-tests",
        "bandwidth tools",
        "gpu-burn",
        "gpubox node spec",
        "gpubox on the node",
        "PCIe P2P tuning",
        "GPU clock lock at boot",
        "boot-time acceptance",
        "install manifest",
    ]
    at = plan.names.index
    # The repository's key and the pins come before apt update, which comes before any install.
    keyring = at("NVIDIA driver | NVIDIA CUDA repository keyring (sha256-verified)")
    assert keyring < at("NVIDIA driver | install cuda-keyring")
    assert at("NVIDIA driver | install cuda-keyring") < at(
        "NVIDIA driver | apt update (sources or pins changed)"
    )
    assert at("NVIDIA driver | apt pins for the NVIDIA stack") < at(
        "NVIDIA driver | apt update (sources or pins changed)"
    )
    update = at("NVIDIA driver | apt update (sources or pins changed)")
    installs = [i for i, op in enumerate(plan.ops) if apt_install_requests(op)]
    assert installs and min(installs) > update
    # Kernel headers before the driver (DKMS builds the module when the driver installs).
    assert at("NVIDIA driver | kernel headers (DKMS builds the modules)") < at(
        "NVIDIA driver | driver 570.124.06"
    )
    # The compilers and CUDA before the builds; the spec lands only after every download and build.
    builds = [i for i, op in enumerate(plan.ops) if f" for {GENCODE}" in op.name]
    downloads = [i for i, op in enumerate(plan.ops) if "(sha256-verified)" in op.name]
    assert at("CUDA toolkit and NCCL | NCCL 2.26.2") < min(builds)
    assert at("gpubox node spec | node spec /etc/gpubox/spec.json") > max(builds + downloads)
    # The clock unit runs gpubox: the venv comes first. The manifest is last.
    assert at("gpubox on the node | create /opt/gpubox/venv") < at(
        "GPU clock lock at boot | gpubox-clocks.service (1140 MHz)"
    )
    assert plan.names[-1] == "install manifest | write /etc/gpubox/manifest.json"


@pytest.mark.parametrize(
    "os_release", ["ubuntu-24.04", "ubuntu-22.04", "debian-12"], ids=lambda os_: os_
)
def test_the_repository_keyring_is_downloaded_sha256_verified_then_installed(
    plan_deploy, home, os_release
):
    data = variant(home, os=os_release)
    plan = plan_deploy(data, fresh_node(data))
    repo, sha256 = KEYRING[os_release]
    url = f"https://developer.download.nvidia.com/compute/cuda/repos/{repo}/x86_64/cuda-keyring_1.1-1_all.deb"
    (script,) = plan.op("NVIDIA CUDA repository keyring (sha256-verified)").scripts
    part = f"{KEYRING_DEB}.part"
    assert f"curl -sSLf --retry 3 -o {part} {url};" in script
    assert f"else wget -q -O {part} {url};" in script
    assert f"got=$(sha256sum {part} | cut -d' ' -f1);" in script
    assert f'if [ "$got" != {sha256} ]; then rm -f {part};' in script
    assert script.endswith(f"mv -f {part} {KEYRING_DEB}")  # in place only once verified
    assert plan.op("install cuda-keyring").shell[-1] == (
        f"dpkg --force-confdef --force-confold -i {KEYRING_DEB}"
    )
    assert plan.op("apt update (sources or pins changed)").shell == ["apt-get update"]


def test_the_repository_is_checked_first_and_named_in_apt_sources_after_its_keyring(
    plan_deploy, home
):
    plan = plan_deploy(home, fresh_node(home))
    at = plan.names.index
    # The reachability check is the deploy's very first operation: nothing runs before it.
    assert plan.names[0] == "NVIDIA driver | CUDA repository reachable"
    assert plan.op("CUDA repository reachable").commands == []  # it answers: no change
    repo = repository("ubuntu-24.04")
    entry = plan.op(f"CUDA repository in apt's sources ({repo})")
    assert at("NVIDIA driver | install cuda-keyring") < at(entry.name)
    assert at(entry.name) < at("NVIDIA driver | apt update (sources or pins changed)")
    # NVIDIA's own entry (NVIDIA/apt-packaging-cuda-keyring, cuda-REPO.list.in), byte for byte.
    assert entry.uploads == {
        sources_list("ubuntu-24.04"): f"deb [signed-by={CUDA_KEYRING_GPG}] {repo} /\n".encode()
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "http://apt-cache.lan:3142/nvidia/{distro}/x86_64",
            "http://apt-cache.lan:3142/nvidia/debian12/x86_64/",
        ),
        ("file:///srv/mirror/cuda/debian12/x86_64/", "file:///srv/mirror/cuda/debian12/x86_64/"),
    ],
    ids=["apt-cache", "air-gapped-file"],
)
def test_a_mirror_replaces_nvidia_s_url_everywhere(plan_deploy, home, url, expected):
    data = variant(home, os="debian-12", cuda_repo={"url": url})
    plan = plan_deploy(data, fresh_node(data))
    assert plan.facts.table[fact(UrlProblem, url=f"{expected}Release")] is None
    (script,) = plan.op("NVIDIA CUDA repository keyring (sha256-verified)").scripts
    keyring = f"{expected}cuda-keyring_1.1-1_all.deb"
    if expected.startswith("file://"):  # a copy on the node: copied, no curl needed
        assert f"cp {keyring[len('file://') :]} {KEYRING_DEB}.part ||" in script
    else:
        assert f"-o {KEYRING_DEB}.part {keyring};" in script
    assert KEYRING["debian-12"][1] in script  # the same file, so NVIDIA's sha256
    entry = plan.op(f"CUDA repository in apt's sources ({expected})")
    assert entry.uploads[sources_list("debian-12")].decode() == (
        f"deb [signed-by={CUDA_KEYRING_GPG}] {expected} /\n"
    )
    assert "developer.download.nvidia.com" not in "\n".join(plan_shell(plan))


def test_a_keyring_of_another_version_needs_its_sha256():
    data = {"gpus": [{"bus_id": "04:00.0"}], "software": {"os": "debian-12", "source": "cuda-repo"}}
    data["software"]["cuda_repo"] = {"keyring": {"version": "1.2-1"}}
    with pytest.raises(
        ValueError,
        match=r"software\.cuda_repo\.keyring\.sha256: expected the "
        r"sha256 of cuda-keyring 1\.2-1",
    ):
        NodeSpec.from_data(data, host="home")


def test_an_unreachable_repository_stops_the_deploy_before_anything_changes(plan_deploy, home):
    data = variant(home, os="debian-12", cuda_repo={"url": "http://mirror.lan/cuda/"})
    facts = fresh_node(data)
    facts[fact(UrlProblem, url="http://mirror.lan/cuda/Release")] = (
        "curl: (6) Could not resolve host: mirror.lan"
    )
    facts[fact(FileText, path=sources_list("debian-12"))] = None  # a fresh node: no entry yet
    plan = plan_deploy(data, facts)
    (script,) = plan.op("CUDA repository reachable").scripts
    assert script.endswith("exit 1")
    message = shlex.split(script.split(" >&2")[0])[1]
    assert message == (
        "gpubox: host home cannot reach the CUDA repository http://mirror.lan/cuda/ (curl: (6) "
        "Could not resolve host: mirror.lan), expected http://mirror.lan/cuda/Release to "
        "download: check the URL (software.cuda_repo.url) and the node's network or proxy; "
        "nothing was added to apt's sources, and nothing was installed from it"
    )
    assert plan.names[0] == "NVIDIA driver | CUDA repository reachable"  # a failure stops here


def test_an_interrupted_dpkg_is_repaired_before_the_next_install(plan_deploy, home):
    before = installed_node(home, plan_deploy(home, fresh_node(home)))
    facts = {**before, fact(DpkgInterrupted): "dpkg journal pending; cuda-drivers-570 ..."}
    packages = {k: v for k, v in before[fact(DebPackages)].items() if k != "cuda-drivers-570"}
    facts[fact(DebPackages)] = packages  # the cut-short install left it unpacked, not installed
    plan = plan_deploy(home, facts)
    driver = plan.op("driver 570.124.06")
    (repair,) = driver.scripts  # the first command: finish dpkg's run, then the install
    assert driver.shell[0] == f"sh -c {shlex.quote(repair)}"
    assert repair.startswith(
        "export DEBIAN_FRONTEND=noninteractive; "
        "dpkg --configure -a --force-confdef --force-confold || true; "
    )
    assert "--reinstall $broken" in repair  # half-installed packages can only be reinstalled
    assert repair.endswith("-o Dpkg::Options::=--force-confold -f")
    assert apt_install_requests(driver)[-1] == "cuda-drivers-570=570.124.06-*"


def test_driver_parts_left_at_another_build_are_moved_to_the_pinned_one(plan_deploy, home):
    """cuda-drivers-570 depends on its parts with ">=": going back from a newer build (or a part
    upgraded by hand) moves only the meta-packages unless the parts are asked for too."""
    before = installed_node(home, plan_deploy(home, fresh_node(home)))
    packages = {
        **before[fact(DebPackages)],
        "nvidia-driver-570": {"570.148.08-1ubuntu1"},
        "libnvidia-compute-570": {"570.148.08-1ubuntu1"},
        "nvidia-firmware-570-570.124.06": {"570.124.06-0ubuntu1"},  # already the pinned build
        "nvidia-container-toolkit": {"1.17.4-1"},  # named nvidia-*, not a part of the driver
    }
    plan = plan_deploy(home, {**before, fact(DebPackages): packages})
    assert apt_install_requests(plan.op("driver 570.124.06")) == [
        "nvidia-driver-570=570.124.06-*",  # glob by glob: nvidia-*, then libnvidia-*
        "libnvidia-compute-570=570.124.06-*",
    ]


def test_debian_12_pins_every_driver_component_by_its_debian_name(plan_deploy, home):
    data = variant(home, os="debian-12")
    plan = plan_deploy(data, fresh_node(data))
    pinned = pins(plan.op("apt pins for the NVIDIA stack").uploads[PIN_FILE].decode())
    for glob in ("nvidia-*", "libnvidia-*", "libcuda*", "firmware-nvidia-*"):
        assert pinned[glob] == ("version 570.124.06-*", "1001"), glob


def test_gpu_burn_comes_from_the_spec_source(plan_deploy, home):
    sha = "fedcba9876543210" * 4
    data = variant(
        home,
        gpu_burn={"version": "1.2.3", "sha256": sha, "url": "http://m.lan/gpu-burn-{version}.tgz"},
    )
    facts = fresh_node(data)
    tgz, built = f"{OPT}/src/gpu-burn-1.2.3.tar.gz", f"{OPT}/gpu-burn/1.2.3"
    for key in [
        k for k in facts if dict(k[1]).get("path") in (GPU_BURN_TGZ, f"{GPU_BURN}/{STAMP}")
    ]:
        del facts[key]
    facts[fact(File, path=tgz)] = None
    facts[fact(FileText, path=f"{built}/{STAMP}")] = None
    plan = plan_deploy(data, facts)
    (script,) = plan.op("gpu-burn 1.2.3 source (sha256-verified)").scripts
    assert f"-o {tgz}.part http://m.lan/gpu-burn-1.2.3.tgz;" in script and sha in script
    build = plan.op("build gpu-burn 1.2.3 for compute_80")
    assert json.loads(written_stamp(build))["commit"] == "1.2.3"
    assert plan.op("link gpu_burn").shell[-1] == f"ln -s {built}/gpu_burn {OPT}/bin/gpu_burn"


def test_the_apt_pin_file_pins_the_whole_nvidia_stack(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    text = plan.op("apt pins for the NVIDIA stack").uploads[PIN_FILE].decode()
    assert "(cuda-repo source)" in text
    pinned = pins(text)
    expected = {
        "cuda-drivers-570": ("version 570.124.06-*", "1001"),
        "cuda-drivers": ("version 570.124.06-*", "1001"),
        "cuda-toolkit-12-8": ("version 12.8.1-*", "1001"),
        "libnccl2": ("version 2.26.2-*+cuda12.8", "1001"),
        "libnccl-dev": ("version 2.26.2-*+cuda12.8", "1001"),
    }
    assert {name: pinned.get(name) for name in expected} == expected
    assert {priority for _, priority in pinned.values()} == {"1001"}  # wins over any newer build


@pytest.mark.parametrize(
    ("op", "requested", "held"),
    [
        (
            "driver 570.124.06",
            ["cuda-drivers-570=570.124.06-*", "cuda-drivers=570.124.06-*"],
            ["cuda-drivers", "cuda-drivers-570"],
        ),
        ("CUDA toolkit 12.8.1", ["cuda-toolkit-12-8=12.8.1-*"], ["cuda-toolkit-12-8"]),
        (
            "NCCL 2.26.2",
            ["libnccl2=2.26.2-*+cuda12.8", "libnccl-dev=2.26.2-*+cuda12.8"],
            ["libnccl-dev", "libnccl2"],
        ),
        ("kernel headers (DKMS builds the modules)", ["linux-headers-generic=*"], []),
        # curl is already on the node: only what is missing is requested
        ("build tools", ["g++=*", "make=*", "python3-venv=*"], []),
    ],
    ids=["driver", "cuda-toolkit", "nccl", "kernel-headers", "build-tools"],
)
def test_packages_are_installed_at_their_pinned_versions_and_held(
    plan_deploy, home, op, requested, held
):
    planned = plan_deploy(home, fresh_node(home)).op(op)
    assert apt_install_requests(planned) == requested
    assert planned.argv[0][:5] == [
        "DEBIAN_FRONTEND=noninteractive",
        "apt-get",
        "install",
        "-y",
        "--allow-downgrades",
    ]
    assert apt_holds(planned) == held


def test_no_kernel_headers_without_kernel_module_builds(plan_deploy, home):
    data = variant(home, build_kernel_modules=False)
    plan = plan_deploy(data, fresh_node(data))
    assert not plan.has("kernel headers (DKMS builds the modules)")
    assert not any("linux-headers" in command for command in plan_shell(plan))
    assert plan.has("driver 570.124.06")


@pytest.mark.parametrize(
    ("software", "url", "sha256"),
    [
        ({}, NCCL_TESTS_URL, NCCL_TESTS_SHA256),
        (
            {
                "nccl_tests": {
                    "version": "2.16.9",
                    "sha256": "0123456789abcdef" * 4,
                    "url": "https://mirror.example.org/nccl-tests/{version}/src.tar.gz",
                }
            },
            "https://mirror.example.org/nccl-tests/2.16.9/src.tar.gz",
            "0123456789abcdef" * 4,
        ),
    ],
    ids=["default-release", "spec-url"],
)
def test_nccl_tests_come_from_the_spec_url_sha256_verified(
    plan_deploy, home, software, url, sha256
):
    data = variant(home, **software)
    plan = plan_deploy(data, fresh_node(data))
    at = Layout.of(data)
    version = at.nccl_tests.rsplit("/", 1)[1]
    (script,) = plan.op(f"nccl-tests {version} source (sha256-verified)").scripts
    assert f"curl -sSLf --retry 3 -o {at.nccl_tests_tgz}.part {url};" in script
    assert f'if [ "$got" != {sha256} ]' in script
    assert script.endswith(f"mv -f {at.nccl_tests_tgz}.part {at.nccl_tests_tgz}")
    (build,) = plan.op(f"build nccl-tests {version} for {GENCODE}").scripts
    assert f"tar -xzf {at.nccl_tests_tgz} " in build
    assert plan.op("nccl-tests: current version").shell[-1] == (
        f"ln -s {at.nccl_tests} {OPT}/nccl-tests/current"
    )


@pytest.mark.parametrize("mpi", [False, True], ids=["no-mpi", "mpi"])
def test_nccl_tests_are_built_with_the_cuda_repo_toolchain(plan_deploy, home, mpi):
    data = variant(home, mpi=mpi)
    plan = plan_deploy(data, fresh_node(data))
    op = plan.op(f"build nccl-tests 2.17.6 for {GENCODE}")
    (script,) = op.scripts
    make = [
        "CUDA_HOME=/usr/local/cuda-12.8",
        "NCCL_HOME=/usr",
        "CXX=g++",
        f"NVCC_GENCODE={GENCODE}",
    ] + (["MPI=1", "MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi"] if mpi else [])
    assert f'make -C "$src" -j"$(nproc)" {" ".join(make)};' in script
    assert 'cp "$src"/build/*_perf "$STAGE"/' in script
    # The stamp records exactly the inputs, so a change in any of them rebuilds.
    assert json.loads(written_stamp(op)) == {
        "version": "2.17.6",
        "sha256": NCCL_TESTS_SHA256,
        "make": make,
        "cuda": "12.8.1",
        "nccl": "2.26.2",
    }
    if mpi:
        openmpi = plan.op("Open MPI for nccl-tests")
        assert apt_install_requests(openmpi) == ["libopenmpi-dev=*", "openmpi-bin=*"]
        assert plan.names.index(openmpi.name) < plan.names.index(op.name)
    else:
        assert not plan.has("Open MPI for nccl-tests")
        assert "MPI=1" not in script


def test_cuda_samples_12_4_are_downloaded_and_the_two_tools_built_with_nvcc(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    at = Layout.of(home)
    (download,) = plan.op("cuda-samples 12.4 source (sha256-verified)").scripts
    assert f"curl -sSLf --retry 3 -o {at.samples_tgz}.part {SAMPLES_URL};" in download
    assert f'if [ "$got" != {SAMPLES_SHA256} ]' in download
    build = plan.op(f"build bandwidthTest and p2pBandwidthLatencyTest for {GENCODE}")
    (script,) = build.scripts
    assert f'tar -xzf {at.samples_tgz} -C "$root" --strip-components=1;' in script
    for tool, source in [
        ("bandwidthTest", "Samples/1_Utilities/bandwidthTest/bandwidthTest.cu"),
        (
            "p2pBandwidthLatencyTest",
            "Samples/5_Domain_Specific/p2pBandwidthLatencyTest/p2pBandwidthLatencyTest.cu",
        ),
    ]:
        assert (
            f'{NVCC} -ccbin g++ -O2 -I "$root/Common" {GENCODE} -o "$STAGE/{tool}" "$root/{source}"'
            in script
        )
        assert plan.op(f"link {tool}").shell[-1] == f"ln -s {at.samples}/{tool} {OPT}/bin/{tool}"
    assert json.loads(written_stamp(build)) == {
        "version": "12.4",
        "sha256": SAMPLES_SHA256,
        "gencode": GENCODE,
        "cuda": "12.8.1",
        "cxx": "g++",
    }


def test_the_clock_lock_unit_renders_the_spec_lock(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    unit = plan.op("gpubox-clocks.service (1140 MHz)").uploads[CLOCK_UNIT].decode()
    comments = [line for line in unit.splitlines() if line.startswith("#")]
    assert any("`nvidia-smi -lgc 1140,1140`" in line for line in comments), comments
    assert "-lmc" not in unit  # no memory lock in the spec
    lines = unit.splitlines()
    assert f"ExecStart={GPUBOX} clocks lock --spec {SPEC_JSON}" in lines
    assert f"ExecStop={GPUBOX} clocks reset --spec {SPEC_JSON}" in lines
    assert "After=nvidia-persistenced.service systemd-modules-load.service" in lines
    assert plan.op("GPU clock lock at boot | systemd daemon-reload").shell == [
        "systemctl daemon-reload"
    ]
    assert "systemctl enable gpubox-clocks.service" in plan.op("enable gpubox-clocks.service").shell
    # The driver changed (first install): the lock is not (re)applied by these two now.
    assert plan.op("apply the lock now (gpubox-clocks.service)").commands == []
    assert plan.op("start gpubox-clocks.service if it is not active").commands == []


def test_the_clock_lock_waits_for_the_reboot_after_a_driver_install(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    assert plan.op("driver 570.124.06").commands  # the driver is being installed
    started = [c for c in plan_shell(plan) if re.search(r"systemctl (re)?start gpubox-clocks", c)]
    assert started == []


@pytest.mark.parametrize(
    ("os_release", "python", "venv_package", "headers"),
    [
        ("ubuntu-24.04", "python3", "python3-venv", "linux-headers-generic"),
        ("ubuntu-22.04", "python3.11", "python3.11-venv", "linux-headers-generic"),
        ("debian-12", "python3", "python3-venv", "linux-headers-amd64"),
    ],
    ids=["ubuntu-24.04", "ubuntu-22.04", "debian-12"],
)
def test_each_os_release_gets_its_python_headers_and_keyring(
    plan_deploy, home, os_release, python, venv_package, headers
):
    data = variant(home, os=os_release)
    plan = plan_deploy(data, fresh_node(data))
    assert plan.op("create /opt/gpubox/venv").shell == [f"{python} -m venv --clear {OPT}/venv"]
    build_tools = apt_install_requests(plan.op("build tools"))
    assert f"{venv_package}=*" in build_tools
    assert ("curl=*" in build_tools) == ("curl" not in BASE_PACKAGES[os_release])
    assert apt_install_requests(plan.op("kernel headers (DKMS builds the modules)")) == [
        f"{headers}=*"
    ]
    repo, sha256 = KEYRING[os_release]
    (script,) = plan.op("NVIDIA CUDA repository keyring (sha256-verified)").scripts
    assert f"/compute/cuda/repos/{repo}/x86_64/cuda-keyring_1.1-1_all.deb" in script
    assert sha256 in script
    # The same NVIDIA package names and CUDA paths on every release of the repository.
    assert apt_install_requests(plan.op("driver 570.124.06")) == [
        "cuda-drivers-570=570.124.06-*",
        "cuda-drivers=570.124.06-*",
    ]
    assert (
        f"{NVCC} -ccbin g++"
        in plan.op(f"build bandwidthTest and p2pBandwidthLatencyTest for {GENCODE}").scripts[0]
    )


IDEMPOTENT_CASES = {
    "home": {},
    "home-tuned-mpi": {"tuning": {"iommu_passthrough": True, "disable_acs": True}, "mpi": True},
}


@pytest.mark.parametrize("case", list(IDEMPOTENT_CASES), ids=list(IDEMPOTENT_CASES))
def test_a_node_already_as_pinned_gets_no_commands(plan_deploy, home, case):
    overrides = dict(IDEMPOTENT_CASES[case])
    data = variant(home, overrides.pop("tuning", None), **overrides)
    fresh = plan_deploy(data, fresh_node(data))
    plan = plan_deploy(data, installed_node(data, fresh))
    assert plan.changing() == []
    # ...and pyinfra's own change detection agrees for the apt, download and build operations.
    guarded = [
        op.name
        for op in plan.ops
        if apt_install_requests(fresh.op(op.name))
        or apt_holds(fresh.op(op.name))
        or op.short_name.startswith("build ")
        or "(sha256-verified)" in op.name
    ]
    assert len(guarded) >= 8, guarded
    assert [name for name in guarded if plan.op(name).will_change] == []


def test_a_driver_bump_on_an_up_to_date_node_reinstalls_it_and_leaves_the_lock_for_the_reboot(
    plan_deploy, home
):
    before = installed_node(home, plan_deploy(home, fresh_node(home)))
    bumped = variant(home, driver_version="570.133.20")
    facts = {**before, fact(TmpDir): "/tmp"}  # uploads stage through the temporary folder
    plan = plan_deploy(bumped, facts)
    assert pins(plan.op("apt pins for the NVIDIA stack").uploads[PIN_FILE].decode())[
        "cuda-drivers-570"
    ] == ("version 570.133.20-*", "1001")
    driver = plan.op("driver 570.133.20")
    assert apt_install_requests(driver) == [
        "cuda-drivers-570=570.133.20-*",
        "cuda-drivers=570.133.20-*",
    ]
    assert apt_holds(driver) == []  # still held from the first deploy
    assert plan.op("NVIDIA driver | say that a reboot is needed").calls
    assert set(plan.changing()) == {
        "NVIDIA driver | apt pins for the NVIDIA stack",
        "NVIDIA driver | apt update (sources or pins changed)",
        "NVIDIA driver | driver 570.133.20",
        "NVIDIA driver | say that a reboot is needed",
        "gpubox node spec | node spec /etc/gpubox/spec.json",
        "install manifest | manifest inputs",
        "install manifest | write /etc/gpubox/manifest.json",
    }


def test_reboot_true_reboots_only_when_the_driver_changed(plan_deploy, home):
    data = variant(home, reboot=True)
    fresh = plan_deploy(data, fresh_node(data))
    assert [f.__name__ for f in fresh.op("reboot to load the new driver").calls]
    settled = plan_deploy(data, installed_node(data, fresh))
    assert settled.op("reboot to load the new driver").commands == []


@pytest.mark.parametrize(
    "update_grub", ["/usr/sbin/update-grub", None], ids=["update-grub-found", "no-update-grub"]
)
def test_pcie_tuning_plans_iommu_pt_and_the_acs_off_unit(plan_deploy, home, update_grub):
    data = variant(home, tuning={"iommu_passthrough": True, "disable_acs": True})
    plan = plan_deploy(data, fresh_node(data, update_grub=update_grub))
    dropin = plan.op("kernel command line: iommu=pt").uploads[GRUB_DROPIN].decode()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt"' in dropin
    if update_grub:
        assert plan.op("update-grub").shell == ["update-grub"]
    else:
        assert not plan.has("update-grub")
    assert plan.op("PCIe P2P tuning | say that a reboot is needed").calls
    assert apt_install_requests(plan.op("pciutils (setpci)")) == ["pciutils"]
    script = plan.op("ACS-off script")
    assert "lspci -d 10b5: -n" in script.uploads[ACS_SCRIPT].decode()
    assert f"chmod 755 {ACS_SCRIPT}" in script.shell
    unit = plan.op("ACS-off unit").uploads[ACS_UNIT].decode().splitlines()
    assert f"ExecStart={ACS_SCRIPT}" in unit
    assert "Before=gpubox-clocks.service nvidia-persistenced.service" in unit
    assert plan.op("PCIe P2P tuning | systemd daemon-reload").shell == ["systemctl daemon-reload"]
    enable = plan.op("enable gpubox-acs-off (runs at the next boot)")
    assert "systemctl enable gpubox-acs-off.service" in enable.shell


def test_pcie_tuning_off_plans_nothing_on_a_fresh_node(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    tuning = [op for op in plan.ops if op.name.startswith("PCIe P2P tuning | ")]
    assert [op.short_name for op in tuning] == [
        "kernel command line: no gpubox iommu setting",
        "update-grub",
        "say that a reboot is needed",
        "no ACS-off unit",
        "no ACS-off script",
        "systemd daemon-reload",
    ]
    assert [op.commands for op in tuning] == [[]] * len(tuning)


SLURM_CONF = "/etc/slurm/slurm.conf.d/gpubox-health.conf"
HEALTH_PROGRAM = f"{OPT}/bin/gpubox-health"


def test_slurm_health_check_plans_the_program_and_the_slurm_conf_lines(plan_deploy, home):
    data = {**home, "slurm": {"enabled": True, "interval_s": 120, "node_state": "idle,cycle"}}
    facts = {
        **fresh_node(data),
        fact(File, path=HEALTH_PROGRAM): None,
        fact(Directory, path=HEALTH_PROGRAM): None,
        fact(Directory, path="/etc/slurm/slurm.conf.d"): None,
        fact(File, path=SLURM_CONF): None,
        fact(Directory, path=SLURM_CONF): None,
    }
    plan = plan_deploy(data, facts)
    conf = plan.op(f"{SLURM_CONF} (HealthCheckInterval=120, idle,cycle)").uploads[SLURM_CONF]
    assert conf.decode().splitlines()[-3:] == [
        f"HealthCheckProgram={HEALTH_PROGRAM}",
        "HealthCheckInterval=120",
        "HealthCheckNodeState=IDLE,CYCLE",
    ]
    program = plan.op(f"{HEALTH_PROGRAM} (runs gpubox health)").uploads[HEALTH_PROGRAM].decode()
    assert program.startswith("#!/bin/sh\n")
    assert f'exec {GPUBOX} health --spec {SPEC_JSON} --timeout 40 "$@"' in program


def test_slurm_off_plans_nothing(plan_deploy, home):
    plan = plan_deploy(home, fresh_node(home))
    assert not [op for op in plan.ops if op.name.startswith("Slurm health check")]
