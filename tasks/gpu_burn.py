"""gpu-burn, the stress tier's load: Debian's package, or the pinned upstream source built here.

Debian 13 ships it in non-free (``gpu-burn 0+git20240115+ds-5``): the program is
``/usr/sbin/gpu-burn`` and its compare kernel ``/usr/share/gpu-burn/compare.ptx`` (built in as
the default ``-c`` file). On the ``cuda-repo`` path the spec's ``software.gpu_burn`` source
(upstream wilicc/gpu-burn has no tags: a pinned commit) is downloaded, sha256-verified, and built
with the CUDA toolkit for ``software.compute_capability``. Either way ``{install_dir}/bin/gpu_burn``
is linked to it, which is where ``gpubox burn`` looks (``stress.binary`` overrides).
"""

from __future__ import annotations

import re
import shlex

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned, build_once, verified_download
from tasks.platforms import platform

# Debian 13 (trixie) non-free; the package depends on libcuda1 and links libcublas.so.12.
DEBIAN_PACKAGE = {"gpu-burn": "0+git20240115+ds-*"}
DEBIAN_PROGRAM = "/usr/sbin/gpu-burn"


def label(spec: NodeSpec) -> str:
    """The build's folder name: a commit's first 12 digits, or the version as it is."""
    version = spec.software.gpu_burn.version
    return version[:12] if re.fullmatch(r"[0-9a-f]{40}", version) else version


def prefix(spec: NodeSpec) -> str:
    return f"{spec.software.install_dir}/gpu-burn/{label(spec)}"


def tarball(spec: NodeSpec) -> str:
    return f"{spec.software.install_dir}/src/gpu-burn-{spec.software.gpu_burn.version}.tar.gz"


@deploy("gpu-burn")
def gpu_burn(spec: NodeSpec):
    """Install gpu-burn and link it as ``{install_dir}/bin/gpu_burn``.

    Example::

        gpu_burn(spec)   # Debian 13: apt gpu-burn=0+git20240115+ds-*, held
    """
    sw = spec.software
    link = f"{sw.install_dir}/bin/gpu_burn"
    if sw.source == "debian":
        apt_pinned(name="gpu-burn (Debian non-free)", packages=DEBIAN_PACKAGE)
        files.link(name="link gpu_burn", path=link, target=DEBIAN_PROGRAM)
        return
    plat, release = platform(spec), sw.gpu_burn
    verified_download(
        name=f"gpu-burn {label(spec)} source (sha256-verified)",
        url=release.resolved_url,
        dest=tarball(spec),
        sha256=release.sha256,
    )
    compute = sw.compute_capability.replace(".", "")
    # Upstream's Makefile: CUDAPATH (the toolkit), COMPUTE (the arch of compare.ptx), IS_JETSON
    # (else it greps /proc/device-tree); it leaves gpu_burn and compare.ptx in the tree.
    make_args = [f"CUDAPATH={plat.cuda_home}", f"COMPUTE={compute}", "IS_JETSON=false"]
    script = (
        "src=$(mktemp -d); trap 'rm -rf \"$src\"' EXIT; "
        f'tar -xzf {shlex.quote(tarball(spec))} -C "$src" --strip-components=1; '
        f'make -C "$src" {" ".join(shlex.quote(a) for a in make_args)}; '
        'cp "$src"/gpu_burn "$src"/compare.ptx "$STAGE"/'
    )
    build_once(
        name=f"build gpu-burn {label(spec)} for compute_{compute}",
        stamp=f"{prefix(spec)}/.gpubox-build.json",
        inputs={
            "commit": release.version,
            "sha256": release.sha256,
            "make": make_args,
            "cuda": sw.cuda_version,
        },
        script=script,
        prefix=prefix(spec),
    )
    # gpu_burn finds compare.ptx in its working directory: `gpubox burn` runs it in the folder
    # the link points into.
    files.link(name="link gpu_burn", path=link, target=f"{prefix(spec)}/gpu_burn")
