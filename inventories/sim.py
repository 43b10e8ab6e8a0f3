"""The simulated node(s) that ``gpubox sim up`` booted: the first user's node as a Debian 13 box.

The expectations (GPUs, P2P, NVLink, clocks, floors, limits) are the home node's, read from
``home.py`` so they are stated once; only the software and the connection differ. The simulated
node runs Debian 13 with Debian's own NVIDIA packages, no kernel-module build (a container has no
kernel of its own), and its NVML is gpubox's simulated library.

Upstream nccl-tests cannot be downloaded in gpubox's test environment: ``GPUBOX_NCCL_TESTS_URL``,
``..._SHA256`` and ``..._VERSION`` point the deploy at a stand-in release (see gpubox.sim.standin);
the tests and the demo set them.
"""

import os
import runpy
from pathlib import Path

from gpubox.inventory import hosts
from gpubox.sim.target import (
    GPU_BURN_IN_TARGET,
    LIBRARY_IN_TARGET,
    REPLAY_BIN_IN_TARGET,
    inventory_hosts,
)

_home = runpy.run_path(str(Path(__file__).with_name("home.py")))["_pg199_node"]
_expectations = {k: v for k, v in _home.items() if not k.startswith("ssh_") and k != "software"}
# The simulated gpu-burn (gpubox/sim/burn_replay.py, installed by `gpubox sim up`) replays the
# scenario's burn timeline; a short burn is enough there (GPUBOX_SIM_BURN_SECONDS, default 10).
_expectations["stress"] = {
    **_expectations.get("stress", {}),
    "binary": GPU_BURN_IN_TARGET,
    "duration_s": int(os.environ.get("GPUBOX_SIM_BURN_SECONDS", "10")),
}

_software = {
    "os": "debian-13",
    "source": "debian",
    "build_kernel_modules": False,  # a container boots no kernel of its own
    "nvml_library": LIBRARY_IN_TARGET,
}
if os.environ.get("GPUBOX_NCCL_TESTS_URL"):
    _software["nccl_tests"] = {
        "url": os.environ["GPUBOX_NCCL_TESTS_URL"],
        "sha256": os.environ["GPUBOX_NCCL_TESTS_SHA256"],
        "version": os.environ.get("GPUBOX_NCCL_TESTS_VERSION", "0.0.0-standin"),
    }

# The simulated node has no GPU: its benchmark tools are the replay of the scenario's recorded
# output (gpubox/sim/replay.py, installed by `gpubox sim up`), a simulation input used nowhere else.
_bench = {"tools_dir": REPLAY_BIN_IN_TARGET, "nccl_tests_dir": REPLAY_BIN_IN_TARGET}

_running = inventory_hosts()
if not _running:
    from pyinfra.api.exceptions import PyinfraError  # one line under pyinfra's CLI

    raise PyinfraError("no simulated node is running: start one with `gpubox sim up`")

sim_nodes = hosts(
    [
        (name, {**_expectations, "software": _software, "bench": _bench, **conn})
        for name, conn in _running
    ]
)
