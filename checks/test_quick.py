"""The quick tier, run after every boot in about a second: ``pytest checks/ -m quick``.

Each test compares one thing the node spec expects with the node's NVML snapshot; the judging
lives in :mod:`gpubox.judge`, so every message names the host, the GPU, expected and found.
"""

import pytest

from gpubox import judge, judge_pcie
from gpubox.checks import CLOCK_UNIT, PACKAGE_QUERY, check

pytestmark = pytest.mark.quick


def test_gpu_count(request, node, snapshot):
    check(request, judge.gpu_count(node.spec, snapshot))


def test_driver_version(request, node, snapshot):
    check(request, judge.driver_version(node.spec, snapshot))


def test_gpu_present(request, node, gpu, snapshot):
    check(request, judge.gpu_present(node.spec, snapshot, gpu))


def test_p2p(request, node, pair, snapshot):
    check(request, judge.p2p(node.spec, snapshot, *pair))


def test_nvlink(request, node, gpu, snapshot):
    check(request, judge.nvlink(node.spec, snapshot, gpu))


def test_clock_unit(request, node):
    # systemctl's own words ("enabled", "not-found", "failed"...) go into the message.
    enabled = node.run(f"systemctl is-enabled {CLOCK_UNIT}").stdout.strip() or "unknown"
    active = node.run(f"systemctl is-active {CLOCK_UNIT}").stdout.strip() or "unknown"
    status = f"is-enabled: {enabled}, is-active: {active}"
    check(request, judge.clock_unit(node.spec, enabled == "enabled", active == "active", status))


def test_clock_locked(request, node, gpu, snapshot):
    check(request, judge.clock_locked(node.spec, snapshot, gpu))


def test_pcie(request, node, gpu, snapshot):
    check(request, judge.pcie(node.spec, snapshot, gpu))


def test_pcie_path(request, node, gpu, snapshot):
    """Every link above the GPU's own up to its root port (a switch's uplink), from sysfs."""
    check(request, judge_pcie.path(node.spec, snapshot, gpu))


def test_pcie_errors(request, node, gpu, snapshot):
    """PCIe replays (NVML) and AER errors on every hop of the GPU's path since boot."""
    check(request, judge_pcie.errors(node.spec, snapshot, gpu))


def test_acs(request, node, gpu, snapshot):
    """ACS redirect off on the switch ports of a GPU expected to do P2P."""
    check(request, judge_pcie.acs(node.spec, snapshot, gpu))


def test_temperature(request, node, gpu, snapshot):
    check(request, judge.temperature(node.spec, snapshot, gpu))


def test_persistence(request, node, gpu, snapshot):
    check(request, judge.persistence(node.spec, snapshot, gpu))


def test_remapped_rows(request, node, gpu, snapshot):
    check(request, judge.remapped_rows(node.spec, snapshot, gpu))


def test_xid(request, node, gpu, snapshot):
    check(request, judge.xid(node.spec, snapshot, gpu))


def test_manifest(request, node):
    """The reproducible-rebuild guarantee: the node is exactly what its spec pins."""
    import json

    from gpubox.manifest import MANIFEST

    text = node.read_file(MANIFEST)
    doc = json.loads(text) if text is not None else None
    names = sorted((doc or {}).get("packages", {}))
    live = {}
    if names:
        out = node.run(PACKAGE_QUERY + " ".join(names))
        live = dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)
    check(request, judge.manifest(node.spec, doc, live))
