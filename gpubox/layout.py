"""Where gpubox puts things on a node: read by the deploy tasks, the checks and the commands.

A plain module (no pytest, no pyinfra), so the deploy tasks and the node-side commands share these
names without importing the pytest plugin.
"""

NODE_SPEC = "/etc/gpubox/spec.json"  # the validated spec the deploy writes (tasks/node_spec.py)
CLOCK_UNIT = "gpubox-clocks.service"  # locks the clocks at every boot (tasks/clock_lock.py)
ACCEPTANCE_UNIT = "gpubox-acceptance.service"  # the boot-time checks (tasks/acceptance.py)
VENV_GPUBOX = "{install_dir}/venv/bin/gpubox"  # gpubox in its own venv (tasks/gpubox_venv.py)


def venv_gpubox(install_dir: str) -> str:
    """The node's ``gpubox`` program for ``software.install_dir``."""
    return VENV_GPUBOX.format(install_dir=install_dir)
