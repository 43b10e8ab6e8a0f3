"""Judging the bandwidth tier: the recorded outputs of every scenario, replayed through the real
wrapper and parsers, against inventories/home.py's floors. Every check has a case where it fails."""

from __future__ import annotations

import copy

import pytest

from gpubox import judge_bandwidth as jb
from gpubox.baseline import Baseline, build
from gpubox.spec import NodeSpec

HEALTHY = "pg199-quad-debian13"
PAIRS = ("gpu0-gpu1", "gpu0-gpu2", "gpu0-gpu3", "gpu1-gpu2", "gpu1-gpu3", "gpu2-gpu3")
# The unit-level fault table: scenario -> the verdicts (check[subject]) that must fail.
FAULTS = {
    "fault-bw-gpu0-x4-slot": {"h2d[gpu0]", "d2h[gpu0]", "h2d[gpu1]", "d2h[gpu1]"},
    "fault-bw-p2p-off": {f"p2p_bandwidth[{p}]" for p in PAIRS},
    "fault-bw-slow-pair": {"p2p_bandwidth[gpu0-gpu1]"},
    "fault-bw-wrong-data": {"allreduce[gpu0+gpu1]", "allreduce[gpu0+gpu1+gpu2+gpu3]"},
    "fault-bw-crashed": {"allreduce[gpu0+gpu1+gpu2+gpu3]"},
}


def ids(verdicts, level="fail"):
    return {f"{v.check}[{v.subject}]" for v in verdicts if v.level == level}


def test_healthy_node_passes_every_bandwidth_verdict(spec, snap, bench_doc):
    verdicts = jb.bandwidth(spec, snap(), bench_doc(HEALTHY))
    assert len(verdicts) == 16
    assert {v.level for v in verdicts} == {"pass"}, [
        v.message for v in verdicts if v.level != "pass"
    ]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_exactly_its_verdicts(spec, snap, bench_doc, fault):
    verdicts = jb.bandwidth(spec, snap(), bench_doc(fault))
    assert ids(verdicts) == FAULTS[fault]
    assert ids(verdicts, "pass") | ids(verdicts) == {f"{v.check}[{v.subject}]" for v in verdicts}


def test_host_copy_message_names_the_gpu_the_floor_and_the_upstream_link(spec, snap, bench_doc):
    v = jb.h2d(spec, snap(), bench_doc("fault-bw-gpu0-x4-slot"), 0)
    assert v.message.startswith(
        "home gpu0 (04:00.0): host-to-device (32 MiB, pinned) 3.3 GB/s, expected at least 11.13 "
        "GB/s (spec floors.h2d_gbps.gpu0): 70 % below the floor: NVML reads Gen3 x16 for this "
        "GPU, yet 3.3 GB/s is what a Gen3 x4 link carries"
    )
    assert "[log: " in v.message and v.message.endswith("bandwidthTest-gpu0.log]")
    assert v.expected["floor_gbps"] == 11.13 and v.found["gbps"] == 3.3


def test_host_copy_blames_the_gpus_own_link_when_nvml_shows_it_degraded(spec, snap, bench_doc):
    v = jb.d2h(spec, snap(widths={0: 4}), bench_doc("fault-bw-gpu0-x4-slot"), 0)
    assert v.level == "fail"
    assert "NVML shows the GPU's own link trained at Gen3 x4 (capable of Gen3 x16)" in v.message


def test_a_figure_just_above_the_floor_warns(make_spec, snap, bench_doc):
    spec = make_spec(floors={"h2d_gbps": 12.8, "d2h_gbps": 1.0, "p2p_gbps": 1.0})
    v = jb.h2d(spec, snap(), bench_doc(HEALTHY), 0)
    assert v.level == "warn" and v.ok
    assert "13.1 GB/s, within 5 % above the floor 12.8 GB/s" in v.message


def test_link_derived_floor_when_the_spec_gives_none(make_spec, snap, bench_doc):
    data_spec = make_spec(floors={"allreduce": []})
    v = jb.h2d(data_spec, snap(), bench_doc(HEALTHY), 0)
    assert v.level == "pass"
    assert "floor 11.82 GB/s (Gen3 x16 link: 15.76 GB/s x link_factor 0.75)" in v.message
    # gpu2 sits behind the bifurcated slot: NVML cannot see it, a link floor fails it
    slow = jb.h2d(data_spec, snap(), bench_doc(HEALTHY), 2)
    assert slow.level == "fail" and "Gen3 x4 link carries" in slow.message


def test_p2p_without_peer_access_fails_and_points_at_acs_or_iommu(spec, snap, bench_doc):
    v = jb.p2p_bandwidth(spec, snap(), bench_doc("fault-bw-p2p-off"), 2, 3)
    assert v.level == "fail"
    assert "'CANNOT Access Peer'" in v.message and "NVML reports P2P READ OK, WRITE OK" in v.message
    assert "tuning.disable_acs" in v.message
    # NVML agrees P2P is off: the quick tier's test_p2p says why
    v = jb.p2p_bandwidth(spec, snap(p2p="CNS"), bench_doc("fault-bw-p2p-off"), 2, 3)
    assert "NVML reports P2P READ CNS, WRITE CNS: see test_p2p[gpu2-gpu3]" in v.message


def test_slow_pair_message(spec, snap, bench_doc):
    v = jb.p2p_bandwidth(spec, snap(), bench_doc("fault-bw-slow-pair"), 1, 0)
    assert v.subject == "gpu0-gpu1"
    assert (
        "home gpu0 (04:00.0) <-> gpu1 (05:00.0): bidirectional P2P 1.99 GB/s, expected at least "
        "10.94 GB/s (spec floors.p2p_gbps.gpu0-gpu1): 82 % below the floor" in v.message
    )


def test_wrong_data_fails_even_with_a_good_busbw(spec, bench_doc):
    floor = spec.floors.allreduce[0]
    v = jb.allreduce(spec, bench_doc("fault-bw-wrong-data"), floor)
    assert v.level == "fail"
    assert "returned wrong data (#wrong 4096 out-of-place, 4096 in-place; expected 0)" in v.message
    assert "(exit 6: testNumResults)" in v.message and "busbw 5.62 GB/s" in v.message


def test_crashed_run_fails_with_the_tools_own_words(spec, bench_doc):
    floor = spec.floors.allreduce[1]
    v = jb.allreduce(spec, bench_doc("fault-bw-crashed"), floor)
    assert v.level == "fail" and v.subject == "gpu0+gpu1+gpu2+gpu3"
    assert "printed no result at 32 MiB: exit 3: testNcclError" in v.message
    assert "Test NCCL failure common.cu:1279 'unhandled system error" in v.message


def test_allreduce_below_its_floor(make_spec, bench_doc):
    spec = make_spec(floors={"allreduce": [{"gpus": [0, 1], "size": "32M", "busbw_gbps": 9}]})
    v = jb.allreduce(spec, bench_doc(HEALTHY), spec.floors.allreduce[0])
    assert v.level == "fail"
    assert "all_reduce_perf busbw at 32 MiB 5.62 GB/s, expected at least 9 GB/s" in v.message
    assert "the slowest link in the ring sets the pace" in v.message


def test_a_run_missing_from_the_results_fails(spec, snap, bench_doc):
    doc = copy.deepcopy(bench_doc(HEALTHY))
    doc["runs"] = [r for r in doc["runs"] if r["tool"] != "nccl-tests"]
    v = jb.allreduce(spec, doc, spec.floors.allreduce[0])
    assert v.level == "fail" and "no all_reduce_perf at 32 MiB run" in v.message


def test_a_failed_tool_run_fails_its_checks(spec, snap, bench_doc):
    doc = copy.deepcopy(bench_doc(HEALTHY))
    run = next(r for r in doc["runs"] if r["name"] == "bandwidthTest[gpu3]")
    run.update(parsed=None, exit_code=None, errors=["/opt/gpubox/bin/bandwidthTest not found"])
    v = jb.d2h(spec, snap(), doc, 3)
    assert v.level == "fail"
    assert "device-to-host copy: no figure: bandwidthTest failed: /opt/gpubox/bin/" in v.message


def test_lost_gpu_skips_its_bandwidth_checks(spec, snap, bench_doc):
    lost = snap(lost=(1,))
    assert jb.h2d(spec, lost, bench_doc(HEALTHY), 1).level == "skip"
    assert jb.p2p_bandwidth(spec, lost, bench_doc(HEALTHY), 0, 1).level == "skip"
    assert jb.h2d(spec, lost, bench_doc(HEALTHY), 0).level == "pass"


def test_messages_report_drift_from_the_baseline(spec, snap, bench_doc):
    doc = build({"h2d[gpu0]": [13.1], "allreduce[gpu0+gpu1]@32M": [5.5]}, 0.15, 1, "home")
    baseline = Baseline.from_document(doc, "home", "/etc/gpubox/baseline.json")
    v = jb.h2d(spec, snap(), bench_doc("fault-bw-gpu0-x4-slot"), 0, baseline)
    assert "; baseline median 13.1 GB/s (-74.8 %)" in v.message
    v = jb.allreduce(spec, bench_doc(HEALTHY), spec.floors.allreduce[0], baseline)
    assert v.message.endswith("; baseline median 5.5 GB/s (+2.2 %)")
    # no entry: no drift
    assert "baseline" not in jb.h2d(spec, snap(), bench_doc(HEALTHY), 1, baseline).message


def test_baseline_floor_fails_a_node_the_spec_would_pass(make_spec, snap, bench_doc):
    spec = make_spec(floors={"allreduce": []})
    no_floors = NodeSpec.from_data({**spec.to_data(), "floors": {}}, host="home")
    doc = build({"h2d[gpu2]": [13.0]}, 0.1, 1, "home")  # calibrated when gpu2 was fast
    baseline = Baseline.from_document(doc, "home", "b.json")
    v = jb.h2d(no_floors, snap(), bench_doc(HEALTHY), 2, baseline)
    assert v.level == "fail" and "(baseline b.json (median 13 GB/s - 10%))" in v.message


def test_host_copy_names_the_narrow_hop_the_pcie_path_shows(spec, snap, bench_doc, tmp_path):
    import copy

    from gpubox import pcie_path
    from gpubox.sim import scenario, sysfs

    root = sysfs.render(scenario.load("fault-bw-gpu0-x4-slot"), tmp_path / "sys")
    snapshot = copy.deepcopy(snap())
    for gpu in snapshot["gpus"]:
        gpu["pcie_path"] = pcie_path.walk(gpu["bus_id"], str(root))
    v = jb.h2d(spec, snapshot, bench_doc("fault-bw-gpu0-x4-slot"), 1)
    assert v.level == "fail"
    assert (
        "NVML reads Gen3 x16 for this GPU, yet 3.3 GB/s is what a Gen3 x4 link carries: the "
        "bottleneck is upstream of the GPU: the PCIe path shows switch uplink 02:00.0 at Gen3 x4 "
        "(reseat the uplink cable"
    ) in v.message
