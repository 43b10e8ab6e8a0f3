"""The quick checks against the deployed simulated node: healthy passes, each fault fails exactly
its checks (naming the right GPU), on the node and over SSH alike."""

from __future__ import annotations

import json

import pytest

from gpubox.sim import target
from gpubox.sim.testing import HEALTHY, NODE_NAME, failed_ids, run_checks, ssh

pytestmark = pytest.mark.sim

ALL_GPUS = ("gpu0", "gpu1", "gpu2", "gpu3")
PAIRS = ("gpu0-gpu1", "gpu0-gpu2", "gpu0-gpu3", "gpu1-gpu2", "gpu1-gpu3", "gpu2-gpu3")

# fault scenario -> (the checks it must fail, words every failure message must contain)
FAULTS = {
    "fault-gpu-missing": ({f"test_gpu_count[{NODE_NAME}]", "test_gpu_present[gpu3]"}, "10:00.0"),
    "fault-gpu-lost": ({"test_gpu_present[gpu1]"}, "gpu1 (05:00.0)"),
    "fault-p2p-pair-cns": ({"test_p2p[gpu2-gpu3]"}, "gpu2 (0f:00.0) <-> gpu3 (10:00.0)"),
    "fault-p2p-all-tns": ({f"test_p2p[{p}]" for p in PAIRS}, "TNS"),
    "fault-gpu0-x4": ({"test_pcie[gpu0]"}, "gpu0 (04:00.0): PCIe link Gen3 x4"),
    "fault-gpu2-gen1": ({"test_pcie[gpu2]"}, "gpu2 (0f:00.0): PCIe link Gen1 x16"),
    "fault-nvlink-active": ({"test_nvlink[gpu1]"}, "gpu1 (05:00.0): NVLink links"),
    "fault-clock-lock-ignored": ({"test_clock_locked[gpu3]"}, "gpu3 (10:00.0): SM clock"),
    "fault-hbm-95c": ({"test_temperature[gpu2]"}, "gpu2 (0f:00.0): HBM 95 C"),
    "fault-remapped-row-pending": ({"test_remapped_rows[gpu0]"}, "gpu0 (04:00.0)"),
    "fault-xid-79": ({"test_xid[gpu2]"}, "gpu2 (0f:00.0): XID [79]"),
    "fault-persistence-off": ({f"test_persistence[{g}]" for g in ALL_GPUS}, "persistence mode off"),
    "fault-wrong-driver": ({f"test_driver_version[{NODE_NAME}]"}, "driver 535.183.01"),
}


def test_every_fault_scenario_is_covered():
    from gpubox.sim import scenario

    # fault-bw-* change only recorded benchmark output: tests/integration/test_bandwidth.py
    names = scenario.names()
    # fault-burn-* change only GPUs' burn timelines: tests/integration/test_stress.py
    assert set(FAULTS) == {
        n for n in names if n.startswith("fault-") and "fault-bw-" not in n and "-burn-" not in n
    }


def test_healthy_node_passes_every_quick_check(node, deploy_env, tmp_path):
    rc, results = run_checks(deploy_env, results=tmp_path / "healthy.json")
    assert rc == 0, failed_ids(results)
    assert results["counts"] == {"passed": 42}
    assert results["hosts"][NODE_NAME]["snapshot"]["gpu_count"] == 4
    junit = (tmp_path / "healthy.xml").read_text()
    assert 'tests="42"' in junit and 'failures="0"' in junit


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_fails_exactly_its_checks(node, deploy_env, tmp_path, fault):
    expected, words = FAULTS[fault]
    target.set_scenario(node.name, fault)
    try:
        rc, results = run_checks(deploy_env, results=tmp_path / f"{fault}.json")
    finally:
        target.set_scenario(node.name, HEALTHY)
    assert rc == 1
    assert failed_ids(results) == expected
    for c in results["checks"]:
        if c["outcome"] == "failed":
            assert words in c["message"] and NODE_NAME in c["message"], c["message"]


def test_checks_on_the_node_and_over_ssh_agree(node, deploy_env, tmp_path):
    _, remote = run_checks(deploy_env, results=tmp_path / "ssh.json")
    ssh(
        node,
        "cd /opt/gpubox && venv/bin/pytest checks/ -m quick -q -p no:cacheprovider "
        "--results-json /tmp/local.json --junitxml /tmp/local.xml",
        check=False,
    )
    local = json.loads(ssh(node, "cat /tmp/local.json").stdout)

    def verdicts(results):
        return {c["id"].split("::")[-1]: (c["outcome"], c["message"]) for c in results["checks"]}

    assert verdicts(local) == verdicts(remote)
    assert len(verdicts(local)) == 42


def test_a_lock_set_by_one_process_is_seen_by_another_and_gone_after_reboot(node):
    gpubox = "/opt/gpubox/venv/bin/gpubox"
    ssh(node, "systemctl disable --now gpubox-clocks.service")  # ExecStop resets the locks
    try:
        assert (
            ssh(node, f"{gpubox} clocks show").stdout.count("SM 210 MHz, event reasons [GpuIdle]")
            == 4
        )
        ssh(node, f"{gpubox} clocks lock --mhz 1200")  # one process sets the lock through NVML
        shown = ssh(node, f"{gpubox} clocks show").stdout  # another process reads it
        assert shown.count("SM 1200 MHz, event reasons []") == 4, shown
        target.reboot(node.name)  # /run starts empty, as on hardware
        after = ssh(node, f"{gpubox} clocks show").stdout
        assert after.count("SM 210 MHz, event reasons [GpuIdle]") == 4, after
    finally:
        ssh(node, "systemctl enable --now gpubox-clocks.service")
    assert ssh(node, f"{gpubox} clocks show").stdout.count("SM 1140 MHz") == 4


def test_a_lock_lost_at_reboot_fails_the_clock_checks(node, deploy_env, tmp_path):
    ssh(node, "systemctl disable gpubox-clocks.service")
    try:
        target.reboot(node.name)
        rc, results = run_checks(deploy_env, results=tmp_path / "nolock.json")
    finally:
        ssh(node, "systemctl enable gpubox-clocks.service")
        target.reboot(node.name)
    assert failed_ids(results) == {f"test_clock_unit[{NODE_NAME}]"} | {
        f"test_clock_locked[{g}]" for g in ALL_GPUS
    }
    messages = " ".join(c["message"] for c in results["checks"] if c["outcome"] == "failed")
    assert "not enabled and not active" in messages and "GpuIdle" in messages
    rc, results = run_checks(deploy_env, results=tmp_path / "relocked.json")
    assert rc == 0, failed_ids(results)
