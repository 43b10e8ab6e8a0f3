"""The PCIe path checks (gpubox.judge_pcie) on real snapshots: ``gpubox probe`` against the
simulated NVML library and the scenario's sysfs tree, judged with the first user's spec
(inventories/home.py). Every fault fails exactly its checks, the healthy node none; without the
files (a VM) the checks skip and say why."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gpubox import judge, judge_pcie
from gpubox.sim import scenario
from gpubox.spec import NodeSpec

PCIE_CHECKS = ("pcie_path", "pcie_errors", "acs")

# scenario -> {failing check: words its message must hold}
FAULTS = {
    "fault-pcie-uplink-x8": {
        f"pcie_path[{g}]": "switch uplink 02:00.0 at Gen3 x8, expected at least Gen3 x16 (pcie.uplink)"
        for g in ("gpu0", "gpu1")
    },
    "fault-pcie-uplink-gen1": {
        f"pcie_path[{g}]": "switch uplink 02:00.0 at Gen1 x16, expected at least Gen3 x16 (pcie.uplink)"
        for g in ("gpu0", "gpu1")
    },
    "fault-bw-gpu0-x4-slot": {
        f"pcie_path[{g}]": "switch uplink 02:00.0 at Gen3 x4, expected at least Gen3 x16"
        for g in ("gpu0", "gpu1")
    },
    "fault-pcie-aer-correctable": {
        "pcie_errors[gpu1]": "the GPU 05:00.0: 508 correctable AER errors (BadDLLP 96, BadTLP 412), "
        "at most 100 (pcie.max_correctable); switch downstream port 03:10.0: 230 correctable"
    },
    "fault-pcie-aer-fatal": {
        "pcie_errors[gpu3]": "switch downstream port 0e:10.0: 1 fatal AER error(s) (SDES 1), expected none"
    },
    "fault-pcie-replays": {
        "pcie_errors[gpu1]": "1200 PCIe replays since boot (NVML), at most 100 (pcie.max_replays)"
    },
    "fault-pcie-acs-on": {
        "acs[gpu2]": "ACS on at switch downstream port 0e:08.0 (ReqRedir, CmpltRedir), expected off: "
        "P2P with gpu0, gpu1, gpu3 is expected OK",
        "acs[gpu3]": "ACS on at switch downstream port 0e:10.0 (ReqRedir, CmpltRedir)",
    },
}  # fmt: skip


def failures(spec: NodeSpec, snapshot: dict) -> dict[str, str]:
    return {
        f"{v.check}[{v.subject}]": v.message
        for v in judge.quick(spec, snapshot)
        if v.level == judge.FAIL
    }


def test_the_healthy_node_passes_every_pcie_check(spec, snap):
    verdicts = [v for v in judge.quick(spec, snap("pg199-quad-debian13")) if v.check in PCIE_CHECKS]
    assert len(verdicts) == 12 and {v.level for v in verdicts} == {judge.PASS}, [
        v.message for v in verdicts if v.level != judge.PASS
    ]
    path = {v.subject: v.message for v in verdicts if v.check == "pcie_path"}
    assert path["gpu2"] == (
        "node0 gpu2 (0f:00.0): path to root port 00:01.2: switch uplink 0d:00.0 Gen3 x4 "
        "(floor Gen3 x4, gpus[2].pcie.uplink)"
    )
    assert "switch uplink 02:00.0 Gen3 x16 (floor Gen3 x16, pcie.uplink)" in path["gpu0"]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_pcie_fault_fails_exactly_its_checks(spec, snap, fault):
    got = failures(spec, snap(fault))
    assert set(got) == set(FAULTS[fault])
    for check, words in FAULTS[fault].items():
        assert words in got[check] and got[check].startswith("node0 gpu"), got[check]


@pytest.mark.parametrize(
    "fault",
    sorted(
        n
        for n in scenario.names()
        if n.startswith("fault-") and n not in FAULTS and not n.startswith("fault-pcie-")
    ),
)
def test_other_faults_fail_no_pcie_check(spec, snap, fault):
    assert not [c for c in failures(spec, snap(fault)) if c.split("[")[0] in PCIE_CHECKS]


def test_a_further_drop_of_the_narrow_uplink_fails(spec, snap, tmp_path):
    """GPUs 2/3 legitimately sit behind an x4 uplink (the spec says so); x2 fails."""
    fault = tmp_path / "uplink-b-x2.json"
    fault.write_text(
        json.dumps(
            {
                "extends": "pg199-quad-debian13",
                "description": "switch 2's uplink at x2",
                "set": {"pcie_tree.sw-b-up.width": 2},
            }
        )
    )
    got = failures(spec, snap(fault))
    assert set(got) == {"pcie_path[gpu2]", "pcie_path[gpu3]"}
    assert (
        "node0 gpu2 (0f:00.0): switch uplink 0d:00.0 at Gen3 x2, expected at least Gen3 x4 "
        "(gpus[2].pcie.uplink): the link lost lanes: reseat or replace the uplink cable"
    ) in got["pcie_path[gpu2]"]


def test_without_a_floor_a_link_below_its_capability_warns(spec, snap):
    bare = dataclasses.replace(
        spec,
        pcie=dataclasses.replace(spec.pcie, uplink=type(spec.pcie.uplink)()),
        gpus=tuple(dataclasses.replace(g, pcie=None) for g in spec.gpus),
    )
    verdicts = {
        v.subject: v
        for v in judge.quick(bare, snap("fault-pcie-uplink-x8"))
        if v.check == "pcie_path"
    }
    assert verdicts["gpu0"].level == judge.WARN
    assert (
        "switch uplink 02:00.0 at x8 although both its ends can do x16" in verdicts["gpu0"].message
    )
    # GPUs 2/3: x4 is all the root port can do, so nothing warns there.
    assert verdicts["gpu2"].level == judge.PASS


def test_thresholds_are_the_specs(spec, snap):
    lenient = dataclasses.replace(spec, pcie=dataclasses.replace(spec.pcie, max_replays=5000))
    assert judge_pcie.errors(lenient, snap("fault-pcie-replays"), 1).level == judge.PASS
    off = dataclasses.replace(spec, pcie=dataclasses.replace(spec.pcie, acs="any"))
    assert judge_pcie.acs(off, snap("fault-pcie-acs-on"), 2).level == judge.SKIP


def test_a_vm_without_the_files_skips_with_the_reason(spec, snap):
    snapshot = snap("pg199-quad-debian13", tree=False)
    verdicts = {(v.check, v.subject): v for v in judge.quick(spec, snapshot)}
    path, acs = verdicts[("pcie_path", "gpu0")], verdicts[("acs", "gpu0")]
    assert path.level == acs.level == judge.SKIP
    assert "PCIe path not readable: no " in path.message
    assert (
        "/bus/pci/devices/0000:04:00.0: this system's sysfs does not show the device"
        in path.message
    )
    errors = verdicts[("pcie_errors", "gpu0")]  # NVML's replay counter is still read
    assert (
        errors.level == judge.PASS
        and errors.message == "node0 gpu0 (04:00.0): 0 replays since boot"
    )


def test_a_lost_gpu_skips_its_pcie_checks(spec, snap):
    verdicts = {(v.check, v.subject): v for v in judge.quick(spec, snap("fault-gpu-lost"))}
    for check in PCIE_CHECKS:
        assert verdicts[(check, "gpu1")].level == judge.SKIP
        assert "see gpu_present[gpu1]" in verdicts[(check, "gpu1")].message


def test_acs_unreadable_without_root_skips(spec, snap):
    snapshot = json.loads(json.dumps(snap("fault-pcie-acs-on")))
    for gpu in snapshot["gpus"]:
        for hop in gpu["pcie_path"]["hops"]:
            hop["acs"] = None  # what a probe run without root reads
    verdict = judge_pcie.acs(spec, snapshot, 2)
    assert verdict.level == judge.SKIP and "needs root" in verdict.message


def test_acs_is_not_asked_of_a_gpu_without_p2p_peers(snap):
    spec = NodeSpec.from_data(
        {"gpus": [{"bus_id": "04:00.0"}, {"bus_id": "05:00.0"}], "p2p": {"default": "CNS"}},
        host="box",
    )
    verdict = judge_pcie.acs(spec, snap("fault-pcie-acs-on"), 0)
    assert (
        verdict.level == judge.SKIP
        and "no pair with this GPU is expected P2P OK" in verdict.message
    )


def test_the_narrow_hop_a_host_copy_meets(snap):
    gpus = snap("fault-bw-gpu0-x4-slot")["gpus"]
    assert judge_pcie.narrow_hop(gpus[0]) == "switch uplink 02:00.0 at Gen3 x4"
    assert judge_pcie.narrow_hop(snap("pg199-quad-debian13")["gpus"][0]) is None
