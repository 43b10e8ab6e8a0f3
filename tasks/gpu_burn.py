"""gpu-burn, the stress tier's load: Debian's package, or the pinned upstream commit built here.

Debian 13 ships it in non-free (``gpu-burn 0+git20240115+ds-5``): the program is
``/usr/sbin/gpu-burn`` and its compare kernel ``/usr/share/gpu-burn/compare.ptx`` (built in as
the default ``-c`` file). On the ``cuda-repo`` path the upstream tree (wilicc/gpu-burn has no
tags) is downloaded at a pinned commit, sha256-verified, and built with the CUDA toolkit for
``software.compute_capability``. Either way ``{install_dir}/bin/gpu_burn`` is linked to it, which
is where ``gpubox burn`` looks (``stress.binary`` overrides).
"""

from __future__ import annotations

import shlex

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned, build_once, verified_download
from tasks.platforms import platform

# Debian 13 (trixie) non-free; the package depends on libcuda1 and links libcublas.so.12.
DEBIAN_PACKAGE = {"gpu-burn": "0+git20240115+ds-*"}
DEBIAN_PROGRAM = "/usr/sbin/gpu-burn"
# Upstream: the commit nixpkgs pins (2024-04-09, "Exit more gracefully if CUDA init fails"); the
# sha256 of GitHub's archive of it is computed from the upstream history (docs/pins.md).
COMMIT = "9aefd7c0cc603bbc8c3c102f5338c6af26f8127c"
URL = f"https://github.com/wilicc/gpu-burn/archive/{COMMIT}.tar.gz"
SHA256 = "bc1b598bcd6317f45f2fd48cc2c5e2c569598a957fc258577fab5e07b27b6cf0"


def prefix(spec: NodeSpec) -> str:
    return f"{spec.software.install_dir}/gpu-burn/{COMMIT[:12]}"


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
    plat = platform(spec)
    tarball = f"{sw.install_dir}/src/gpu-burn-{COMMIT}.tar.gz"
    verified_download(
        name=f"gpu-burn {COMMIT[:12]} source (sha256-verified)",
        url=URL,
        dest=tarball,
        sha256=SHA256,
    )
    compute = sw.compute_capability.replace(".", "")
    make_args = [f"CUDAPATH={plat.cuda_home}", f"COMPUTE={compute}", "IS_JETSON=false"]
    script = (
        "src=$(mktemp -d); trap 'rm -rf \"$src\"' EXIT; "
        f'tar -xzf {shlex.quote(tarball)} -C "$src" --strip-components=1; '
        f'make -C "$src" {" ".join(shlex.quote(a) for a in make_args)}; '
        'cp "$src"/gpu_burn "$src"/compare.ptx "$STAGE"/'
    )
    build_once(
        name=f"build gpu-burn {COMMIT[:12]} for compute_{compute}",
        stamp=f"{prefix(spec)}/.gpubox-build.json",
        inputs={"commit": COMMIT, "sha256": SHA256, "make": make_args, "cuda": sw.cuda_version},
        script=script,
        prefix=prefix(spec),
    )
    # gpu_burn finds compare.ptx in its working directory: `gpubox burn` runs it in the folder
    # the link points into.
    files.link(name="link gpu_burn", path=link, target=f"{prefix(spec)}/gpu_burn")
