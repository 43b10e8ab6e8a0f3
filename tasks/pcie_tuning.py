"""Optional P2P fixes behind PCIe switches: ``iommu=pt`` and ACS off (both off by default)."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.server import Which
from pyinfra.operations import apt, files, python, server, systemd

from gpubox.spec import NodeSpec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
GRUB_DROPIN = "/etc/default/grub.d/gpubox-iommu.cfg"
ACS_SCRIPT = "/usr/local/sbin/gpubox-acs-off"
ACS_UNIT = "/etc/systemd/system/gpubox-acs-off.service"


@deploy("PCIe P2P tuning")
def pcie_tuning(spec: NodeSpec):
    """Apply (or remove) ``tuning.iommu_passthrough`` and ``tuning.disable_acs``.

    Example::

        pcie_tuning(spec)   # tuning: {iommu_passthrough: true, disable_acs: true}
    """
    tuning = spec.tuning
    grub = (
        files.template(
            name="kernel command line: iommu=pt",
            src=str(TEMPLATES / "grub-iommu.cfg.j2"),
            dest=GRUB_DROPIN,
        )
        if tuning.iommu_passthrough
        else files.file(
            name="kernel command line: no gpubox iommu setting", path=GRUB_DROPIN, present=False
        )
    )
    if host.get_fact(Which, command="update-grub"):
        server.shell(name="update-grub", commands=["update-grub"], _if=grub.did_change)
    python.call(
        name="say that a reboot is needed",
        function=lambda: logger.warning(
            f"{host.name}: kernel command line changed: reboot to apply"
        ),
        _if=grub.did_change,
    )
    if tuning.disable_acs:
        apt.packages(name="pciutils (setpci)", packages=["pciutils"])
        files.template(
            name="ACS-off script",
            src=str(TEMPLATES / "gpubox-acs-off.sh.j2"),
            dest=ACS_SCRIPT,
            mode="755",
            vendor=tuning.acs_switch_vendor,
        )
        unit = files.template(
            name="ACS-off unit",
            src=str(TEMPLATES / "gpubox-acs-off.service.j2"),
            dest=ACS_UNIT,
            script=ACS_SCRIPT,
        )
        systemd.daemon_reload(name="systemd daemon-reload", _if=unit.did_change)
        systemd.service(
            name="enable gpubox-acs-off (runs at the next boot)",
            service="gpubox-acs-off.service",
            enabled=True,
            running=None,
        )
    else:
        unit = files.file(name="no ACS-off unit", path=ACS_UNIT, present=False)
        files.file(name="no ACS-off script", path=ACS_SCRIPT, present=False)
        systemd.daemon_reload(name="systemd daemon-reload", _if=unit.did_change)
