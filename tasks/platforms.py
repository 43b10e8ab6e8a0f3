"""Where each piece comes from, per install source and OS: package names and version patterns.

The spec says *which versions*; this table says *how each OS spells them*. One place, so a new
OS release is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpubox.spec import CUDA_REPO_DISTRO, NodeSpec


@dataclass(frozen=True)
class Platform:
    driver: dict[str, str]  # package -> version pattern
    # Pin-file-only patterns: every package of the driver branch, so meta-packages that depend
    # with `>=` (NVIDIA's cuda-drivers-NNN) cannot pull a newer build of its parts.
    driver_globs: dict[str, str]
    kernel_headers: dict[str, str]
    cuda: dict[str, str]
    nccl: dict[str, str]
    build: dict[str, str]  # compilers and tools, from the OS, not pinned beyond the release
    cuda_home: str
    cxx: str
    python: str  # interpreter for gpubox's venv on the node
    samples_package: dict[str, str]  # packaged cuda-samples sources ({} = download upstream)
    samples_root: str | None  # where the packaged sources live
    keyring_url: str | None = None
    keyring_sha256: str | None = None
    keyring_deb: str | None = None  # where the verified keyring package is kept on the node
    repo_url: str | None = None  # the CUDA repository (or mirror) apt installs from
    sources_list: str | None = None  # the sources entry, where cuda-keyring puts its own

    @property
    def sources_line(self) -> str:
        """The sources entry for ``repo_url``, as cuda-keyring writes it for NVIDIA's URL."""
        return f"deb [signed-by={CUDA_KEYRING}] {self.repo_url} /\n"


# What NVIDIA's cuda-keyring package installs (NVIDIA/apt-packaging-cuda-keyring,
# debian/templates/cuda-keyring.install.in and cuda-REPO.list.in): the key, and a sources entry
# named after the repository folder that points at NVIDIA's URL.
CUDA_KEYRING = "/usr/share/keyrings/cuda-archive-keyring.gpg"


def sources_list_path(distro: str) -> str:
    return f"/etc/apt/sources.list.d/cuda-{distro}-x86_64.list"


def _xy(version: str) -> str:
    return ".".join(version.split(".")[:2])


def platform(spec: NodeSpec) -> Platform:
    sw = spec.software
    driver, cuda, nccl = sw.driver_version, sw.cuda_version, sw.nccl_version
    if sw.source == "debian":  # Debian 13, non-free + contrib
        return Platform(
            driver={
                "nvidia-driver": f"{driver}-*",
                "nvidia-smi": f"{driver}-*",
                "libnvidia-ml1": f"{driver}-*",
                "nvidia-persistenced": f"{driver}-*",
            },
            driver_globs={
                "nvidia-*": f"{driver}-*",
                "libnvidia-*": f"{driver}-*",
                "libcuda*": f"{driver}-*",
            },
            kernel_headers={"linux-headers-amd64": "*"},
            cuda={
                "nvidia-cuda-toolkit": f"{cuda}~*",
                "nvidia-cuda-dev": f"{cuda.rsplit('.', 1)[0]}*",
            },
            nccl={"libnccl2": f"{nccl}-*", "libnccl-dev": f"{nccl}-*"},
            # CUDA 12.4's nvcc accepts gcc up to 13; Debian 13's default g++ is 14.
            build={"g++-13": "*", "make": "*", "python3-venv": "*", "curl": "*"},
            cuda_home="/usr",
            cxx="g++-13",
            python="python3",
            samples_package={"nvidia-cuda-samples": f"{_xy(cuda)}*"},
            samples_root="/usr/share/doc/nvidia-cuda-toolkit/examples",
        )
    distro = CUDA_REPO_DISTRO[sw.os]
    branch = driver.split(".")[0]
    cuda_xy = _xy(cuda)
    headers = "linux-headers-amd64" if sw.os.startswith("debian") else "linux-headers-generic"
    if sw.os.startswith("debian"):
        # NVIDIA's Debian repositories republish Debian's own driver packaging (nvidia-driver,
        # libcuda1, nvidia-kernel-dkms, firmware-nvidia-gsp, xserver-xorg-video-nvidia, ...).
        globs = ("nvidia-*", "libnvidia-*", "libcuda*", "libnvcuvid*", "firmware-nvidia-*")
        globs += ("xserver-xorg-video-nvidia*",)
    else:  # Ubuntu's names carry the branch: nvidia-driver-570, libnvidia-compute-570, ...
        globs = ("nvidia-*", "libnvidia-*", "xserver-xorg-video-nvidia-*")
    return Platform(
        driver={f"cuda-drivers-{branch}": f"{driver}-*", "cuda-drivers": f"{driver}-*"},
        driver_globs=dict.fromkeys(globs, f"{driver}-*"),
        kernel_headers={headers: "*"},
        cuda={f"cuda-toolkit-{cuda_xy.replace('.', '-')}": f"{cuda}-*"},
        nccl={"libnccl2": f"{nccl}-*+cuda{cuda_xy}", "libnccl-dev": f"{nccl}-*+cuda{cuda_xy}"},
        build={
            "g++": "*",
            "make": "*",
            "curl": "*",
            # Ubuntu 22.04's python3 is 3.10; gpubox needs 3.11 (jammy universe has it).
            **({"python3.11-venv": "*"} if sw.os == "ubuntu-22.04" else {"python3-venv": "*"}),
        },
        cuda_home=f"/usr/local/cuda-{cuda_xy}",
        cxx="g++",
        python="python3.11" if sw.os == "ubuntu-22.04" else "python3",
        samples_package={},
        samples_root=None,
        keyring_url=sw.cuda_repo.keyring_url(sw.os),
        keyring_sha256=sw.cuda_repo.keyring_sha256(sw.os),
        keyring_deb=f"/var/cache/gpubox/cuda-keyring_{sw.cuda_repo.keyring.version}_all.deb",
        repo_url=sw.cuda_repo.resolved_url(sw.os),
        sources_list=sources_list_path(distro),
    )


def gencode(spec: NodeSpec) -> str:
    """``-gencode=arch=compute_80,code=sm_80`` for compute capability 8.0."""
    cc = spec.software.compute_capability.replace(".", "")
    return f"-gencode=arch=compute_{cc},code=sm_{cc}"
