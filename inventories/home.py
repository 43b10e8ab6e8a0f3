"""The first user's node: 4x NVIDIA DRIVE A100 (PG199, SXM2, 32 GB HBM2) on a Supermicro AOM-SXMV.

Every expectation below comes from the build log (../shared/seed) and the facts gathered in
../shared/reference/pg199.md; each number says where it comes from. Floors are the measured value
minus a 15 % margin (``_floor``) so normal run-to-run noise passes and a real fault does not.
Run ``gpubox calibrate`` on the healthy node to replace them with a measured baseline.

The SSH address is not known to us: set ``GPUBOX_HOME_HOST`` (and ``GPUBOX_HOME_USER``) instead
of editing this file, e.g. ``GPUBOX_HOME_HOST=192.168.1.20 pyinfra inventories/home.py deploy.py``.
"""

import os

from gpubox.inventory import hosts

_MARGIN = 0.15  # floors sit 15 % under the measured healthy value


def _floor(measured_gbps: float) -> float:
    return round(measured_gbps * (1 - _MARGIN), 2)


_pg199_node = {
    "ssh_hostname": os.environ.get("GPUBOX_HOME_HOST", "gpubox-home"),
    "ssh_user": os.environ.get("GPUBOX_HOME_USER", "root"),
    # The build log shows driver 570.124.04 / CUDA 12.8 (nvidia-smi screenshot), installed with
    # NVIDIA's .run file. For a pinned, apt-held rebuild gpubox takes the same 570.124 branch from
    # NVIDIA's CUDA apt repository, whose build is 570.124.06 (Debian 13's own packages stop at
    # 550). The OS is not in the build log: set GPUBOX_HOME_OS if it is not Ubuntu 24.04.
    "software": {
        "os": os.environ.get("GPUBOX_HOME_OS", "ubuntu-24.04"),
        "source": "cuda-repo",
        "driver_version": "570.124.06",  # cuda-drivers-570=570.124.06-0ubuntu1
        "cuda_version": "12.8.1",  # cuda-toolkit-12-8=12.8.1-1
        "nccl_version": "2.26.2",  # libnccl2=2.26.2-1+cuda12.8
        "compute_capability": "8.0",  # A100
    },
    "gpu_count": 4,
    "gpu_name": "NVIDIA DRIVE-PG199-PROD",  # NVML name (seed nvidia-smi screenshot)
    "gpu_memory_mib": 32768,  # 32 GB HBM2
    # The PCIe topology (seed): the AOM-SXMV has two PCIe switches, each with two GPUs behind it and
    # one x16 uplink cable to the host. Switch 1 (GPUs 0, 1) goes to the first x16 slot and runs its
    # uplink at Gen3 x16 (GPU0's 13.1 GB/s host copy is what Gen3 x16 carries); switch 2 (GPUs 2, 3)
    # goes to the second slot, physically x16 but electrically narrower: the CPU has only 24 lanes
    # and "bifurcation happens" (seed). Its host copies run at ~3.2 GB/s (the recorded bandwidthTest
    # of the simulated node), what Gen3 x4 carries: that uplink is stated at x4 below, so it passes,
    # and any further drop fails. NVML shows only the GPU-to-switch link: Gen3 x16 on all four.
    "pcie": {
        "min_gen": 3,
        "min_width": 16,
        "uplink": {"min_gen": 3, "min_width": 16},  # switch 1's; the PLX switches are Gen3
    },
    "gpus": [
        {"bus_id": "04:00.0"},  # switch 1, first x16 slot
        {"bus_id": "05:00.0"},  # switch 1
        {"bus_id": "0F:00.0", "pcie": {"uplink": {"min_width": 4}}},  # switch 2, second slot (x4)
        {"bus_id": "10:00.0", "pcie": {"uplink": {"min_width": 4}}},  # switch 2
    ],
    "p2p": {"default": "OK"},  # P2P READ/WRITE enabled between every pair (seed p2p test)
    "nvlink": "unsupported",  # fused off; the GSP reports NVLink unsupported (seed)
    "clocks": {"graphics_mhz": 1140},  # lowest supported clock: caps power at ~250 W (seed)
    "floors": {
        # bandwidthTest, GPU0, 32 MB pinned: H2D 13.1, D2H 13.5 GB/s (seed screenshot). GPUs 2/3 sit
        # behind the bifurcated slot and were not measured; 1.2 GB/s is a conservative floor below
        # their P2P-disabled copy rate through the host (2.79 GB/s both ways): calibrate to raise.
        "h2d_gbps": {"gpu0": _floor(13.1), "gpu1": _floor(13.1), "default": 1.2},
        "d2h_gbps": {"gpu0": _floor(13.5), "gpu1": _floor(13.5), "default": 1.2},
        # p2pBandwidthLatencyTest, bidirectional, P2P enabled (seed): 0<->1 12.87, 2<->3 1.98,
        # across the two switches ~4.06 GB/s.
        "p2p_gbps": {
            "gpu0-gpu1": _floor(12.87),
            "gpu2-gpu3": _floor(1.98),
            "default": _floor(4.06),
        },
        # nccl-tests all_reduce, 32 MiB float: GPUs 0,1 busbw 5.62; all four 1.21 GB/s (seed).
        "allreduce": [
            {"gpus": [0, 1], "size": "32M", "busbw_gbps": _floor(5.62)},
            {"gpus": [0, 1, 2, 3], "size": "32M", "busbw_gbps": _floor(1.21)},
        ],
    },
    "limits": {
        "gpu_temp_c": 85,  # gpu-fryer at 1140 MHz peaked at 74 C (seed)
        "hbm_temp_c": 85,  # HBM is fragile (seed): keep well under its 95 C slowdown
        "power_w": 300,  # ~250 W per card at 1140 MHz under full load; the card has no power cap
        "supply_w": 1400,  # the GPU box's own PSU (seed)
    },
    # gpu-burn, single precision, at the 1140 MHz lock. The seed has no gpu-burn figure (the burn
    # there is gpu-fryer: ~207 TFLOPS BF16 on tensor cores); A100 FP32 peak at 1140 MHz is 108 SMs
    # x 128 FLOP/clock x 1.14 GHz = 15.8 TFLOPS and SGEMM reaches ~90 % of it, so 12000 Gflop/s is
    # a conservative floor: calibrate to raise it.
    "stress": {"gflops": 12000},
}

gpu_nodes = hosts([("home", _pg199_node)])
