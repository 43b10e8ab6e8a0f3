"""The boot-time acceptance unit: the quick checks after every boot, one record per boot."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server, systemd

from gpubox.commands.accept_cmd import BANDWIDTH_TIMEOUT_S, QUICK_TIMEOUT_S
from gpubox.layout import ACCEPTANCE_UNIT, NODE_SPEC
from gpubox.spec import NodeSpec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
UNIT = ACCEPTANCE_UNIT


def writable_paths(spec: NodeSpec) -> list[str]:
    """What the acceptance run writes (``ReadWritePaths=``; all else is read-only to it): the
    records' parent (the records and the outbox beside them), the bench logs when the bandwidth
    tier runs at boot, the metrics folder when it is on."""
    acc = spec.acceptance
    paths = [str(PurePosixPath(acc.runs_dir).parent)]
    if acc.bandwidth:
        paths.append(spec.bench.log_dir)
    if acc.metrics_dir:
        paths.append(acc.metrics_dir)
    return paths


@deploy("boot-time acceptance")
def acceptance(spec: NodeSpec):
    """Install and enable ``gpubox-acceptance.service`` (or remove it when
    ``acceptance.enabled`` is false). Not started here: it runs at each boot, after the clock
    lock; ``gpubox accept`` runs the same thing by hand.

    Example::

        acceptance(spec)   # acceptance: {bandwidth: false, keep_boots: 50}
    """
    acc = spec.acceptance
    path = f"/etc/systemd/system/{UNIT}"
    if not acc.enabled:
        server.shell(
            name=f"disable {UNIT}",
            commands=[f"systemctl disable --now {UNIT}"],  # --now: forget this boot's run too
            _if=lambda: bool(host.get_fact(File, path=path)),
        )
        removed = files.file(name=f"no {UNIT}", path=path, present=False)
        systemd.daemon_reload(name="systemd daemon-reload", _if=removed.did_change)
        return
    files.directory(name=f"boot records folder {acc.runs_dir}", path=acc.runs_dir, mode="755")
    # The run is stopped (and its record still written) at the accept command's own timeout;
    # systemd's comes a little later, as the last resort.
    timeout = (BANDWIDTH_TIMEOUT_S if acc.bandwidth else QUICK_TIMEOUT_S) + 120
    unit = files.template(
        name=f"{UNIT} ({'quick + bandwidth' if acc.bandwidth else 'quick'})",
        src=str(TEMPLATES / "gpubox-acceptance.service.j2"),
        dest=path,
        gpubox=f"{spec.software.install_dir}/venv/bin/gpubox",
        spec_path=NODE_SPEC,
        runs_dir=acc.runs_dir,
        tiers="quick + bandwidth" if acc.bandwidth else "quick",
        timeout_s=timeout,
        read_write=writable_paths(spec),
    )
    systemd.daemon_reload(name="systemd daemon-reload", _if=unit.did_change)
    systemd.service(
        name=f"enable {UNIT} (runs at the next boot)", service=UNIT, running=None, enabled=True
    )
