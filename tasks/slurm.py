"""Slurm's health check: the slurm.conf lines that make slurmd run ``gpubox health``."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.layout import NODE_SPEC
from gpubox.spec import NodeSpec

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def health_program(spec: NodeSpec) -> str:
    """``slurm.program``, else ``{install_dir}/bin/gpubox-health``."""
    return spec.slurm.program or f"{spec.software.install_dir}/bin/gpubox-health"


@deploy("Slurm health check")
def slurm_health(spec: NodeSpec):
    """Write the ``gpubox-health`` program and the slurm.conf lines that run it
    (``HealthCheckProgram``, ``HealthCheckInterval``, ``HealthCheckNodeState``) into
    ``slurm.conf_file``; nothing when ``slurm.enabled`` is false. Slurm itself is the node's
    own: include the file from slurm.conf and ``scontrol reconfigure`` (or restart slurmd).

    Example::

        slurm_health(spec)   # slurm: {enabled: true, interval_s: 300, node_state: ANY}
    """
    s = spec.slurm
    if not s.enabled:
        return
    program = health_program(spec)
    files.directory(
        name=f"folder of {program}", path=str(PurePosixPath(program).parent), mode="755"
    )
    files.template(
        name=f"{program} (runs gpubox health)",
        src=str(TEMPLATES / "gpubox-health.sh.j2"),
        dest=program,
        mode="755",
        gpubox=f"{spec.software.install_dir}/venv/bin/gpubox",
        spec_path=NODE_SPEC,
        timeout_s=s.timeout_s,
    )
    files.directory(
        name=f"folder of {s.conf_file}", path=str(PurePosixPath(s.conf_file).parent), mode="755"
    )
    files.template(
        name=f"{s.conf_file} (HealthCheckInterval={s.interval_s}, {s.node_state})",
        src=str(TEMPLATES / "gpubox-slurm.conf.j2"),
        dest=s.conf_file,
        mode="644",
        program=program,
        interval_s=s.interval_s,
        node_state=s.node_state.upper(),
    )
