"""The node spec: one typed, validated description of a node; it drives the deploy and the checks.

A pyinfra inventory carries each host's expectations as plain data; :meth:`NodeSpec.from_data`
turns that mapping into immutable dataclasses or raises :class:`SpecError`, whose message names
the host, the field path, the bad value and what was expected::

    >>> spec = NodeSpec.from_data({"gpus": [{"bus_id": "04:00.0"}]}, host="box")
    >>> spec.gpus[0].bus_id, spec.gpu_count, spec.software.driver_version
    ('0000:04:00.0', 1, '550.163.01')
    >>> NodeSpec.from_data({"gpus": [{"bus_id": "4:0.0"}], "clokcs": {}}, host="box")
    ... SpecError: host 'box': clokcs: unknown key 'clokcs'; ... (did you mean 'clocks'?)

Every field, its default and its meaning are declared once, here, in the dataclasses below
(``doc`` metadata); ``gpubox spec --reference`` renders them as the README's inventory reference.
Keys that belong to pyinfra's connectors (``ssh_*``, ``_sudo``, ...) are ignored; any other
unknown key is an error with the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gpubox import busid

SPEC_VERSION = 1

# pyinfra's own host data (connectors, global operation arguments): not ours to validate.
PYINFRA_KEY_PREFIXES = (
    "_",
    "ssh_",
    "winrm_",
    "docker_",
    "dockerssh_",
    "podman_",
    "chroot_",
    "local_",
    "vagrant_",
    "terraform_",
)

P2P_CODES = ("OK", "CNS", "GNS", "TNS", "DR", "NS", "U")
OS_RELEASES = ("debian-13", "debian-12", "ubuntu-22.04", "ubuntu-24.04")
# Which OS releases each install source serves (NVIDIA's CUDA repo has no Debian 13 build of 570).
SOURCE_OS = {
    "debian": ("debian-13",),
    "cuda-repo": ("ubuntu-22.04", "ubuntu-24.04", "debian-12"),
}


class SpecError(ValueError):
    """Bad spec data: names the host, the field path, the value found and what was expected.

    Under pyinfra's CLI, :func:`gpubox.inventory.hosts` and :func:`gpubox.inventory.host_spec`
    re-raise it as a pyinfra error too, so it shows as one line, not as a traceback. (This module
    does not import pyinfra: the checks on a node start faster without it.)
    """

    def __init__(self, host: str, path: str, value: Any, expected: str, hint: str = ""):
        path = path or "<spec>"
        self.host, self.path, self.value, self.expected = host, path, value, expected
        message = f"host {host!r}: {path}: expected {expected}; got {_show(value)}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class _Unknown(SpecError):
    def __init__(self, host: str, path: str, key: str, valid: list[str]):
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else ""
        self.host, self.path, self.value = host, path, key
        self.expected = f"one of {', '.join(valid)}"
        message = f"host {host!r}: {path}: unknown key {key!r}; expected one of {', '.join(valid)}"
        ValueError.__init__(self, message + (f" ({hint})" if hint else ""))


def _show(value: Any) -> str:
    """``value`` as the user wrote it (``repr``), cut to 80 characters; a cut string keeps its
    closing quote, so the message shows where the value ends."""
    text = repr(value)
    if len(text) <= 80:
        return text
    if isinstance(value, str):
        return text[:76] + "..." + text[-1]
    return text[:77] + "..."


def _doc(text: str, check: Any = None, convert: Any = None) -> dict:
    """Field metadata: ``doc`` (reference), ``check(v) -> problem or None``, ``convert``."""
    return {"doc": text, "check": check, "convert": convert}


def _range(lo: float, hi: float | None = None):
    def check(value):
        if value is None:
            return None
        if value < lo or (hi is not None and value > hi):
            return f"a number in {lo}..{hi}" if hi is not None else f"a number >= {lo}"
        return None

    return check


def _positive(value):
    return None if value is None or value > 0 else "a positive number"


def _version(value):
    return None if re.fullmatch(r"[0-9][0-9A-Za-z.+~:-]*", value) else "a version like 550.163.01"


def _release(value):
    """A release version (2.17.6) or, for projects without tags (gpu-burn), a full commit."""
    if re.fullmatch(r"[0-9][0-9A-Za-z.+~:-]*|[0-9a-f]{40}", value):
        return None
    return "a release version like 2.17.6 or a 40-digit commit"


def _url(value):
    if re.fullmatch(r"(https?|file)://\S+", value):
        return None
    return "an http://, https:// or file:// URL"


def _absolute_or_null(value):
    return None if value is None or value.startswith("/") else "an absolute path"


def _sha256(value):
    return None if re.fullmatch(r"[0-9a-f]{64}", value) else "a sha256 of 64 lower-case hex digits"


def _compute_capability(value):
    return None if re.fullmatch(r"\d+\.\d+", value) else "a compute capability like 8.0"


def _bus_id(value, path, host):
    try:
        return busid.normalise(value)
    except ValueError:
        raise SpecError(host, path, value, busid.EXPECTED) from None


def parse_size(value) -> int | None:
    """Bytes from an int or nccl-tests' size syntax (``32M``, ``1G``; K/M/G are powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)B?\s*", value, re.IGNORECASE)
        if match and int(match[1]) > 0:
            return int(match[1]) * 1024 ** " KMG".index((match[2] or " ").upper())
    return None


def _size(value, path, host):
    size = parse_size(value)
    if size is None:
        raise SpecError(host, path, value, "a message size in bytes or like 32M / 1G")
    return size


def gpu_id(index: int) -> str:
    """The name checks and floors use for a GPU: ``gpu0`` is NVML index 0 (PCI order)."""
    return f"gpu{index}"


def pair_id(a: int, b: int) -> str:
    return f"gpu{min(a, b)}-gpu{max(a, b)}"


_GPU_KEY = re.compile(r"gpu(\d+)")
_PAIR_KEY = re.compile(r"gpu(\d+)-gpu(\d+)")


# --------------------------------------------------------------------------------------------
# The schema. Defaults target Debian 13 with its own non-free packages.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A pinned upstream release: fetched from ``url``, refused unless its sha256 matches."""

    version: str = field(
        metadata=_doc("release version (tag without the leading v), or a commit", _release)
    )
    sha256: str = field(metadata=_doc("sha256 of the downloaded archive", _sha256))
    url: str = field(metadata=_doc("download URL; `{version}` is replaced by the version", _url))

    @property
    def resolved_url(self) -> str:
        return self.url.replace("{version}", self.version)


# nccl-tests 2.17.6: sha256 of GitHub's tag archive as published in Spack's nccl_tests recipe
# (spack/spack-packages, repos/spack_repo/builtin/packages/nccl_tests/package.py).
DEFAULT_NCCL_TESTS = Download(
    version="2.17.6",
    sha256="38974e70342150ede0e3fb8fd24bfe60ccbde90fa20241716ba8bb338e6b61a0",
    url="https://github.com/NVIDIA/nccl-tests/archive/v{version}.tar.gz",
)
# cuda-samples 12.4: the last tag whose bandwidthTest and p2pBandwidthLatencyTest build with a
# Makefile (12.8 needs CMake; 12.9 dropped bandwidthTest). sha256 as pinned by Azure/azhpc-images
# versions.json and GoogleCloudPlatform/compute-gpu-installation's cuda_installer config.
DEFAULT_CUDA_SAMPLES = Download(
    version="12.4",
    sha256="aa28fa2227768dd31ebbf9cd48b265a0c8810fae03e02c6079c0fa71bbea7319",
    url="https://github.com/NVIDIA/cuda-samples/archive/refs/tags/v{version}.tar.gz",
)
# gpu-burn (wilicc/gpu-burn has no tags): the commit nixpkgs pins (2024-04-09, "Exit more
# gracefully if CUDA init fails"); the sha256 of GitHub's archive of it is computed from the
# upstream history (docs/pins.md). It builds with CUDA 12; CUDA 13 needs 671f4be or later.
DEFAULT_GPU_BURN = Download(
    version="9aefd7c0cc603bbc8c3c102f5338c6af26f8127c",
    sha256="bc1b598bcd6317f45f2fd48cc2c5e2c569598a957fc258577fab5e07b27b6cf0",
    url="https://github.com/wilicc/gpu-burn/archive/{version}.tar.gz",
)
# NVIDIA's cuda-keyring_1.1-1_all.deb per repository (sha256 as pinned by Google's
# compute-gpu-installation and many Dockerfiles); it installs the key 3bf863cc, fingerprint
# EB693B3035CD5710E231E123A4B469963BF863CC. `software.cuda_repo.keyring.sha256: null` means these.
CUDA_KEYRING_VERSION = "1.1-1"
CUDA_KEYRING_SHA256 = {
    "ubuntu-24.04": "d2a6b11c096396d868758b86dab1823b25e14d70333f1dfa74da5ddaf6a06dba",
    "ubuntu-22.04": "d93190d50b98ad4699ff40f4f7af50f16a76dac3bb8da1eaaf366d47898ff8df",
    "debian-12": "e7f219eab6fe4819cdb5c15b98233dc3420302d9c00883219cd3d896857cf48d",
}
# The folder name of each release in NVIDIA's repository tree (`{distro}` in the URL).
CUDA_REPO_DISTRO = {
    "ubuntu-24.04": "ubuntu2404",
    "ubuntu-22.04": "ubuntu2204",
    "debian-12": "debian12",
}
NVIDIA_CUDA_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/{distro}/x86_64/"


def _keyring_sha256_default() -> str:
    rows = ", ".join(f"{os} {sha[:8]}..." for os, sha in CUDA_KEYRING_SHA256.items())
    return (
        f"sha256 of the .deb; null: NVIDIA's published one for `software.os` (version "
        f"{CUDA_KEYRING_VERSION} only: {rows}; docs/pins.md)"
    )


@dataclass(frozen=True)
class Keyring:
    """The repository's keyring package (``cuda-keyring``): sha256-verified before it is installed."""

    version: str = field(
        default=CUDA_KEYRING_VERSION, metadata=_doc("cuda-keyring package version", _version)
    )
    sha256: str | None = field(default=None, metadata=_doc(_keyring_sha256_default(), _sha256))
    url: str = field(
        default="{repository}cuda-keyring_{version}_all.deb",
        metadata=_doc(
            "download URL; `{repository}` is `software.cuda_repo.url`, `{version}` the version"
        ),
    )


@dataclass(frozen=True)
class CudaRepo:
    """NVIDIA's CUDA apt repository (source ``cuda-repo``), or a mirror or apt cache of it."""

    url: str = field(
        default=NVIDIA_CUDA_REPO,
        metadata=_doc(
            "base URL of the (flat) repository, as in `deb [signed-by=...] URL /`; `{distro}` is "
            "debian12, ubuntu2204 or ubuntu2404 from `software.os`. A mirror's or an apt cache's "
            "URL, or `file:///srv/mirror/...` for an air-gapped node",
            _url,
        ),
    )
    keyring: Keyring = field(
        default=Keyring(), metadata=_doc("the keyring package that trusts the repository's key")
    )

    def resolved_url(self, os_release: str) -> str:
        """The repository URL for ``os_release``, with a trailing slash."""
        url = self.url.replace("{distro}", CUDA_REPO_DISTRO.get(os_release, "{distro}"))
        return url if url.endswith("/") else url + "/"

    def keyring_url(self, os_release: str) -> str:
        url = self.keyring.url.replace("{repository}", self.resolved_url(os_release))
        return url.replace("{version}", self.keyring.version)

    def keyring_sha256(self, os_release: str) -> str | None:
        if self.keyring.sha256 is not None:
            return self.keyring.sha256
        if self.keyring.version != CUDA_KEYRING_VERSION:
            return None
        return CUDA_KEYRING_SHA256.get(os_release)


@dataclass(frozen=True)
class Software:
    """What the deploy installs, every version pinned."""

    os: Literal["debian-13", "debian-12", "ubuntu-22.04", "ubuntu-24.04"] = field(
        default="debian-13", metadata=_doc("the node's OS release")
    )
    source: Literal["debian", "cuda-repo"] = field(
        default="debian",
        metadata=_doc(
            "`debian`: Debian 13's own non-free packages; `cuda-repo`: NVIDIA's CUDA apt "
            "repository (Ubuntu 22.04/24.04, Debian 12)"
        ),
    )
    driver_version: str = field(
        default="550.163.01",
        metadata=_doc(
            "NVIDIA driver version, exact (what NVML reports); apt-pinned and held", _version
        ),
    )
    cuda_version: str = field(
        default="12.4.131",
        metadata=_doc(
            "CUDA toolkit version (`debian`: nvidia-cuda-toolkit's; `cuda-repo`: X.Y)", _version
        ),
    )
    nccl_version: str = field(
        default="2.22.3", metadata=_doc("NCCL (libnccl2, libnccl-dev) version", _version)
    )
    nccl_tests: Download = field(
        default=DEFAULT_NCCL_TESTS, metadata=_doc("nccl-tests release built on the node")
    )
    cuda_samples: Download = field(
        default=DEFAULT_CUDA_SAMPLES,
        metadata=_doc(
            "cuda-samples release for bandwidthTest/p2pBandwidthLatencyTest (`cuda-repo` only)"
        ),
    )
    gpu_burn: Download = field(
        default=DEFAULT_GPU_BURN,
        metadata=_doc(
            "gpu-burn source built for the stress tier (`cuda-repo` only; upstream has no tags, "
            "so the version is a commit)"
        ),
    )
    cuda_repo: CudaRepo = field(
        default=CudaRepo(),
        metadata=_doc(
            "where the `cuda-repo` source installs from: NVIDIA's repository or a mirror"
        ),
    )
    compute_capability: str = field(
        default="8.0",
        metadata=_doc("CUDA compute capability to build for (8.0: A100)", _compute_capability),
    )
    build_kernel_modules: bool = field(
        default=True, metadata=_doc("build the kernel modules (installs headers, DKMS builds)")
    )
    mpi: bool = field(default=False, metadata=_doc("build nccl-tests with MPI (multi-node runs)"))
    reboot: bool = field(
        default=False,
        metadata=_doc("reboot the node (and wait for it) when the driver install needs it"),
    )
    install_dir: str = field(
        default="/opt/gpubox", metadata=_doc("where tools and gpubox's own venv are installed")
    )
    nvml_library: str | None = field(
        default=None,
        metadata=_doc(
            "absolute path of libnvidia-ml.so.1 when it is not on the linker path "
            "(NixOS: /run/opengl-driver/lib/libnvidia-ml.so.1; the simulated node)"
        ),
    )
    sysfs_root: str = field(
        default="/sys",
        metadata=_doc(
            "where the node's sysfs is, for the PCIe path walk (`{sysfs_root}/bus/pci/devices`); "
            "the simulated node points it at its prepared tree",
            _absolute_or_null,
        ),
    )


def _gen_floor(text: str):
    return field(default=None, metadata=_doc(text, _range(1, 6)))


def _width_floor(text: str):
    return field(default=None, metadata=_doc(text, _range(1, 32)))


@dataclass(frozen=True)
class LinkFloor:
    """The lowest acceptable state of a PCIe link."""

    min_gen: int | None = _gen_floor("lowest acceptable current PCIe generation (null: see above)")
    min_width: int | None = _width_floor(
        "lowest acceptable current link width, lanes (null: see above)"
    )


# NVIDIA's RM recommends at most 8 PCIe replays a minute (DCGM_LIMIT_MAX_PCIREPLAY_RATE); a boot's
# worth of an idle, healthy link counts none, so 100 since boot is a marginal link, not noise.
DEFAULT_MAX_REPLAYS = 100
DEFAULT_MAX_CORRECTABLE = 100


@dataclass(frozen=True)
class Pcie:
    """What each GPU's PCIe path must look like: its own link (NVML), the links above it to the
    root port (sysfs), its error counters and ACS. Per GPU in ``gpus[].pcie``, field by field."""

    min_gen: int | None = _gen_floor(
        "lowest acceptable current PCIe generation of the GPU's own link (null: not checked)"
    )
    min_width: int | None = _width_floor(
        "lowest acceptable current width of the GPU's own link, lanes (null: not checked)"
    )
    uplink: LinkFloor = field(
        default=LinkFloor(),
        metadata=_doc(
            "floor of every link above the GPU's own, up to its root port (a PCIe switch's "
            "uplink), read from sysfs: NVML sees only the GPU's own link. Null fields: the link "
            "must run at what both its ends can (below that warns)"
        ),
    )
    max_replays: int = field(
        default=DEFAULT_MAX_REPLAYS,
        metadata=_doc(
            "PCIe replays (NVML) a GPU may count since boot: packets its link had to resend",
            _range(0, 2**32),
        ),
    )
    max_correctable: int = field(
        default=DEFAULT_MAX_CORRECTABLE,
        metadata=_doc(
            "AER correctable errors each device on a GPU's path may count since boot (any "
            "non-fatal or fatal error fails)",
            _range(0, 2**32),
        ),
    )
    acs: Literal["off", "any"] = field(
        default="off",
        metadata=_doc(
            "`off`: ACS P2P redirect/egress control must be off on the switch downstream ports "
            "of a GPU that has a pair expected P2P OK; `any`: not checked"
        ),
    )


@dataclass(frozen=True)
class GpuPcie:
    """One GPU's overrides of the node's ``pcie``; every null field is the node's."""

    min_gen: int | None = _gen_floor("the GPU's own link (null: the node's `pcie.min_gen`)")
    min_width: int | None = _width_floor("the GPU's own link (null: the node's `pcie.min_width`)")
    uplink: LinkFloor | None = field(
        default=None,
        metadata=_doc("this GPU's uplink floor, field by field over the node's `pcie.uplink`"),
    )
    max_replays: int | None = field(
        default=None, metadata=_doc("null: the node's `pcie.max_replays`", _range(0, 2**32))
    )
    max_correctable: int | None = field(
        default=None, metadata=_doc("null: the node's `pcie.max_correctable`", _range(0, 2**32))
    )
    acs: Literal["off", "any"] | None = field(
        default=None, metadata=_doc("null: the node's `pcie.acs`")
    )


@dataclass(frozen=True)
class Gpu:
    bus_id: str = field(metadata=_doc("PCI bus id (any spelling; normalised)", convert=_bus_id))
    name: str | None = field(
        default=None, metadata=_doc("name pattern for this GPU (default: `gpu_name`)")
    )
    pcie: GpuPcie | None = field(
        default=None,
        metadata=_doc("this GPU's `pcie`, field by field over the node's (e.g. a narrower uplink)"),
    )


def _p2p_pairs(value, path, host):
    if not isinstance(value, Mapping):
        raise SpecError(host, path, value, "a mapping of GPU pairs like gpu0-gpu1 to {read, write}")
    out: dict[str, P2PStatus] = {}
    for key, status in value.items():
        sub = _join(path, str(key))
        match = _PAIR_KEY.fullmatch(str(key))
        if not match or match[1] == match[2]:
            raise SpecError(host, sub, key, "a pair of two different GPUs like gpu0-gpu1")
        norm = pair_id(int(match[1]), int(match[2]))
        if norm in out:
            raise SpecError(host, sub, key, f"each pair once (already given as {norm})")
        out[norm] = _convert(P2PStatus, status, sub, host)
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class P2PStatus:
    read: Literal["OK", "CNS", "GNS", "TNS", "DR", "NS", "U"] = field(
        default="OK", metadata=_doc("expected NVML P2P READ status (nvidia-smi topo -p2p legend)")
    )
    write: Literal["OK", "CNS", "GNS", "TNS", "DR", "NS", "U"] = field(
        default="OK", metadata=_doc("expected NVML P2P WRITE status")
    )


@dataclass(frozen=True)
class P2P:
    default: P2PStatus = field(
        default=P2PStatus(), metadata=_doc("expected status for every pair not listed in `pairs`")
    )
    pairs: tuple[tuple[str, P2PStatus], ...] = field(
        default=(),
        metadata=_doc("per-pair overrides, keys `gpuI-gpuJ` (both directions)", convert=_p2p_pairs),
    )

    def expected(self, a: int, b: int) -> P2PStatus:
        key = pair_id(a, b)
        return next((status for name, status in self.pairs if name == key), self.default)


@dataclass(frozen=True)
class Clocks:
    graphics_mhz: int | None = field(
        default=None,
        metadata=_doc(
            "graphics (SM) clock lock, MHz, applied at every boot (null: no lock)", _range(1, 3000)
        ),
    )
    memory_mhz: int | None = field(
        default=None, metadata=_doc("memory clock lock, MHz (null: no lock)", _range(1, 3000))
    )
    tolerance_mhz: int = field(
        default=15,
        metadata=_doc("how far the read-back SM clock may be from the lock", _range(0, 500)),
    )


@dataclass(frozen=True)
class PerGpu:
    """A floor for every GPU (a number) or per GPU (``{gpu0: 11.0, default: 1.5}``)."""

    default: float | None = None
    by_gpu: tuple[tuple[int, float], ...] = ()

    def get(self, index: int) -> float | None:
        return dict(self.by_gpu).get(index, self.default)


@dataclass(frozen=True)
class PerPair:
    """A floor for every GPU pair (a number) or per pair (``{gpu0-gpu1: 10.0, default: 3.0}``)."""

    default: float | None = None
    by_pair: tuple[tuple[str, float], ...] = ()

    def get(self, a: int, b: int) -> float | None:
        return dict(self.by_pair).get(pair_id(a, b), self.default)


@dataclass(frozen=True)
class AllReduceFloor:
    gpus: tuple[int, ...] = field(metadata=_doc("GPU indices taking part, e.g. [0, 1]"))
    size: int = field(metadata=_doc("message size (bytes, or like 32M)", convert=_size))
    busbw_gbps: float = field(
        metadata=_doc("minimum nccl-tests busbw at that size, GB/s", _positive)
    )

    @property
    def id(self) -> str:
        return "+".join(gpu_id(i) for i in self.gpus)


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _host_names(value):
    if len(value) < 2 or len(set(value)) != len(value):
        return "two or more different host names"
    bad = [h for h in value if not _HOST_NAME.fullmatch(h)]
    return f"host names as mpirun's -H takes them (not {bad[0]!r})" if bad else None


@dataclass(frozen=True)
class MultinodeFloor:
    hosts: tuple[str, ...] = field(
        metadata=_doc(
            "the hosts taking part, as mpirun reaches them over SSH, e.g. [node1, node2]; the "
            "first is where mpirun runs (the node whose spec holds the floor)",
            _host_names,
        )
    )
    gpus: tuple[int, ...] = field(
        metadata=_doc("GPU indices taking part on every host, e.g. [0, 1]: one rank each")
    )
    size: int = field(metadata=_doc("message size (bytes, or like 32M)", convert=_size))
    busbw_gbps: float = field(
        metadata=_doc("minimum nccl-tests busbw at that size across all ranks, GB/s", _positive)
    )

    @property
    def ranks(self) -> int:
        return len(self.hosts) * len(self.gpus)

    @property
    def id(self) -> str:
        """``node1+node2:gpu0+gpu1``."""
        return "+".join(self.hosts) + ":" + "+".join(gpu_id(i) for i in self.gpus)


@dataclass(frozen=True)
class Floors:
    h2d_gbps: PerGpu = field(
        default=PerGpu(),
        metadata=_doc("host-to-device GB/s (bandwidthTest, pinned); null: derived from the link"),
    )
    d2h_gbps: PerGpu = field(
        default=PerGpu(), metadata=_doc("device-to-host GB/s; null: derived from the link")
    )
    p2p_gbps: PerPair = field(
        default=PerPair(),
        metadata=_doc("bidirectional P2P GB/s per pair (p2pBandwidthLatencyTest); null: derived"),
    )
    allreduce: tuple[AllReduceFloor, ...] = field(
        default=(), metadata=_doc("nccl-tests all_reduce busbw floors, one per GPU set and size")
    )
    multinode: tuple[MultinodeFloor, ...] = field(
        default=(),
        metadata=_doc(
            "nccl-tests busbw floors across several nodes under mpirun (`bench.mpirun`), one "
            "per host list, GPU set and size; judged from every rank's `--tag-output` lines"
        ),
    )
    link_factor: float = field(
        default=0.75,
        metadata=_doc(
            "derived floor = theoretical PCIe bandwidth of the link x this factor",
            _range(0.05, 1.0),
        ),
    )


def _program_name(value):
    return None if re.fullmatch(r"[A-Za-z0-9_.+-]+", value) else "a program name (no folder)"


@dataclass(frozen=True)
class Mpirun:
    enabled: bool = field(
        default=False,
        metadata=_doc("run nccl-tests under mpirun, one rank per GPU (needs `software.mpi`)"),
    )
    command: str = field(default="mpirun", metadata=_doc("the mpirun program"))
    hosts: tuple[str, ...] = field(
        default=(),
        metadata=_doc("hosts for `-H` (`node1` or `node1:4`); empty: this node only"),
    )
    extra_args: tuple[str, ...] = field(
        default=(),
        metadata=_doc("more mpirun arguments, e.g. [--mca, btl_tcp_if_include, eth0]"),
    )
    timeout_s: int | None = field(
        default=None,
        metadata=_doc(
            "seconds one mpirun may take before it and its ranks are killed (a host that stops "
            "answering must not hang the run; null: `bench.timeout_s`)",
            _range(1, 86400),
        ),
    )


@dataclass(frozen=True)
class Bench:
    """How the bandwidth tier measures (``gpubox bench run``)."""

    nccl_binary: str = field(
        default="all_reduce_perf",
        metadata=_doc("nccl-tests program the `floors.allreduce` runs use", _program_name),
    )
    iterations: int = field(
        default=20, metadata=_doc("nccl-tests timed iterations (`-n`)", _range(1, 100000))
    )
    warmup: int = field(
        default=5, metadata=_doc("nccl-tests warm-up iterations (`-w`)", _range(0, 100000))
    )
    timeout_s: int = field(
        default=600,
        metadata=_doc("seconds one tool run may take before it is killed", _range(1, 86400)),
    )
    memory: Literal["pinned", "pageable"] = field(
        default="pinned", metadata=_doc("bandwidthTest host memory (`--memory`)")
    )
    transfer_size: int = field(
        default=32 * 1024 * 1024,
        metadata=_doc("bandwidthTest transfer size (bytes, or like 32M)", convert=_size),
    )
    tools_dir: str | None = field(
        default=None,
        metadata=_doc(
            "folder of bandwidthTest and p2pBandwidthLatencyTest (null: `{install_dir}/bin`)",
            _absolute_or_null,
        ),
    )
    nccl_tests_dir: str | None = field(
        default=None,
        metadata=_doc(
            "folder of the nccl-tests programs (null: `{install_dir}/nccl-tests/current`)",
            _absolute_or_null,
        ),
    )
    log_dir: str = field(
        default="/var/log/gpubox/bench",
        metadata=_doc("raw tool logs, one folder per run (the newest 20 kept)", _absolute_or_null),
    )
    mpirun: Mpirun = field(default=Mpirun(), metadata=_doc("mpirun launcher for nccl-tests"))
    baseline: str | None = field(
        default=None,
        metadata=_doc(
            "baseline file from `gpubox calibrate` (null: /etc/gpubox/baseline.json on the node "
            "when present): its floors apply where `floors` gives none"
        ),
    )


@dataclass(frozen=True)
class Limits:
    gpu_temp_c: float = field(
        default=85.0, metadata=_doc("GPU temperature ceiling, C", _range(20, 120))
    )
    hbm_temp_c: float = field(
        default=85.0,
        metadata=_doc("HBM temperature ceiling, C (HBM is the fragile part)", _range(20, 120)),
    )
    power_w: float | None = field(
        default=None, metadata=_doc("per-card power ceiling, W (null: not checked)", _positive)
    )
    supply_w: float | None = field(
        default=None, metadata=_doc("power supply rating for all cards together, W", _positive)
    )
    supply_headroom: float = field(
        default=0.8,
        metadata=_doc("share of `supply_w` the cards may draw together", _range(0.1, 1.0)),
    )


def _absolute_program(value):
    return None if value is None or value.startswith("/") else "an absolute path"


@dataclass(frozen=True)
class Stress:
    """The stress tier's burn (``gpubox burn``, ``pytest checks/ -m stress``)."""

    duration_s: int = field(
        default=300, metadata=_doc("how long gpu-burn runs, seconds", _range(1, 86400))
    )
    gpus: tuple[int, ...] | None = field(
        default=None, metadata=_doc("GPU indices to burn, e.g. [0, 1] (null: every GPU)")
    )
    precision: Literal["single", "double"] = field(
        default="single", metadata=_doc("`single`: SGEMM; `double`: DGEMM (gpu-burn `-d`)")
    )
    tensor_cores: bool = field(
        default=False, metadata=_doc("let cuBLAS use tensor cores (gpu-burn `-tc`)")
    )
    gflops: PerGpu = field(
        default=PerGpu(),
        metadata=_doc(
            "sustained Gflop/s floor per GPU, e.g. 12000 or {gpu0: 12000, default: 11000} "
            "(null: the calibrated baseline's, else not checked)"
        ),
    )
    sample_interval_s: float = field(
        default=1.0,
        metadata=_doc("seconds between NVML samples of every GPU during the burn", _range(0.1, 60)),
    )
    binary: str | None = field(
        default=None,
        metadata=_doc(
            "gpu-burn program (null: `{install_dir}/bin/gpu_burn`, which the deploy links to "
            "Debian's /usr/sbin/gpu-burn or to the pinned upstream build)",
            _absolute_program,
        ),
    )


def _hex4(value, path, host):
    if isinstance(value, str) and re.fullmatch(r"[0-9a-fA-F]{4}", value):
        return value.lower()
    raise SpecError(host, path, value, "a 4-digit hex PCI vendor id like 10b5")


@dataclass(frozen=True)
class Tuning:
    """Optional fixes for P2P behind PCIe switches; off by default (they change boot settings)."""

    iommu_passthrough: bool = field(
        default=False,
        metadata=_doc("add `iommu=pt` to the kernel command line (GRUB); reboot to apply"),
    )
    disable_acs: bool = field(
        default=False, metadata=_doc("clear ACS on the PCIe switch ports at every boot (setpci)")
    )
    acs_switch_vendor: str = field(
        default="10b5",
        metadata=_doc(
            "PCI vendor id of the switches for `disable_acs` (10b5: PLX/Broadcom)", convert=_hex4
        ),
    )


@dataclass(frozen=True)
class Acceptance:
    """The boot-time acceptance run (``gpubox-acceptance.service``): one record per boot."""

    enabled: bool = field(
        default=True,
        metadata=_doc("run the quick checks at every boot and keep a record per boot"),
    )
    bandwidth: bool = field(
        default=False, metadata=_doc("run the bandwidth tier at boot too (takes minutes)")
    )
    keep_boots: int = field(
        default=50, metadata=_doc("boot records kept; older ones are pruned", _range(1, 100000))
    )
    runs_dir: str = field(
        default="/var/lib/gpubox/runs",
        metadata=_doc("where boot records are kept, one folder per boot id", _absolute_or_null),
    )
    webhook_file: str = field(
        default="/etc/gpubox/webhook-url",
        metadata=_doc(
            "root-only (mode 600) file holding a Discord-compatible webhook URL; a failed boot "
            "is posted there when the file exists",
            _absolute_or_null,
        ),
    )
    metrics_dir: str | None = field(
        default=None,
        metadata=_doc(
            "node_exporter textfile collector folder for `gpubox.prom` (null: off; e.g. "
            "/var/lib/prometheus/node-exporter)",
            _absolute_or_null,
        ),
    )


def _slurm_node_state(value):
    states = {"ANY", "ALLOC", "IDLE", "MIXED", "NONDRAINED_IDLE", "CYCLE", "START_ONLY"}
    if value is None:
        return None
    parts = value.upper().split(",")
    if all(p in states for p in parts):
        return None
    return f"Slurm's HealthCheckNodeState: one or more of {', '.join(sorted(states))}, by commas"


@dataclass(frozen=True)
class Slurm:
    """``gpubox health`` as Slurm's ``HealthCheckProgram``: the deploy writes its slurm.conf lines."""

    enabled: bool = field(
        default=False,
        metadata=_doc(
            "write the `slurm.conf` lines that make slurmd run `gpubox health` (the node must "
            "already be a Slurm node; gpubox does not install Slurm)"
        ),
    )
    conf_file: str = field(
        default="/etc/slurm/slurm.conf.d/gpubox-health.conf",
        metadata=_doc(
            "where the lines are written; include it from slurm.conf (`Include` line) or point "
            "it at a file your slurm.conf already includes",
            _absolute_or_null,
        ),
    )
    interval_s: int = field(
        default=300,
        metadata=_doc("`HealthCheckInterval`: seconds between slurmd's runs", _range(1, 86400)),
    )
    node_state: str = field(
        default="ANY",
        metadata=_doc(
            "`HealthCheckNodeState`: which nodes slurmd checks (ANY, IDLE, ALLOC, MIXED, "
            "NONDRAINED_IDLE; CYCLE spreads the runs over the interval)",
            _slurm_node_state,
        ),
    )
    program: str | None = field(
        default=None,
        metadata=_doc(
            "`HealthCheckProgram` (null: `{install_dir}/bin/gpubox-health`, the script the "
            "deploy writes to run `gpubox health`; Slurm passes a health program no arguments)",
            _absolute_or_null,
        ),
    )
    timeout_s: int = field(
        default=40,
        metadata=_doc(
            "`gpubox health` stops itself after this many seconds (Slurm kills a health check "
            "at 60)",
            _range(5, 55),
        ),
    )


@dataclass(frozen=True)
class NodeSpec:
    """Everything gpubox expects of one node. Build it with :meth:`from_data`."""

    host: str
    software: Software = field(default=Software(), metadata=_doc("what the deploy installs"))
    gpu_count: int = field(
        default=0,
        metadata=_doc("number of GPUs NVML must show (default: length of `gpus`)", _range(1, 64)),
    )
    gpu_name: str = field(
        default="*", metadata=_doc("name pattern (shell glob) every GPU's NVML name must match")
    )
    gpu_memory_mib: int | None = field(
        default=None,
        metadata=_doc("memory per GPU, MiB, as NVML reports (null: not checked)", _positive),
    )
    pcie: Pcie = field(
        default=Pcie(), metadata=_doc("each GPU's PCIe path: links, error counters, ACS")
    )
    gpus: tuple[Gpu, ...] = field(
        default=(), metadata=_doc("the GPUs in PCI bus order (= NVML index order, gpu0 first)")
    )
    p2p: P2P = field(default=P2P(), metadata=_doc("expected NVML P2P status per GPU pair"))
    nvlink: Literal["unsupported", "active"] = field(
        default="unsupported",
        metadata=_doc("`unsupported`: NVML must report no NVLink; `active`: every link up"),
    )
    clocks: Clocks = field(default=Clocks(), metadata=_doc("clock locks applied at every boot"))
    floors: Floors = field(default=Floors(), metadata=_doc("bandwidth floors"))
    bench: Bench = field(
        default=Bench(), metadata=_doc("how the bandwidth tier measures (`gpubox bench run`)")
    )
    limits: Limits = field(default=Limits(), metadata=_doc("thermal and power ceilings"))
    stress: Stress = field(
        default=Stress(),
        metadata=_doc("the burn-in: gpu-burn under NVML watch, stopped at any ceiling"),
    )
    tuning: Tuning = field(default=Tuning(), metadata=_doc("optional PCIe P2P fixes"))
    acceptance: Acceptance = field(
        default=Acceptance(),
        metadata=_doc("the acceptance run at every boot, its records, notification and metrics"),
    )
    slurm: Slurm = field(
        default=Slurm(),
        metadata=_doc("`gpubox health` as Slurm's health check: drains a failing node, resumes it"),
    )

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def from_data(cls, data: Mapping[str, Any], host: str = "localhost") -> NodeSpec:
        """Validate a pyinfra host's data into a spec, or raise :class:`SpecError`."""
        if not isinstance(data, Mapping):
            raise SpecError(host, "", data, "a mapping of spec fields")
        ours = {k: v for k, v in data.items() if not str(k).startswith(PYINFRA_KEY_PREFIXES)}
        ours.pop("host", None)
        spec = _build(cls, ours, "", host, extra={"host": host})
        return _cross_check(spec)

    def to_data(self) -> dict[str, Any]:
        """Plain JSON-able data that :meth:`from_data` reads back to an equal spec."""
        data = _dump(self)
        data.pop("host")
        return data

    # ---- what checks ask -----------------------------------------------------------------

    def gpu_pcie(self, index: int) -> Pcie:
        """The node's ``pcie`` with GPU ``index``'s own values over it, field by field."""
        gpu = self.gpus[index] if index < len(self.gpus) else None
        own = gpu.pcie if gpu is not None else None
        if own is None:
            return self.pcie
        changes = {
            f.name: getattr(own, f.name)
            for f in dataclasses.fields(own)
            if f.name != "uplink" and getattr(own, f.name) is not None
        }
        if own.uplink is not None:
            base = self.pcie.uplink
            changes["uplink"] = LinkFloor(
                own.uplink.min_gen if own.uplink.min_gen is not None else base.min_gen,
                own.uplink.min_width if own.uplink.min_width is not None else base.min_width,
            )
        return dataclasses.replace(self.pcie, **changes)

    def gpu_name_pattern(self, index: int) -> str:
        gpu = self.gpus[index] if index < len(self.gpus) else None
        return gpu.name if gpu is not None and gpu.name else self.gpu_name

    def name_matches(self, index: int, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.gpu_name_pattern(index))

    def pairs(self) -> list[tuple[int, int]]:
        """Every unordered GPU pair, (0, 1), (0, 2), ..."""
        n = self.gpu_count
        return [(a, b) for a in range(n) for b in range(a + 1, n)]


# --------------------------------------------------------------------------------------------
# Validation machinery: one generic walk over the dataclasses above.
# --------------------------------------------------------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _build(cls, data, path: str, host: str, extra: dict | None = None):
    if not isinstance(data, Mapping):
        raise SpecError(host, path, data, f"a mapping with keys {', '.join(_field_names(cls))}")
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    for key in data:
        if key not in names:
            raise _Unknown(host, _join(path, str(key)), str(key), names)
    values = dict(extra or {})
    for f in dataclasses.fields(cls):
        if f.name in values:
            continue
        sub = _join(path, f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(host, sub, None, "a value (this field is required)")
            continue
        value = _convert(hints[f.name], data[f.name], sub, host, f)
        check = f.metadata.get("check")
        problem = check(value) if check and value is not None else None
        if problem:
            raise SpecError(host, sub, data[f.name], problem)
        values[f.name] = value
    return cls(**values)


def _field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name != "host"]


def _convert(tp, value, path: str, host: str, f=None):
    convert = f.metadata.get("convert") if f is not None else None
    if convert is not None:
        return convert(value, path, host)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, path, host)
    if origin is Literal:
        if value not in args:
            raise SpecError(host, path, value, f"one of {', '.join(map(str, args))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(host, path, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(host, path, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(host, path, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise SpecError(host, path, value, "a non-empty string")
        return value
    if tp is PerGpu:
        return _per_key(PerGpu, value, path, host, _GPU_KEY, "gpuN")
    if tp is PerPair:
        return _per_key(PerPair, value, path, host, _PAIR_KEY, "gpuI-gpuJ")
    if tp is P2PStatus and isinstance(value, str):
        # Shorthand: "OK" means READ and WRITE both OK.
        return _build(P2PStatus, {"read": value, "write": value}, path, host)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path, host)
    if origin is tuple:
        item_tp = args[0]
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
            raise SpecError(host, path, value, "a list")
        return tuple(_convert(item_tp, v, _join(path, i), host) for i, v in enumerate(value))
    raise TypeError(f"spec schema: unsupported type {tp!r} at {path}")  # a bug in this module


def _per_key(cls, value, path, host, key_re, key_form):
    def number(v, sub):
        if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
            raise SpecError(host, sub, v, "a positive number of GB/s")
        return float(v)

    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        return cls(default=number(value, path))
    default, items = None, {}
    for key, v in value.items():
        sub = _join(path, str(key))
        if key == "default":
            default = number(v, sub)
            continue
        match = key_re.fullmatch(str(key))
        if not match:
            raise SpecError(host, sub, key, f"`default` or a key like {key_form}")
        norm = str(key) if cls is PerGpu else pair_id(int(match[1]), int(match[2]))
        items[int(match[1]) if cls is PerGpu else norm] = number(v, sub)
    return cls(default, tuple(sorted(items.items())))


def _cross_check(spec: NodeSpec) -> NodeSpec:
    """Rules between fields. Fills gpu_count from the GPU list when it was left out."""
    host = spec.host
    sw = spec.software
    if sw.os not in SOURCE_OS[sw.source]:
        raise SpecError(
            host,
            "software.os",
            sw.os,
            f"one of {', '.join(SOURCE_OS[sw.source])} for source {sw.source!r}",
        )
    count = spec.gpu_count or len(spec.gpus)
    if count == 0:
        raise SpecError(
            host, "gpus", [], "at least one GPU: list `gpus` (bus ids) or set `gpu_count`"
        )
    if spec.gpus and spec.gpu_count and spec.gpu_count != len(spec.gpus):
        raise SpecError(
            host, "gpu_count", spec.gpu_count, f"{len(spec.gpus)}, the number of entries in `gpus`"
        )
    seen: dict[str, int] = {}
    for i, gpu in enumerate(spec.gpus):
        if gpu.bus_id in seen:
            raise SpecError(
                host,
                f"gpus[{i}].bus_id",
                gpu.bus_id,
                f"a bus id not already used by gpus[{seen[gpu.bus_id]}]",
            )
        seen[gpu.bus_id] = i
    ordered = sorted(g.bus_id for g in spec.gpus)
    for i, gpu in enumerate(spec.gpus):
        if gpu.bus_id != ordered[i]:
            raise SpecError(
                host,
                f"gpus[{i}].bus_id",
                gpu.bus_id,
                f"{ordered[i]} here: list GPUs in PCI bus order, which is NVML's index order",
            )

    def known(path, indices):
        for index in indices:
            if index >= count:
                raise SpecError(
                    host, path, f"gpu{index}", f"a GPU index below the GPU count {count}"
                )

    for name, _ in spec.p2p.pairs:
        m = _PAIR_KEY.fullmatch(name)
        known(f"p2p.pairs.{name}", (int(m[1]), int(m[2])))
    for index, _ in spec.floors.h2d_gbps.by_gpu:
        known(f"floors.h2d_gbps.gpu{index}", (index,))
    for index, _ in spec.floors.d2h_gbps.by_gpu:
        known(f"floors.d2h_gbps.gpu{index}", (index,))
    if spec.stress.gpus is not None:
        burn = list(spec.stress.gpus)
        if not burn or len(set(burn)) != len(burn) or min(burn) < 0:
            raise SpecError(host, "stress.gpus", burn, "different GPU indices >= 0, or null")
        known("stress.gpus", burn)
    for index, _ in spec.stress.gflops.by_gpu:
        known(f"stress.gflops.gpu{index}", (index,))
    for name, _ in spec.floors.p2p_gbps.by_pair:
        m = _PAIR_KEY.fullmatch(name)
        known(f"floors.p2p_gbps.{name}", (int(m[1]), int(m[2])))
    for i, floor in enumerate(spec.floors.allreduce):
        path = f"floors.allreduce[{i}].gpus"
        if len(floor.gpus) < 2 or len(set(floor.gpus)) != len(floor.gpus):
            raise SpecError(host, path, list(floor.gpus), "two or more different GPU indices")
        if any(g < 0 for g in floor.gpus):
            raise SpecError(host, path, list(floor.gpus), "GPU indices >= 0")
        known(path, floor.gpus)
    for i, floor in enumerate(spec.floors.multinode):
        path = f"floors.multinode[{i}].gpus"
        if not floor.gpus or len(set(floor.gpus)) != len(floor.gpus):
            raise SpecError(host, path, list(floor.gpus), "one or more different GPU indices")
        if any(g < 0 for g in floor.gpus):
            raise SpecError(host, path, list(floor.gpus), "GPU indices >= 0")
        known(path, floor.gpus)
        if not spec.bench.mpirun.enabled:
            raise SpecError(
                host,
                "bench.mpirun.enabled",
                False,
                f"true: floors.multinode[{i}] ({floor.id}) runs nccl-tests under mpirun",
            )
    if spec.clocks.memory_mhz is not None and spec.clocks.graphics_mhz is None:
        raise SpecError(
            host,
            "clocks.memory_mhz",
            spec.clocks.memory_mhz,
            "a graphics lock too (`clocks.graphics_mhz`)",
        )
    if sw.source == "cuda-repo" and sw.cuda_repo.keyring_sha256(sw.os) is None:
        raise SpecError(
            host,
            "software.cuda_repo.keyring.sha256",
            None,
            f"the sha256 of cuda-keyring {sw.cuda_repo.keyring.version} (gpubox knows NVIDIA's "
            f"only for version {CUDA_KEYRING_VERSION})",
        )
    if sw.nvml_library is not None and not sw.nvml_library.startswith("/"):
        raise SpecError(host, "software.nvml_library", sw.nvml_library, "an absolute path")
    if not sw.install_dir.startswith("/"):
        raise SpecError(host, "software.install_dir", sw.install_dir, "an absolute path")
    if spec.bench.mpirun.enabled and not sw.mpi:
        raise SpecError(
            host,
            "bench.mpirun.enabled",
            True,
            "false, or `software.mpi: true` (nccl-tests must be built with MPI to run under mpirun)",
        )
    return dataclasses.replace(spec, gpu_count=count)


def _dump(value):
    if isinstance(value, PerGpu):
        if not value.by_gpu:
            return value.default
        head = {} if value.default is None else {"default": value.default}
        return {**head, **{gpu_id(i): v for i, v in value.by_gpu}}
    if isinstance(value, PerPair):
        if not value.by_pair:
            return value.default
        head = {} if value.default is None else {"default": value.default}
        return {**head, **dict(value.by_pair)}
    if isinstance(value, P2P):
        return {"default": _dump(value.default), "pairs": {k: _dump(v) for k, v in value.pairs}}
    if dataclasses.is_dataclass(value):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# The reference: every field, its default and its meaning, rendered from the schema above.
# --------------------------------------------------------------------------------------------


def reference() -> list[tuple[str, str, str]]:
    """``(path, default, meaning)`` for every spec field, in declaration order."""
    leaves = (PerGpu, PerPair, P2PStatus)
    rows: list[tuple[str, str, str]] = []

    def walk(cls, prefix, parent_default=None):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "host":
                continue
            path, doc = _join(prefix, f.name), f.metadata.get("doc", "")
            tp = _strip_optional(hints[f.name])
            item = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None
            value = f.default
            if parent_default is not None:  # a nested default comes from its parent's default
                value = getattr(parent_default, f.name)
            default = "required" if value is dataclasses.MISSING else _fmt(_dump(value))
            if dataclasses.is_dataclass(tp) and tp not in leaves:
                rows.append((path, "", doc))
                walk(tp, path, value if dataclasses.is_dataclass(value) else None)
            elif dataclasses.is_dataclass(item) and item not in leaves:
                rows.append((path, default, doc))
                walk(item, f"{path}[]")
            else:
                rows.append((path, default, doc))

    walk(NodeSpec, "")
    return rows


def _strip_optional(tp):
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner
    return tp


def _fmt(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == [] or value == ():
        return "[]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def reference_markdown() -> str:
    lines = ["| field | default | meaning |", "|---|---|---|"]
    for path, default, doc in reference():
        default_cell = f"`{default}`" if default else ""
        lines.append(f"| `{path}` | {default_cell} | {doc} |")
    return "\n".join(lines) + "\n"
