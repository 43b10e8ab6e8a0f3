"""CUDA toolkit and NCCL, pinned and held, matching the driver; the compilers the builds need."""

from __future__ import annotations

from pyinfra.api import deploy

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned
from tasks.platforms import platform


@deploy("CUDA toolkit and NCCL")
def cuda_and_nccl(spec: NodeSpec):
    """Install the spec's CUDA toolkit and NCCL versions and hold them.

    Example::

        cuda_and_nccl(spec)   # cuda_version "12.4.131", nccl_version "2.22.3" on Debian 13
    """
    plat = platform(spec)
    apt_pinned(name="build tools", packages=plat.build, hold=False)
    apt_pinned(name=f"CUDA toolkit {spec.software.cuda_version}", packages=plat.cuda)
    apt_pinned(name=f"NCCL {spec.software.nccl_version}", packages=plat.nccl)
