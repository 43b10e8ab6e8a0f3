"""Provision a GPU node from its spec: ``pyinfra inventories/home.py deploy.py``.

The inventory already validated every host's data while it loaded (before connecting); this file
validates once more, because ``--data`` and group data can still change a host's data, and then
composes one ``@deploy`` task per job from ``tasks/``, each idempotent.
"""

import sys
from pathlib import Path

from pyinfra import host

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so `tasks` imports from any cwd

from gpubox.inventory import host_spec  # noqa: E402
from tasks.acceptance import acceptance  # noqa: E402
from tasks.bandwidth_tools import bandwidth_tools  # noqa: E402
from tasks.clock_lock import clock_lock  # noqa: E402
from tasks.cuda import cuda_and_nccl  # noqa: E402
from tasks.driver import nvidia_driver  # noqa: E402
from tasks.gpu_burn import gpu_burn  # noqa: E402
from tasks.gpubox_venv import gpubox_venv  # noqa: E402
from tasks.manifest import install_manifest  # noqa: E402
from tasks.nccl_tests import nccl_tests  # noqa: E402
from tasks.node_spec import node_spec  # noqa: E402
from tasks.pcie_tuning import pcie_tuning  # noqa: E402
from tasks.slurm import slurm_health  # noqa: E402

spec = host_spec(host)

driver = nvidia_driver(spec)
cuda_and_nccl(spec)
nccl_tests(spec)
bandwidth_tools(spec)
gpu_burn(spec)
# The spec lands on the node only after every download verified and every build succeeded, so a
# deploy stopped by a bad checksum leaves the node's recorded spec as it was.
node_spec(spec)
gpubox_venv(spec)
pcie_tuning(spec)
clock_lock(spec, driver_changed=driver.did_change)
acceptance(spec)
slurm_health(spec)
install_manifest(spec)
