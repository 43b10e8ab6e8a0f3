"""The NVIDIA driver: pinned and held, nouveau out of the way, persistence daemon enabled."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.server import Command, Which
from pyinfra.operations import apt, files, python, server, systemd

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned, repository_reachable, verified_download
from tasks.platforms import platform

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
PIN_FILE = "/etc/apt/preferences.d/gpubox-nvidia.pref"


@deploy("NVIDIA driver")
def nvidia_driver(spec: NodeSpec):
    """Install the spec's exact driver from its source, hold it, blacklist nouveau.

    Example::

        nvidia_driver(spec)   # spec.software.driver_version = "550.163.01", source "debian"
    """
    plat = platform(spec)
    sources_changed = _apt_sources(spec, plat)
    pins = {**plat.driver_globs, **plat.driver, **plat.cuda, **plat.nccl, **plat.samples_package}
    pin = files.template(
        name="apt pins for the NVIDIA stack",
        src=str(TEMPLATES / "nvidia-apt-pin.pref.j2"),
        dest=PIN_FILE,
        packages=pins,
        source=spec.software.source,
    )
    apt.update(
        name="apt update (sources or pins changed)",
        _if=lambda: sources_changed() or pin.did_change(),
    )
    blacklist = files.template(
        name="blacklist nouveau",
        src=str(TEMPLATES / "blacklist-nouveau.conf.j2"),
        dest="/etc/modprobe.d/gpubox-blacklist-nouveau.conf",
    )
    if host.get_fact(Which, command="update-initramfs"):
        server.shell(
            name="rebuild the initramfs without nouveau",
            commands=["update-initramfs -u"],
            _if=blacklist.did_change,
        )
    if spec.software.build_kernel_modules:
        apt_pinned(
            name="kernel headers (DKMS builds the modules)",
            packages=plat.kernel_headers,
            hold=False,
        )
    driver = apt_pinned(
        name=f"driver {spec.software.driver_version}",
        packages=plat.driver,
        # NVIDIA's repository versions every part of a driver build with the driver (Debian's
        # own archive does not: its nvidia-modprobe/-settings have their own versions, and its
        # parts depend on each other with "="): there, move every installed part to the pinned
        # build too, downwards included.
        align=plat.driver_globs if spec.software.source == "cuda-repo" else None,
    )
    systemd.service(
        name="enable nvidia-persistenced",
        service="nvidia-persistenced.service",
        enabled=True,
        running=None,  # starts at boot; in a node without a loaded driver it cannot run yet
    )
    python.call(
        name="say that a reboot is needed",
        function=lambda: logger.warning(
            f"{host.name}: the NVIDIA driver changed: reboot the node to load it"
            + ("" if spec.software.reboot else " (software.reboot is off, so gpubox will not)")
        ),
        _if=driver.did_change,
    )
    if spec.software.reboot:
        server.reboot(
            name="reboot to load the new driver", reboot_timeout=600, _if=driver.did_change
        )
    return driver


def _apt_sources(spec: NodeSpec, plat):
    """Make the packages reachable; returns a callable telling whether sources changed."""
    if spec.software.source == "debian":
        configured = host.get_fact(
            Command,
            command="grep -rhsE '^[^#]*non-free( |$)|^Components:.*non-free( |$)' "
            "/etc/apt/sources.list /etc/apt/sources.list.d/ | head -1 || true",
        )
        if configured:
            return lambda: False
        op = files.template(
            name="Debian contrib/non-free sources",
            src=str(TEMPLATES / "debian-nonfree.sources.j2"),
            dest="/etc/apt/sources.list.d/gpubox-debian-nonfree.sources",
            mirror="http://deb.debian.org/debian",
            suite="trixie",
        )
        return op.did_change
    # The repository must answer before anything of it is installed: a mirror that is down or a
    # wrong URL stops here, naming both, with nothing added to apt's sources.
    repository_reachable(
        name="CUDA repository reachable",
        url=plat.repo_url,
        sources_list=plat.sources_list,
    )
    download = verified_download(
        name="NVIDIA CUDA repository keyring (sha256-verified)",
        url=plat.keyring_url,
        dest=plat.keyring_deb,
        sha256=plat.keyring_sha256,
    )
    install = apt.deb(name="install cuda-keyring", src=plat.keyring_deb)
    # cuda-keyring's own entry names NVIDIA's URL; the spec's (a mirror, an apt cache, a local
    # copy) replaces it. For NVIDIA's URL it is the same text, so nothing changes. dpkg keeps this
    # edit of its conffile on a keyring upgrade (the install runs with --force-confold).
    sources = files.put(
        name=f"CUDA repository in apt's sources ({plat.repo_url})",
        src=StringIO(plat.sources_line),
        dest=plat.sources_list,
        mode="644",
    )
    return lambda: download.did_change() or install.did_change() or sources.did_change()
