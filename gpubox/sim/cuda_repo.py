"""A stand-in of NVIDIA's CUDA apt repository for Debian 12, built on the host, served on loopback.

NVIDIA's repository (``https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/``)
cannot be reached where gpubox's tests run, so the simulated Debian 12 node's ``cuda-repo`` deploy
installs from this one instead: production code unchanged, only ``software.cuda_repo.url`` (and
the keyring's sha256) differ. Test and demo material only; never used outside a simulation.

What it is, as NVIDIA's is:

* a **flat** apt repository (``deb [signed-by=...] URL /``): ``Packages``, ``Packages.gz``,
  ``Release``, ``Release.gpg``, ``InRelease`` and every ``.deb`` at the top, ``Filename: ./x.deb``,
  the signing key's public half as ``<keyid>.pub`` (NVIDIA's is ``3bf863cc.pub``);
* signed, by a **test** key committed under ``gpubox/sim/standin/cuda-repo``, which the stand-in
  ``cuda-keyring_1.1-1_all.deb`` installs the way NVIDIA's does (its contents below);
* packages with NVIDIA's **names, versions and dependency shape** for what gpubox pins (driver
  570.124.06, CUDA 12.8.1, NCCL 2.26.2), plus what ``apt upgrade`` would be offered in real life: a
  newer build of the same branch (570.148.08), the next branch (575.57.08, which the unversioned
  ``cuda-drivers`` moves to), the next CUDA (12.9.1) and its NCCL (2.27.3). Where each shape comes
  from is said at each table below.

What it is not: NVIDIA's code. The packages are empty shells, or carry small stand-ins where the
deploy needs something that works: ``nvcc`` (compiles the host code with Debian's g++), the CUDA
headers and libraries the stand-in tools link (every call answers "no CUDA-capable device"),
``nvidia-smi`` and ``nvidia-persistenced`` that fail as the real ones do without a loaded driver,
and ``nvidia-persistenced.service``. No package puts a ``libnvidia-ml.so.1`` anywhere: the
simulated node's NVML is gpubox's library, which ``software.nvml_library`` names.

Built with ``dpkg-deb``, ``gcc`` and ``gpg`` (scripts/host-setup.sh installs them), reproducibly:
every time stamp is fixed (:data:`EPOCH`), the archives are made deterministically and the test
key's ed25519 signatures are deterministic, so the same inputs give the same bytes. The result is
cached under ``$GPUBOX_SIM_CACHE/cuda-repo-<hash of every input>``::

    >>> repo = build()                        # seconds the first time, then cached
    >>> server = Server(repo, port=38800)     # http://127.0.0.1:38800/compute/cuda/repos/debian12/x86_64/
    >>> server.spec_data()["cuda_repo"]       # {"url": ..., "keyring": {"sha256": ...}}
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import json
import os
import posixpath
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

from gpubox.sim import standin

SOURCE = Path(__file__).resolve().parent / "standin" / "cuda-repo"
RECIPE_VERSION = 1
EPOCH = 1741219200  # 2025-03-06 00:00 UTC: every mtime, the Release date, the signatures
DISTRO = "debian12"
URL_PATH = f"/compute/cuda/repos/{DISTRO}/x86_64/"  # NVIDIA's path under its host
NVIDIA_URL = f"https://developer.download.nvidia.com{URL_PATH}"
KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"
SOURCES_LIST = f"/etc/apt/sources.list.d/cuda-{DISTRO}-x86_64.list"
MAINTAINER = "gpubox stand-in <cuda-repo-standin@gpubox.invalid>"
LIBDIR = "/usr/lib/x86_64-linux-gnu"
HOST_TOOLS = {"dpkg-deb": "dpkg", "gcc": "gcc", "ar": "binutils", "gpg": "gpg"}
# The stand-in sources the deploy downloads next to the repository (as from GitHub).
SAMPLES_VERSION = "0.0.0-standin"
GPU_BURN_VERSION = "0.0.0-standin"


class BuildError(Exception):
    """The stand-in repository could not be built; says which step and why."""


# --------------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class File:
    """One file of a package: ``text`` (with ``@NAME@`` placeholders filled), ``source`` (a file
    under gpubox/sim/standin/cuda-repo), ``stub`` (a built stub library) or a symlink."""

    path: str
    text: str | None = None
    source: str | None = None
    stub: str | None = None
    link: str | None = None
    mode: int = 0o644


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    description: str
    depends: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    arch: str = "amd64"
    section: str = "multiverse/devel"
    files: tuple[File, ...] = ()
    conffiles: tuple[str, ...] = ()
    ldconfig: bool = False  # libraries on the linker path: dpkg runs ldconfig (a trigger)
    values: tuple[tuple[str, str], ...] = ()  # @NAME@ -> value in text and source files

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.split(':')[-1]}_{self.arch}.deb"


@dataclass(frozen=True)
class Stub:
    """A stub library built on the host: ``source`` (stubs/*.c) with ``defines``."""

    name: str
    source: str
    soname: str | None  # None: a static archive
    defines: tuple[tuple[str, str], ...] = ()


def _upstream(version: str) -> str:
    return version.rsplit("-", 1)[0]


# Driver builds. NVIDIA's Debian repositories republish Debian's own driver packaging under the
# same names, with a "-1" revision: the debian12 repository serves e.g.
# libnvidia-encode1_550.54.15-1_amd64.deb and libnvidia-fbc1_550.54.15-1_amd64.deb
# (keylase/nvidia-patch#773), and a host using it lists nvidia-driver, nvidia-driver-bin,
# nvidia-driver-libs 545.23.08-1 (NVIDIA/k8s-device-plugin#471). The meta-packages on top are
# NVIDIA's: cuda-drivers-NNN depends on the driver's parts with ">=" (as Ubuntu's
# cuda-drivers-570 depends on nvidia-driver-570 (>= 570.124.06)), and the unversioned
# cuda-drivers on the newest cuda-drivers-NNN: a plain `apt install cuda-drivers` takes the
# newest branch, and every part's newest build, which is why gpubox pins and holds them.
# Debian's nvidia-driver depends on its parts with "=" and on
# "nvidia-kernel-dkms (= V) | nvidia-kernel-U | nvidia-open-kernel-U" (the apt output quoted in
# NVIDIA/nvidia-container-toolkit#361). Dropped on purpose: the real nvidia-kernel-dkms's
# dependency on dkms (it would pull kernel headers into a container that boots no kernel of its
# own) and xserver-xorg-video-nvidia's on the X server (no Xorg on a headless test node).
DRIVERS = (
    ("570.124.06-1", 12080),  # the build CUDA 12.8.1 ships with: home.py's pin
    ("570.148.08-1", 12080),  # a later build of the 570 branch (nvidia-open-570=570.148.08-*)
    ("575.57.08-1", 12090),  # the next branch, with CUDA 12.9 (libnvidia-nscq-575=575.57.08-1)
)


def _driver(version: str, cuda_code: int) -> list[Deb]:
    up = _upstream(version)
    branch = up.split(".")[0]
    same = f"(= {version})"
    alt = f"nvidia-alternative {same}"

    def deb(name, description, depends=(), **kw):
        return Deb(name, version, description, tuple(depends), section="non-free/libs", **kw)

    return [
        Deb(
            "cuda-drivers",
            version,
            "CUDA Driver meta-package, branch-agnostic",
            (f"cuda-drivers-{branch} {same}",),
            section="multiverse/metapackages",
        ),
        Deb(
            f"cuda-drivers-{branch}",
            version,
            f"CUDA Driver meta-package, branch-specific ({branch})",
            tuple(
                f"{name} (>= {up})"
                for name in (
                    "nvidia-driver",
                    "libcuda1",
                    "libnvidia-ml1",
                    "nvidia-smi",
                    "nvidia-persistenced",
                    "nvidia-modprobe",
                    "libnvidia-cfg1",
                    "nvidia-settings",
                )
            )
            + (f"nvidia-kernel-dkms (>= {up}) | nvidia-kernel-open-dkms (>= {up})",),
            section="multiverse/metapackages",
        ),
        deb(
            "nvidia-driver",
            "NVIDIA metapackage",
            [
                f"nvidia-driver-libs {same}",
                f"nvidia-driver-bin {same}",
                f"xserver-xorg-video-nvidia {same}",
                f"nvidia-vdpau-driver {same}",
                alt,
                f"nvidia-kernel-dkms {same} | nvidia-kernel-{up} | nvidia-open-kernel-{up}",
                f"firmware-nvidia-gsp {same}",
            ],
        ),
        deb("nvidia-driver-libs", "NVIDIA metapackage (OpenGL/GLX/EGL/GLES libraries)", [alt]),
        deb("nvidia-driver-bin", "NVIDIA driver support binaries", [alt]),
        deb("xserver-xorg-video-nvidia", "NVIDIA binary Xorg driver", [alt]),
        deb("nvidia-vdpau-driver", "Video Decode and Presentation API for Unix - NVIDIA driver"),
        deb("nvidia-alternative", "allows the selection of NVIDIA as GLX provider"),
        deb(
            "nvidia-kernel-dkms",
            "NVIDIA binary kernel module DKMS source (gpubox stand-in: nothing to build)",
            [f"nvidia-kernel-support {same}"],
            provides=(f"nvidia-kernel-{up}",),
        ),
        deb(
            "nvidia-kernel-open-dkms",
            "NVIDIA binary kernel module DKMS source (open GPU kernel modules; stand-in)",
            [f"nvidia-kernel-support {same}"],
            provides=(f"nvidia-open-kernel-{up}",),
        ),
        deb("nvidia-kernel-support", "NVIDIA binary kernel module support files", [alt]),
        deb("firmware-nvidia-gsp", "NVIDIA GSP firmware (gpubox stand-in: no firmware)"),
        deb(
            "libcuda1",
            "NVIDIA CUDA Driver Library (gpubox stand-in: answers no CUDA-capable device)",
            [alt],
            files=(File(f"{LIBDIR}/libcuda.so.1", stub=f"libcuda-{cuda_code}"),),
            ldconfig=True,
        ),
        # The real libnvidia-ml1 carries libnvidia-ml.so.1 on the linker path; the stand-in must
        # not: it would shadow the simulated NVML (software.nvml_library) for every other program.
        deb(
            "libnvidia-ml1", "NVIDIA Management Library (NVML) runtime library (empty shell)", [alt]
        ),
        deb(
            "nvidia-smi",
            "NVIDIA System Management Interface (stand-in: fails without a loaded driver)",
            [f"libnvidia-ml1 {same}", alt],
            files=(File("/usr/bin/nvidia-smi", source="bin/nvidia-smi", mode=0o755),),
        ),
        deb(
            "nvidia-persistenced",
            "daemon to maintain persistent software state in the NVIDIA driver (stand-in)",
            [f"libnvidia-cfg1 (>= {up})"],
            files=(
                File("/usr/bin/nvidia-persistenced", source="bin/nvidia-persistenced", mode=0o755),
                File(
                    "/lib/systemd/system/nvidia-persistenced.service",
                    source="units/nvidia-persistenced.service",
                ),
            ),
        ),
        deb("libnvidia-cfg1", "NVIDIA binary OpenGL/GLX configuration library (empty shell)"),
        deb("nvidia-modprobe", "utility to load NVIDIA kernel modules and create device nodes"),
        deb("nvidia-settings", "tool for configuring the NVIDIA graphics driver (empty shell)"),
    ]


# CUDA toolkits: (toolkit, cudart, nvcc, cccl, cublas). The toolkit meta-package's version is the
# release (cuda-toolkit-12-8=12.8.1-1) and each part has its own (nvidia/cuda 12.8.1 images:
# cuda-cudart-12-8=12.8.90-1, libcublas-12-8=12.8.4.1-1; cuda-nvcc-12-8=12.8.93-1, docs/pins.md;
# 12.9.1: cuda-cudart-dev-12-9=12.9.79-1, cuda-nvcc-12-9=12.9.86-1, cuda-crt-12-9 and
# cuda-nvvm-12-9 12.9.86-1, cuda-cccl-12-9=12.9.27-1, libcublas-12-9=12.9.1.4-1, as pinned in
# public Dockerfiles). nvcc depends on cuda-crt and cuda-nvvm (installed as a set in those
# Dockerfiles); the meta-packages depend on their parts with ">=". cuda-toolkit-config-common and
# cuda-toolkit-12-config-common are shared by every 12.x toolkit, so a newer CUDA brings a newer
# build of them that `apt upgrade` installs (nothing pins them).
CUDAS = (
    ("12.8.1-1", "12.8.90-1", "12.8.93-1", "12.8.90-1", "12.8.4.1-1"),
    ("12.9.1-1", "12.9.79-1", "12.9.86-1", "12.9.27-1", "12.9.1.4-1"),
)


def _cuda(toolkit: str, cudart: str, nvcc: str, cccl: str, cublas: str) -> list[Deb]:
    release = ".".join(_upstream(toolkit).split(".")[:2])  # 12.8
    dash = release.replace(".", "-")  # 12-8
    code = int(release.split(".")[0]) * 1000 + int(release.split(".")[1]) * 10  # 12080
    home = f"/usr/local/cuda-{release}"
    target = f"{home}/targets/x86_64-linux"
    values = (
        ("CUDA_RELEASE", release),
        ("NVCC_VERSION", _upstream(nvcc)),
        ("CUDA_VERSION_CODE", str(code)),
    )

    def deb(name, version, description, depends=(), **kw):
        return Deb(name, version, description, tuple(depends), values=values, **kw)

    return [
        deb(
            f"cuda-toolkit-{dash}",
            toolkit,
            f"CUDA Toolkit {release} meta-package",
            [
                f"cuda-compiler-{dash} (>= {_upstream(toolkit)})",
                f"cuda-libraries-{dash} (>= {_upstream(toolkit)})",
                f"cuda-libraries-dev-{dash} (>= {_upstream(toolkit)})",
                f"cuda-nvml-dev-{dash} (>= {_upstream(cudart)})",
                f"cuda-toolkit-{dash}-config-common",
                "cuda-toolkit-12-config-common",
                "cuda-toolkit-config-common",
            ],
            section="multiverse/metapackages",
        ),
        deb(
            f"cuda-compiler-{dash}",
            toolkit,
            f"CUDA compiler {release} meta-package",
            [f"cuda-nvcc-{dash} (>= {_upstream(nvcc)})"],
            section="multiverse/metapackages",
        ),
        deb(
            f"cuda-nvcc-{dash}",
            nvcc,
            f"CUDA nvcc (gpubox stand-in: compiles host code with g++, {release})",
            [f"cuda-crt-{dash} (>= {_upstream(nvcc)})", f"cuda-nvvm-{dash} (>= {_upstream(nvcc)})"],
            files=(File(f"{home}/bin/nvcc", source="bin/nvcc", mode=0o755),),
        ),
        deb(f"cuda-crt-{dash}", nvcc, "CUDA crt (empty shell)"),
        deb(f"cuda-nvvm-{dash}", nvcc, "CUDA nvvm (empty shell)"),
        deb(
            f"cuda-cudart-{dash}",
            cudart,
            "CUDA Runtime native Libraries (gpubox stand-in: no CUDA-capable device)",
            [f"cuda-toolkit-{dash}-config-common"],
            files=(File(f"{target}/lib/libcudart.so.12", stub=f"libcudart-{code}"),),
        ),
        deb(
            f"cuda-cudart-dev-{dash}",
            cudart,
            "CUDA Runtime native dev links, headers (gpubox stand-in)",
            [f"cuda-cudart-{dash} (>= {_upstream(cudart)})", f"cuda-cccl-{dash}"],
            files=(
                File(f"{target}/include/cuda_runtime.h", source="include/cuda_runtime.h"),
                File(f"{target}/lib/libcudart.so", link="libcudart.so.12"),
                File(f"{target}/lib/libcudart_static.a", stub=f"libcudart_static-{code}"),
            ),
        ),
        deb(f"cuda-cccl-{dash}", cccl, "CUDA CCCL (empty shell)"),
        deb(
            f"cuda-driver-dev-{dash}",
            cudart,
            "CUDA Driver native dev stub library (gpubox stand-in)",
            files=(
                File(f"{target}/include/cuda.h", source="include/cuda.h"),
                File(f"{target}/lib/stubs/libcuda.so", stub=f"libcuda-{code}"),
            ),
        ),
        deb(
            f"cuda-libraries-{dash}",
            toolkit,
            f"CUDA Libraries {release} meta-package",
            [
                f"cuda-cudart-{dash} (>= {_upstream(cudart)})",
                f"libcublas-{dash} (>= {_upstream(cublas)})",
            ],
            section="multiverse/metapackages",
        ),
        deb(
            f"cuda-libraries-dev-{dash}",
            toolkit,
            f"CUDA Libraries {release} development meta-package",
            [
                f"cuda-cudart-dev-{dash} (>= {_upstream(cudart)})",
                f"cuda-driver-dev-{dash} (>= {_upstream(cudart)})",
                f"libcublas-dev-{dash} (>= {_upstream(cublas)})",
            ],
            section="multiverse/metapackages",
        ),
        deb(
            f"libcublas-{dash}",
            cublas,
            "CUBLAS native runtime libraries (gpubox stand-in: no CUDA-capable device)",
            [f"cuda-toolkit-{dash}-config-common"],
            files=(File(f"{target}/lib/libcublas.so.12", stub=f"libcublas-{_upstream(cublas)}"),),
        ),
        deb(
            f"libcublas-dev-{dash}",
            cublas,
            "CUBLAS native dev links, headers (gpubox stand-in)",
            [f"libcublas-{dash} (>= {_upstream(cublas)})"],
            files=(
                File(f"{target}/include/cublas_v2.h", source="include/cublas_v2.h"),
                File(f"{target}/lib/libcublas.so", link="libcublas.so.12"),
            ),
        ),
        # The real one also has lib64/stubs/libnvidia-ml.so: left out (the simulated NVML only).
        deb(f"cuda-nvml-dev-{dash}", cudart, "NVML native dev links, headers (empty shell)"),
        deb(
            f"cuda-toolkit-{dash}-config-common",
            cudart,
            f"Common config package for CUDA Toolkit {release}",
            files=(
                File(f"{home}/include", link="targets/x86_64-linux/include"),
                File(f"{home}/lib64", link="targets/x86_64-linux/lib"),
            ),
            arch="all",
        ),
        deb(
            "cuda-toolkit-12-config-common",
            cudart,
            "Common config package for CUDA Toolkit 12 (shared by every 12.x)",
            arch="all",
        ),
        deb(
            "cuda-toolkit-config-common",
            cudart,
            "Common config package for CUDA Toolkit (shared by every release)",
            arch="all",
        ),
    ]


# NCCL builds per CUDA: libnccl2/libnccl-dev X-1+cudaY.Z (libnccl2=2.26.2-1+cuda12.8, widely
# pinned; 2.27.3-1+cuda12.9 next to cuda-12-9 in public install scripts). libnccl-dev depends on
# its exact libnccl2; the library sits in the multiarch folder.
NCCLS = (("2.26.2-1+cuda12.8", 22602), ("2.27.3-1+cuda12.9", 22703))


def _nccl(version: str, code: int) -> list[Deb]:
    up = version.split("-")[0]  # 2.26.2
    major, minor, patch = up.split(".")
    values = (("NCCL_MAJOR", major), ("NCCL_MINOR", minor), ("NCCL_PATCH", patch))
    return [
        Deb(
            "libnccl2",
            version,
            "NVIDIA Collective Communication Library (NCCL) Runtime (gpubox stand-in)",
            section="libs",
            files=(
                File(f"{LIBDIR}/libnccl.so.{up}", stub=f"libnccl-{code}"),
                File(f"{LIBDIR}/libnccl.so.2", link=f"libnccl.so.{up}"),
            ),
            ldconfig=True,
        ),
        Deb(
            "libnccl-dev",
            version,
            "NVIDIA Collective Communication Library (NCCL) Development Files (gpubox stand-in)",
            (f"libnccl2 (= {version})",),
            section="libdevel",
            files=(
                File("/usr/include/nccl.h", source="include/nccl.h"),
                File(f"{LIBDIR}/libnccl.so", link="libnccl.so.2"),
            ),
            values=values,
        ),
    ]


def _stubs() -> list[Stub]:
    out = {}
    for _, code in DRIVERS:
        out[f"libcuda-{code}"] = Stub(
            f"libcuda-{code}", "cuda.c", "libcuda.so.1", (("STANDIN_CUDA_VERSION", str(code)),)
        )
    for toolkit, _, _, _, cublas in CUDAS:
        release = ".".join(_upstream(toolkit).split(".")[:2])
        code = int(release.split(".")[0]) * 1000 + int(release.split(".")[1]) * 10
        defines = (("STANDIN_CUDART_VERSION", str(code)),)
        out[f"libcuda-{code}"] = Stub(
            f"libcuda-{code}", "cuda.c", "libcuda.so.1", (("STANDIN_CUDA_VERSION", str(code)),)
        )
        out[f"libcudart-{code}"] = Stub(f"libcudart-{code}", "cudart.c", "libcudart.so.12", defines)
        out[f"libcudart_static-{code}"] = Stub(
            f"libcudart_static-{code}", "cudart.c", None, defines
        )
        number = "".join(f"{int(p):02d}" for p in _upstream(cublas).split(".")[:3])
        out[f"libcublas-{_upstream(cublas)}"] = Stub(
            f"libcublas-{_upstream(cublas)}",
            "cublas.c",
            "libcublas.so.12",
            (("STANDIN_CUBLAS_VERSION", number),),
        )
    for _, code in NCCLS:
        out[f"libnccl-{code}"] = Stub(
            f"libnccl-{code}", "nccl.c", "libnccl.so.2", (("STANDIN_NCCL_VERSION_CODE", str(code)),)
        )
    return sorted(out.values(), key=lambda s: s.name)


def keyring_deb() -> Deb:
    """The stand-in cuda-keyring 1.1-1, shaped like NVIDIA's (NVIDIA/apt-packaging-cuda-keyring:
    debian/templates/cuda-keyring.install.in installs the keyring into /usr/share/keyrings/ and
    cuda-DISTRO-ARCH.list into /etc/apt/sources.list.d/; cuda-REPO.list.in is the entry below,
    with NVIDIA's URL; control.in: "GPG keyring for the CUDA repository"). The debian12 build
    carries no apt pin file (the template's optional cuda-repository-pin-600 is not installed)."""
    return Deb(
        "cuda-keyring",
        "1.1-1",
        "GPG keyring for the CUDA repository (gpubox stand-in: enrolls its TEST key) and enables "
        f"repo: {DISTRO}/x86_64",
        arch="all",
        section="multiverse/devel",
        files=(
            File(KEYRING, stub="keyring"),
            File(SOURCES_LIST, text=f"deb [signed-by={KEYRING}] {NVIDIA_URL} /\n"),
        ),
        conffiles=(SOURCES_LIST,),
    )


def catalogue() -> list[Deb]:
    """Every package of the stand-in repository, in the order of its Packages file."""
    debs = [keyring_deb()]
    for version, code in DRIVERS:
        debs += _driver(version, code)
    for row in CUDAS:
        debs += _cuda(*row)
    for version, code in NCCLS:
        debs += _nccl(version, code)
    return sorted(debs, key=lambda d: (d.name, d.version))


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """A built stand-in repository: ``path`` holds the files served at :data:`URL_PATH`."""

    path: Path
    keyring_sha256: str
    fingerprint: str
    packages: tuple[str, ...] = field(default=())  # "name version" of every package

    @classmethod
    def load(cls, path: Path) -> Repository:
        meta = json.loads((path / ".gpubox-standin.json").read_text())
        return cls(path, meta["keyring_sha256"], meta["fingerprint"], tuple(meta["packages"]))


def cache_dir() -> Path:
    return Path(os.environ.get("GPUBOX_SIM_CACHE") or "/var/cache/gpubox/sim").absolute()


def _tool_versions() -> list[str]:
    out = []
    for tool, flag in (("gcc", "--version"), ("dpkg-deb", "--version"), ("gpg", "--version")):
        result = subprocess.run([tool, flag], capture_output=True, text=True)
        out.append(result.stdout.splitlines()[0] if result.stdout else tool)
    return out


def recipe_key() -> str:
    """Hash of every input: this module's catalogue, the stand-in files, the host's tools."""
    digest = hashlib.sha256()
    digest.update(json.dumps([RECIPE_VERSION, EPOCH, _tool_versions()]).encode())
    digest.update(repr((catalogue(), _stubs())).encode())
    for path in sorted(p for p in SOURCE.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(SOURCE)).encode() + b"\0" + path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def check_tools() -> None:
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        packages = " ".join(sorted({HOST_TOOLS[t] for t in missing}))
        raise BuildError(
            f"building the stand-in CUDA repository needs {', '.join(missing)}: "
            f"`apt-get install {packages}` (or run scripts/host-setup.sh)"
        )


def build(cache: Path | None = None) -> Repository:
    """The stand-in repository, built first if this recipe is not cached (a few seconds).

    Built into a temporary folder next to its final place and renamed when complete, under a
    lock, so two sessions never see half a repository.
    """
    check_tools()
    cache = cache or cache_dir()
    dest = cache / f"cuda-repo-{recipe_key()}"
    if (dest / ".gpubox-standin.json").is_file():
        return Repository.load(dest)
    cache.mkdir(parents=True, exist_ok=True)
    import fcntl

    with open(cache / ".cuda-repo.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / ".gpubox-standin.json").is_file():
            return Repository.load(dest)
        work = Path(tempfile.mkdtemp(prefix=".cuda-repo-build-", dir=cache))
        try:
            _build_into(work / "repo", work)
            shutil.rmtree(dest, ignore_errors=True)
            os.rename(work / "repo", dest)
            return Repository.load(dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise BuildError(
            f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}"
        )
    return result


def _build_into(out: Path, work: Path) -> None:
    out.mkdir(parents=True)
    # Its own short folder: gpg-agent's socket lives there, and a socket path has ~100 bytes.
    gnupg = Path(tempfile.mkdtemp(prefix="gpubox-gpg-"))
    env = {**os.environ, "GNUPGHOME": str(gnupg), "SOURCE_DATE_EPOCH": str(EPOCH), "LC_ALL": "C"}
    try:
        _run(
            ["gpg", "--batch", "--quiet", "--import", str(SOURCE / "TEST-signing-key.asc")],
            "importing the stand-in's test key",
            env=env,
        )
        listing = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys"], "gpg", env=env)
        fingerprint = next(
            line.split(":")[9] for line in listing.stdout.splitlines() if line.startswith("fpr")
        )
        stubs: dict[str, bytes] = {}
        exported = subprocess.run(
            ["gpg", "--batch", "--export", fingerprint], capture_output=True, env=env
        )
        if exported.returncode != 0 or not exported.stdout:
            raise BuildError(f"exporting the test key failed: {exported.stderr.decode()[-400:]}")
        stubs["keyring"] = exported.stdout
        armored = _run(["gpg", "--batch", "--armor", "--export", fingerprint], "gpg", env=env)
        (out / f"{fingerprint[-8:].lower()}.pub").write_text(armored.stdout)
        for stub in _stubs():
            stubs[stub.name] = _compile(stub, work / "stubs")
        entries = []
        for deb in catalogue():
            path = _package(deb, stubs, work / "stage", out)
            entries.append(_packages_entry(deb, path))
        packages = "".join(entries)
        (out / "Packages").write_text(packages)
        (out / "Packages.gz").write_bytes(gzip.compress(packages.encode(), 9, mtime=0))
        release = _release(out)
        (out / "Release").write_text(release)
        sign = [
            "gpg",
            "--batch",
            "--yes",
            f"--faked-system-time={EPOCH}!",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--digest-algo",
            "SHA256",
            "-u",
            fingerprint,
        ]
        _run(
            [*sign, "--clearsign", "-o", str(out / "InRelease"), str(out / "Release")],
            "signing InRelease",
            env=env,
        )
        _run(
            [
                *sign,
                "--armor",
                "--detach-sign",
                "-o",
                str(out / "Release.gpg"),
                str(out / "Release"),
            ],
            "signing Release.gpg",
            env=env,
        )
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, capture_output=True)
        shutil.rmtree(gnupg, ignore_errors=True)
    keyring = next(d for d in catalogue() if d.name == "cuda-keyring")
    meta = {
        "keyring_sha256": hashlib.sha256((out / keyring.filename).read_bytes()).hexdigest(),
        "fingerprint": fingerprint,
        "packages": [f"{d.name} {d.version}" for d in catalogue()],
    }
    (out / ".gpubox-standin.json").write_text(json.dumps(meta, indent=2) + "\n")
    for path in out.iterdir():
        os.utime(path, (EPOCH, EPOCH))


def _compile(stub: Stub, folder: Path) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    defines = [f"-D{k}={v}" for k, v in stub.defines]
    source = str(SOURCE / "stubs" / stub.source)
    flags = ["-O2", "-fPIC", "-fno-stack-protector", "-fno-asynchronous-unwind-tables"]
    if stub.soname is None:
        obj = folder / f"{stub.name}.o"
        _run(["gcc", *flags, *defines, "-c", "-o", str(obj), source], f"compiling {stub.name}")
        archive = folder / f"{stub.name}.a"
        _run(["ar", "rcsD", str(archive), str(obj)], f"archiving {stub.name}")
        return archive.read_bytes()
    lib = folder / f"{stub.name}.so"
    _run(
        [
            "gcc",
            *flags,
            *defines,
            "-shared",
            "-nostdlib",
            f"-Wl,-soname,{stub.soname}",
            "-Wl,--build-id=none",
            "-Wl,--hash-style=gnu",
            "-o",
            str(lib),
            source,
        ],
        f"compiling {stub.name}",
    )
    return lib.read_bytes()


def _fill(text: str, values) -> str:
    """``@NAME@`` placeholders of a stand-in file replaced by this package's values."""
    for key, value in values:
        text = text.replace(f"@{key}@", value)
    return text


def _package(deb: Deb, stubs: dict[str, bytes], stage_root: Path, out: Path) -> Path:
    stage = stage_root / f"{deb.name}_{deb.version}"
    control_dir = stage / "DEBIAN"
    control_dir.mkdir(parents=True)
    size = 0
    for f in deb.files:
        dest = stage / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.link is not None:
            dest.symlink_to(f.link)
            continue
        if f.text is not None:
            data = _fill(f.text, deb.values).encode()
        elif f.source is not None:
            data = _fill((SOURCE / f.source).read_text(), deb.values).encode()
        else:
            data = stubs[f.stub]
        dest.write_bytes(data)
        os.chmod(dest, f.mode)
        size += len(data)
    fields = _control(deb, installed_kib=max(1, -(-size // 1024)))
    (control_dir / "control").write_text(fields)
    if deb.conffiles:
        (control_dir / "conffiles").write_text("".join(f"{c}\n" for c in deb.conffiles))
    if deb.ldconfig:
        (control_dir / "triggers").write_text("activate-noawait ldconfig\n")
    for path in [stage, *stage.rglob("*")]:
        os.utime(path, (EPOCH, EPOCH), follow_symlinks=False)
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o755)
    target = out / deb.filename
    _run(
        ["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(stage), str(target)],
        f"dpkg-deb --build {deb.filename}",
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)},
    )
    return target


def _control(deb: Deb, installed_kib: int) -> str:
    lines = [
        f"Package: {deb.name}",
        f"Version: {deb.version}",
        f"Architecture: {deb.arch}",
        f"Maintainer: {MAINTAINER}",
        f"Installed-Size: {installed_kib}",
    ]
    if deb.depends:
        lines.append(f"Depends: {', '.join(deb.depends)}")
    if deb.provides:
        lines.append(f"Provides: {', '.join(deb.provides)}")
    lines += [f"Section: {deb.section}", "Priority: optional", f"Description: {deb.description}"]
    return "\n".join(lines) + "\n"


def _packages_entry(deb: Deb, path: Path) -> str:
    data = path.read_bytes()
    control = _run(["dpkg-deb", "--field", str(path)], f"reading {path.name}").stdout
    head, _, description = control.partition("Description:")
    return (
        head
        + f"Filename: ./{path.name}\n"
        + f"Size: {len(data)}\n"
        + f"MD5sum: {hashlib.md5(data).hexdigest()}\n"
        + f"SHA1: {hashlib.sha1(data).hexdigest()}\n"
        + f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        + f"Description:{description}"
        + "\n"
    )


def _release(out: Path) -> str:
    lines = [
        "Origin: NVIDIA",
        "Label: NVIDIA CUDA",
        f"Date: {formatdate(EPOCH, usegmt=True)}",
        f"Description: gpubox stand-in of NVIDIA's CUDA repository ({DISTRO}/x86_64): test "
        "packages signed with a TEST key",
    ]
    files = [out / "Packages", out / "Packages.gz"]
    for label, algorithm in (
        ("MD5Sum", "md5"),
        ("SHA1", "sha1"),
        ("SHA256", "sha256"),
        ("SHA512", "sha512"),
    ):
        lines.append(f"{label}:")
        for path in files:
            data = path.read_bytes()
            lines.append(f" {hashlib.new(algorithm, data).hexdigest()} {len(data):>8} {path.name}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Serving
# --------------------------------------------------------------------------------------------


class Server:
    """Serves the repository at :data:`URL_PATH` and the stand-in cuda-samples and gpu-burn
    sources under ``/standin/`` on 127.0.0.1 until :meth:`stop`; records every path asked for."""

    def __init__(self, repository: Repository, port: int = 0):
        self.repository = repository
        files: dict[str, bytes] = {}
        for path in sorted(repository.path.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                files[URL_PATH + path.name] = path.read_bytes()
        self.samples = standin.tarball(SAMPLES_VERSION, "cuda-samples")
        self.gpu_burn = standin.tarball(GPU_BURN_VERSION, "gpu-burn")
        files[f"/standin/cuda-samples-{SAMPLES_VERSION}.tar.gz"] = self.samples
        files[f"/standin/gpu-burn-{GPU_BURN_VERSION}.tar.gz"] = self.gpu_burn
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool):
                requests.append(self.path)
                # apt asks for Packages' "Filename: ./x.deb" as ".../x86_64/./x.deb" and spells
                # "+" as "%2b": a web server decodes and resolves both (RFC 3986).
                path = posixpath.normpath(urllib.parse.unquote(self.path.split("?", 1)[0]))
                data = files.get(path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self._answer(True)

            def do_HEAD(self):  # noqa: N802
                self._answer(False)

            def log_message(self, *args):
                pass

        # A fixed port keeps the URLs (which the node spec records) the same across deploys.
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.base = f"http://127.0.0.1:{self._httpd.server_port}"
        self.url = self.base + URL_PATH
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def spec_data(self) -> dict:
        """The ``software`` entries that point a ``cuda-repo`` node at this server."""
        return {
            "cuda_repo": {"url": self.url, "keyring": {"sha256": self.repository.keyring_sha256}},
            "cuda_samples": {
                "version": SAMPLES_VERSION,
                "sha256": hashlib.sha256(self.samples).hexdigest(),
                "url": f"{self.base}/standin/cuda-samples-{{version}}.tar.gz",
            },
            "gpu_burn": {
                "version": GPU_BURN_VERSION,
                "sha256": hashlib.sha256(self.gpu_burn).hexdigest(),
                "url": f"{self.base}/standin/gpu-burn-{{version}}.tar.gz",
            },
        }

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables ``inventories/sim.py`` reads for its Debian 12 nodes (JSON of
        :meth:`spec_data`); ``overrides`` replace keys of ``cuda_repo`` (``url``) or its keyring
        (``keyring_sha256``)."""
        data = self.spec_data()
        if "url" in overrides:
            data["cuda_repo"]["url"] = overrides["url"]
        if "keyring_sha256" in overrides:
            data["cuda_repo"]["keyring"]["sha256"] = overrides["keyring_sha256"]
        return {"GPUBOX_CUDA_REPO_SPEC": json.dumps(data, sort_keys=True)}

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def main() -> None:  # pragma: no cover - a developer's helper: python -m gpubox.sim.cuda_repo
    repo = build()
    print(repo.path)
    with contextlib.suppress(KeyboardInterrupt):
        server = Server(repo, int(os.environ.get("GPUBOX_CUDA_REPO_PORT", "0")))
        print(server.url, json.dumps(server.spec_data(), indent=2))
        threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()
