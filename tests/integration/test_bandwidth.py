"""The bandwidth tier against the deployed simulated node.

The node has no GPU: the sim inventory points ``bench.tools_dir``/``bench.nccl_tests_dir`` at the
benchmark replay (gpubox/sim/replay.py), which prints the scenario's recorded tool output. The
healthy scenario replays the first user's measured numbers and passes every check; each
``fault-bw-*`` scenario fails exactly its checks, across the quick and bandwidth tiers together.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from gpubox.sim import scenario, target
from gpubox.sim.testing import BIN, HEALTHY, NODE_NAME, ROOT, failed_ids, run_checks, ssh

pytestmark = pytest.mark.sim

GPUBOX = "/opt/gpubox/venv/bin/gpubox"
PAIRS = ("gpu0-gpu1", "gpu0-gpu2", "gpu0-gpu3", "gpu1-gpu2", "gpu1-gpu3", "gpu2-gpu3")
BANDWIDTH_CHECKS = 4 + 4 + 6 + 2  # h2d, d2h per GPU; P2P per pair; two all_reduce GPU sets
BOTH_TIERS = "quick or bandwidth"

# fault scenario -> (the checks it must fail, words every failed bandwidth check's message must
# contain). Switch 1's uplink at x4 also fails the quick tier's PCIe path walk (NVML reads Gen3
# x16 at the GPUs; sysfs shows the narrow uplink above them).
FAULTS = {
    "fault-bw-gpu0-x4-slot": (
        {"test_h2d[gpu0]", "test_d2h[gpu0]", "test_h2d[gpu1]", "test_d2h[gpu1]"}
        | {"test_pcie_path[gpu0]", "test_pcie_path[gpu1]"},
        "GB/s is what a Gen3 x4 link carries: the bottleneck is upstream of the GPU: the PCIe "
        "path shows switch uplink 02:00.0 at Gen3 x4",
    ),
    "fault-bw-p2p-off": ({f"test_p2p_bandwidth[{p}]" for p in PAIRS}, "'CANNOT Access Peer'"),
    "fault-bw-slow-pair": (
        {"test_p2p_bandwidth[gpu0-gpu1]"},
        "gpu0 (04:00.0) <-> gpu1 (05:00.0): bidirectional P2P 1.99 GB/s, expected at least",
    ),
    "fault-bw-wrong-data": (
        {"test_allreduce[gpu0+gpu1]", "test_allreduce[gpu0+gpu1+gpu2+gpu3]"},
        "returned wrong data (#wrong",
    ),
    "fault-bw-crashed": (
        {"test_allreduce[gpu0+gpu1+gpu2+gpu3]"},
        "printed no result at 32 MiB: exit 3: testNcclError",
    ),
}


def gpubox(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "gpubox"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def bandwidth_results(results: dict) -> list[dict]:
    return [c for c in results["checks"] if "test_bandwidth.py" in c["id"]]


def test_every_benchmark_fault_is_covered():
    assert set(FAULTS) == {n for n in scenario.names() if n.startswith("fault-bw-")}


def test_healthy_node_passes_every_bandwidth_check(node, deploy_env, tmp_path):
    rc, results = run_checks(deploy_env, results=tmp_path / "healthy.json", marker="bandwidth")
    assert rc == 0, failed_ids(results)
    assert results["counts"] == {"passed": BANDWIDTH_CHECKS}
    levels = {c["verdict"]["level"] for c in results["checks"]}
    assert levels == {"pass"}
    bench = results["hosts"][NODE_NAME]["bench"]
    assert bench["schema"] == "gpubox.bench/1" and all(r["ok"] for r in bench["runs"])
    by_id = {c["id"].split("::")[-1]: c["message"] for c in results["checks"]}
    assert by_id["test_h2d[gpu0]"].startswith(
        f"{NODE_NAME} gpu0 (04:00.0): host-to-device (32 MiB, pinned) 13.1 GB/s, floor 11.13 GB/s"
    )
    assert "bidirectional P2P 12.87 GB/s" in by_id["test_p2p_bandwidth[gpu0-gpu1]"]
    assert "busbw at 32 MiB 5.62 GB/s" in by_id["test_allreduce[gpu0+gpu1]"]
    assert "busbw at 32 MiB 1.21 GB/s" in by_id["test_allreduce[gpu0+gpu1+gpu2+gpu3]"]
    # the raw logs stay on the node
    for run in bench["runs"]:
        assert run["log"].startswith("/var/log/gpubox/bench/")
        ssh(node, f"test -s '{run['log']}'")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bandwidth_fault_fails_exactly_its_checks(node, deploy_env, tmp_path, fault):
    expected, words = FAULTS[fault]
    target.set_scenario(node.name, fault)
    try:
        rc, results = run_checks(deploy_env, results=tmp_path / f"{fault}.json", marker=BOTH_TIERS)
    finally:
        target.set_scenario(node.name, HEALTHY)
    assert rc == 1
    assert failed_ids(results) == expected
    for c in bandwidth_results(results):
        if c["outcome"] == "failed":
            assert words in c["message"] and NODE_NAME in c["message"], c["message"]
            assert "[log: /var/log/gpubox/bench/" in c["message"], c["message"]
    for c in results["checks"]:
        if c["outcome"] == "failed" and "test_pcie_path" in c["id"]:
            assert "switch uplink 02:00.0 at Gen3 x4, expected at least Gen3 x16" in c["message"]
    assert len(bandwidth_results(results)) == BANDWIDTH_CHECKS


def test_bench_run_on_the_node(node):
    out = ssh(node, f"{GPUBOX} bench run --json --quiet").stdout
    doc = json.loads(out)
    assert doc["host"] == NODE_NAME and [r["name"] for r in doc["runs"]] == [
        "bandwidthTest[gpu0]",
        "bandwidthTest[gpu1]",
        "bandwidthTest[gpu2]",
        "bandwidthTest[gpu3]",
        "p2pBandwidthLatencyTest",
        "all_reduce_perf[gpu0+gpu1]@32M",
        "all_reduce_perf[gpu0+gpu1+gpu2+gpu3]@32M",
    ]
    nccl = doc["runs"][-1]
    assert nccl["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert nccl["command"][0] == "/usr/lib/gpubox-sim/bin/all_reduce_perf"
    summary = ssh(node, f"{GPUBOX} bench run --quiet").stdout
    assert "bandwidthTest[gpu0]: ok" in summary and "busbw 5.62 GB/s, #wrong 0/0" in summary


def test_switching_scenario_changes_what_the_replay_prints(node):
    run = f"{GPUBOX} bench run --json --quiet --tools bandwidthTest"
    target.set_scenario(node.name, "fault-bw-gpu0-x4-slot")
    try:
        faulty = json.loads(ssh(node, run, check=False).stdout)
    finally:
        target.set_scenario(node.name, HEALTHY)
    healthy = json.loads(ssh(node, run).stdout)
    h2d = [r["parsed"]["results"][0]["gbps"] for r in faulty["runs"]]
    assert h2d == [3.3, 3.3, 3.2, 3.2]
    assert [r["parsed"]["results"][0]["gbps"] for r in healthy["runs"]] == [13.1, 13.1, 3.2, 3.2]


def test_calibrate_on_the_node_then_checks_report_drift(node, deploy_env, tmp_path):
    result = ssh(node, f"{GPUBOX} calibrate --runs 3 --margin 0.15")
    assert "wrote /etc/gpubox/baseline.json" in result.stdout
    try:
        doc = json.loads(ssh(node, "cat /etc/gpubox/baseline.json").stdout)
        entry = doc["hosts"][NODE_NAME]
        assert entry["runs"] == 3 and entry["margin"] == 0.15
        measured = entry["measurements"]
        assert len(measured) == BANDWIDTH_CHECKS
        assert measured["h2d[gpu0]"]["median"] == 13.1
        assert measured["h2d[gpu0]"]["floor"] == pytest.approx(13.1 * 0.85, abs=1e-3)
        assert measured["h2d[gpu0]"]["samples"] == [13.1, 13.1, 13.1]
        assert measured["allreduce[gpu0+gpu1+gpu2+gpu3]@32M"]["median"] == 1.21
        # a second calibration compares itself with the first
        again = ssh(node, f"{GPUBOX} calibrate --runs 1 --out /tmp/again.json").stdout
        assert "+0.0 % vs 13.1" in again
        _, healthy = run_checks(deploy_env, results=tmp_path / "b.json", marker="bandwidth")
        assert all("baseline median" in c["message"] for c in healthy["checks"])
        target.set_scenario(node.name, "fault-bw-gpu0-x4-slot")
        try:
            _, faulty = run_checks(deploy_env, results=tmp_path / "f.json", marker="bandwidth")
        finally:
            target.set_scenario(node.name, HEALTHY)
        by_id = {c["id"].split("::")[-1]: c["message"] for c in faulty["checks"]}
        assert "baseline median 13.1 GB/s (-74.8 %)" in by_id["test_h2d[gpu0]"]
    finally:
        ssh(node, "rm -f /etc/gpubox/baseline.json /tmp/again.json")


def test_calibrate_from_the_controller_over_ssh(node, deploy_env, tmp_path):
    out = tmp_path / "baseline.json"
    result = gpubox(
        deploy_env,
        "calibrate",
        "--inventory",
        "inventories/sim.py",
        "--runs",
        "2",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    doc = json.loads(out.read_text())
    assert set(doc["hosts"]) == {NODE_NAME}
    assert len(doc["hosts"][NODE_NAME]["measurements"]) == BANDWIDTH_CHECKS
    assert f"run 2/2 on {NODE_NAME}" in result.stderr
