"""The bandwidth tier: ``pytest checks/ -m bandwidth`` (minutes on hardware).

The node runs the tier's benchmarks once per session (``gpubox bench run --json``: bandwidthTest
per GPU, p2pBandwidthLatencyTest over all GPUs, nccl-tests per GPU set of ``floors.allreduce``);
each test judges one figure against its floor (:mod:`gpubox.floors`, :mod:`gpubox.judge_bandwidth`):
pass at >= 1.05 x floor, warn (passes with a warning) just above it, fail below. Messages show
measured vs floor, the floor's source, the usual causes of a shortfall, the drift from the
calibrated baseline (``gpubox calibrate``) and the raw log.
"""

import pytest

from gpubox import judge_bandwidth
from gpubox.checks import check

pytestmark = pytest.mark.bandwidth


def test_h2d(request, node, gpu, snapshot, bench, baseline):
    """Host-to-device copy (bandwidthTest, pinned memory) of one GPU."""
    check(request, judge_bandwidth.h2d(node.spec, snapshot, bench, gpu, baseline))


def test_d2h(request, node, gpu, snapshot, bench, baseline):
    """Device-to-host copy of one GPU."""
    check(request, judge_bandwidth.d2h(node.spec, snapshot, bench, gpu, baseline))


def test_p2p_bandwidth(request, node, pair, snapshot, bench, baseline):
    """Bidirectional P2P bandwidth of one pair, with CUDA peer access really in use."""
    check(request, judge_bandwidth.p2p_bandwidth(node.spec, snapshot, bench, *pair, baseline))


def test_allreduce(request, node, allreduce, bench, baseline):
    """nccl-tests all_reduce busbw of one GPU set at one size, data check clean (#wrong 0)."""
    check(request, judge_bandwidth.allreduce(node.spec, bench, allreduce, baseline))


def test_multinode(request, node, multinode, bench, baseline):
    """nccl-tests across several nodes under mpirun (``floors.multinode``): every rank on its
    host and GPU, none failed, data clean, busbw at the floor."""
    check(request, judge_bandwidth.multinode(node.spec, bench, multinode, baseline))
