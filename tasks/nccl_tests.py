"""nccl-tests: the pinned upstream release, sha256-verified, built for the spec's GPUs."""

from __future__ import annotations

import shlex

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned, build_once, verified_download
from tasks.platforms import gencode, platform

MPI_PACKAGES = {"libopenmpi-dev": "*", "openmpi-bin": "*"}
MPI_HOME = "/usr/lib/x86_64-linux-gnu/openmpi"


@deploy("nccl-tests")
def nccl_tests(spec: NodeSpec):
    """Download, verify and build nccl-tests into ``{install_dir}/nccl-tests/{version}``.

    Rebuilt only when the version, hash or build flags change (a stamp file records them); the
    binaries are linked into ``{install_dir}/bin``.

    Example::

        nccl_tests(spec)   # software.nccl_tests = {version: 2.17.6, sha256: ..., url: ...}
    """
    sw, plat = spec.software, platform(spec)
    release = sw.nccl_tests
    tarball = f"{sw.install_dir}/src/nccl-tests-{release.version}.tar.gz"
    prefix = f"{sw.install_dir}/nccl-tests/{release.version}"
    verified_download(
        name=f"nccl-tests {release.version} source (sha256-verified)",
        url=release.resolved_url,
        dest=tarball,
        sha256=release.sha256,
    )
    if sw.mpi:
        apt_pinned(name="Open MPI for nccl-tests", packages=MPI_PACKAGES, hold=False)
    make_args = [
        f"CUDA_HOME={plat.cuda_home}",
        "NCCL_HOME=/usr",
        f"CXX={plat.cxx}",
        f"NVCC_GENCODE={gencode(spec)}",
    ] + (["MPI=1", f"MPI_HOME={MPI_HOME}"] if sw.mpi else [])
    inputs = {
        "version": release.version,
        "sha256": release.sha256,
        "make": make_args,
        "cuda": sw.cuda_version,
        "nccl": sw.nccl_version,
    }
    script = (
        "src=$(mktemp -d); trap 'rm -rf \"$src\"' EXIT; "
        f'tar -xzf {shlex.quote(tarball)} -C "$src" --strip-components=1; '
        f'make -C "$src" -j"$(nproc)" {" ".join(shlex.quote(a) for a in make_args)}; '
        'cp "$src"/build/*_perf "$STAGE"/'
    )
    build_once(
        name=f"build nccl-tests {release.version} for {gencode(spec)}",
        stamp=f"{prefix}/.gpubox-build.json",
        inputs=inputs,
        script=script,
        prefix=prefix,
    )
    files.link(
        name="nccl-tests: current version",
        path=f"{sw.install_dir}/nccl-tests/current",
        target=prefix,
    )
