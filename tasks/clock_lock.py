"""The clock-lock unit: applies the spec's lock at every boot and fails loudly if it did not take."""

from __future__ import annotations

from pathlib import Path

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from gpubox.layout import CLOCK_UNIT, NODE_SPEC
from gpubox.spec import NodeSpec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@deploy("GPU clock lock at boot")
def clock_lock(spec: NodeSpec, driver_changed=lambda: False):
    """Install, enable and start ``gpubox-clocks.service`` (or remove it when no lock is set).

    It is started now unless the driver was just installed or changed (then the node needs a
    reboot, and the unit runs at that boot).

    Example::

        clock_lock(spec)   # clocks.graphics_mhz = 1140
    """
    path = f"/etc/systemd/system/{CLOCK_UNIT}"
    if spec.clocks.graphics_mhz is None:
        removed = files.file(name="no clock lock in the spec: no unit", path=path, present=False)
        systemd.daemon_reload(name="systemd daemon-reload", _if=removed.did_change)
        return
    unit = files.template(
        name=f"{CLOCK_UNIT} ({spec.clocks.graphics_mhz} MHz)",
        src=str(TEMPLATES / "gpubox-clocks.service.j2"),
        dest=path,
        graphics_mhz=spec.clocks.graphics_mhz,
        memory_mhz=spec.clocks.memory_mhz,
        gpubox=f"{spec.software.install_dir}/venv/bin/gpubox",
        spec_path=NODE_SPEC,
    )
    systemd.daemon_reload(name="systemd daemon-reload", _if=unit.did_change)
    # running=None: enabling must not start it; starting is decided below (not before a reboot).
    systemd.service(name=f"enable {CLOCK_UNIT}", service=CLOCK_UNIT, enabled=True, running=None)
    systemd.service(
        name=f"apply the lock now ({CLOCK_UNIT})",
        service=CLOCK_UNIT,
        running=True,
        restarted=True,
        _if=[unit.did_change, lambda: not driver_changed()],
    )
    systemd.service(
        name=f"start {CLOCK_UNIT} if it is not active",
        service=CLOCK_UNIT,
        running=True,
        _if=lambda: not driver_changed(),
    )
