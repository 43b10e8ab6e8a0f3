"""The simulated node(s) that ``gpubox sim up`` booted: the first user's node, as each OS deploys it.

The expectations (GPUs, P2P, NVLink, clocks, floors, limits) are the home node's, read from
``home.py`` so they are stated once; only the software and the connection differ:

* a Debian 13 node (``gpubox sim up``) installs Debian's own NVIDIA packages (source ``debian``);
* a Debian 12 node (``gpubox sim up --os debian-12``) runs home.py's own install path, source
  ``cuda-repo``, with home.py's versions (driver 570.124.06, CUDA 12.8.1, NCCL 2.26.2): only the
  addresses may differ.

Neither builds kernel modules (a container has no kernel of its own), their NVML is gpubox's
simulated library, and the PCIe path walk reads the scenario's tree (``software.sysfs_root``).

Upstream downloads cannot be reached in gpubox's test environment, so two variables point the
deploy at stand-ins (see gpubox.sim.standin and gpubox.sim.cuda_repo); the tests and the demo
set them:

* ``GPUBOX_NCCL_TESTS_URL``, ``..._SHA256`` and ``..._VERSION``: a stand-in nccl-tests release;
* ``GPUBOX_CUDA_REPO_SPEC``: a JSON object merged into the Debian 12 nodes' ``software``, e.g.
  the stand-in CUDA repository's ``cuda_repo`` (URL and keyring sha256), ``cuda_samples`` and
  ``gpu_burn`` (:meth:`gpubox.sim.cuda_repo.Server.env`). Unset, they use NVIDIA's repository.

``GPUBOX_SIM_SLURM``, a JSON object, is every node's ``slurm`` (the Slurm test turns the health
check on with it). ``GPUBOX_SIM_MPI=1`` sets every node's ``software.mpi`` (the multi-node test:
the deploy installs Open MPI and builds nccl-tests with ``MPI=1``).
"""

import json
import os
import runpy
from pathlib import Path

from gpubox.inventory import hosts
from gpubox.sim.target import (
    GPU_BURN_IN_TARGET,
    LIBRARY_IN_TARGET,
    REPLAY_BIN_IN_TARGET,
    SYSFS_IN_TARGET,
    list_targets,
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

_simulated = {
    "build_kernel_modules": False,  # a container boots no kernel of its own
    "nvml_library": LIBRARY_IN_TARGET,
    "sysfs_root": SYSFS_IN_TARGET,  # the scenario's PCIe tree (the container's /sys is the host's)
}
_software = {
    "debian-13": {"os": "debian-13", "source": "debian", **_simulated},
    "debian-12": {
        "os": "debian-12",
        "source": "cuda-repo",
        # home.py's own pins, unchanged
        **{
            k: _home["software"][k]
            for k in ("driver_version", "cuda_version", "nccl_version", "compute_capability")
        },
        **_simulated,
    },
}
if os.environ.get("GPUBOX_NCCL_TESTS_URL"):
    for _sw in _software.values():
        _sw["nccl_tests"] = {
            "url": os.environ["GPUBOX_NCCL_TESTS_URL"],
            "sha256": os.environ["GPUBOX_NCCL_TESTS_SHA256"],
            "version": os.environ.get("GPUBOX_NCCL_TESTS_VERSION", "0.0.0-standin"),
        }
if os.environ.get("GPUBOX_SIM_MPI") == "1":
    for _sw in _software.values():
        _sw["mpi"] = True
if os.environ.get("GPUBOX_CUDA_REPO_SPEC"):
    _software["debian-12"].update(json.loads(os.environ["GPUBOX_CUDA_REPO_SPEC"]))

# The simulated node has no GPU: its benchmark tools are the replay of the scenario's recorded
# output (gpubox/sim/replay.py, installed by `gpubox sim up`), a simulation input used nowhere else.
_bench = {"tools_dir": REPLAY_BIN_IN_TARGET, "nccl_tests_dir": REPLAY_BIN_IN_TARGET}

_running = [t for t in list_targets() if t.running]
if not _running:
    from pyinfra.api.exceptions import PyinfraError  # one line under pyinfra's CLI

    raise PyinfraError("no simulated node is running: start one with `gpubox sim up`")

_slurm = json.loads(os.environ["GPUBOX_SIM_SLURM"]) if os.environ.get("GPUBOX_SIM_SLURM") else {}

sim_nodes = hosts(
    [
        (
            t.name,
            {
                **_expectations,
                "software": _software[t.os],
                "bench": _bench,
                **({"slurm": _slurm} if _slurm else {}),
                **t.host_data,
            },
        )
        for t in _running
    ]
)
