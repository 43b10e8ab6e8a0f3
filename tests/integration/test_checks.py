"""The quick checks against the deployed simulated node: healthy passes, each fault fails exactly
its checks (naming the right GPU), on the node and over SSH alike."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gpubox.sim import target
from gpubox.sim.testing import (
    BIN,
    HEALTHY,
    NODE_NAME,
    ROOT,
    deploy,
    failed_ids,
    run_checks,
    ssh,
)

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
    # The PCIe path above the GPUs: the scenario's tree as the node's sysfs (gpubox/sim/sysfs.py).
    "fault-pcie-uplink-x8": (
        {"test_pcie_path[gpu0]", "test_pcie_path[gpu1]"},
        "switch uplink 02:00.0 at Gen3 x8, expected at least Gen3 x16",
    ),
    "fault-pcie-uplink-gen1": (
        {"test_pcie_path[gpu0]", "test_pcie_path[gpu1]"},
        "switch uplink 02:00.0 at Gen1 x16",
    ),
    "fault-pcie-aer-correctable": ({"test_pcie_errors[gpu1]"}, "508 correctable AER errors"),
    "fault-pcie-aer-fatal": (
        {"test_pcie_errors[gpu3]"},
        "switch downstream port 0e:10.0: 1 fatal AER error(s) (SDES 1)",
    ),
    "fault-pcie-replays": ({"test_pcie_errors[gpu1]"}, "1200 PCIe replays since boot"),
    "fault-pcie-acs-on": ({"test_acs[gpu2]", "test_acs[gpu3]"}, "ACS on at switch downstream port"),
}


def test_every_fault_scenario_is_covered():
    from gpubox.sim import scenario

    # fault-bw-* change only recorded benchmark output: tests/integration/test_bandwidth.py
    names = scenario.names()
    # fault-burn-* change only GPUs' burn timelines: tests/integration/test_stress.py
    # fault-mpi-* change only recorded mpirun output: tests/integration/test_mpi.py
    assert set(FAULTS) == {
        n
        for n in names
        if n.startswith("fault-") and not any(k in n for k in ("fault-bw-", "-burn-", "-mpi-"))
    }


def test_healthy_node_passes_every_quick_check(node, deploy_env, tmp_path):
    rc, results = run_checks(deploy_env, results=tmp_path / "healthy.json")
    assert rc == 0, failed_ids(results)
    assert results["counts"] == {"passed": 54}
    assert results["hosts"][NODE_NAME]["snapshot"]["gpu_count"] == 4
    junit = (tmp_path / "healthy.xml").read_text()
    assert 'tests="54"' in junit and 'failures="0"' in junit


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
    assert len(verdicts(local)) == 54


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


# ---- host keys: verified as the deploy verifies them ----------------------------------------------


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"


@pytest.mark.parametrize("case", ["changed", "unknown"])
def test_a_host_key_that_changed_or_is_unknown_is_refused_by_checks_and_deploy(
    node, deploy_env, tmp_path, case
):
    """The node now offers a key the known_hosts file does not hold for it (a reinstalled node,
    or someone in the middle): the checks and pyinfra refuse to connect, naming the host and,
    for the checks, the fingerprint the node offered."""
    node = target.get_target(node.name)
    offered = _fingerprint(node.rootfs / "etc/ssh/ssh_host_ed25519_key.pub")
    entry = f"[127.0.0.1]:{node.port}"
    saved = node.known_hosts.read_text()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    try:
        if case == "changed":  # another ed25519 key recorded for this host and port
            kind, key = other.with_suffix(".pub").read_text().split()[:2]
            node.known_hosts.write_text(f"{entry} {kind} {key}\n")
        else:
            node.known_hosts.write_text("")
        rc, results = run_checks(deploy_env, results=tmp_path / "refused.json")
        deployed = deploy(deploy_env)
    finally:
        node.known_hosts.write_text(saved)
    assert rc == 1
    messages = {c["message"] for c in results["checks"]}
    assert len(messages) == 1, messages  # tried once; every check fails with the same line
    (message,) = messages
    words = "changed" if case == "changed" else "is unknown"
    assert message.startswith(f"{NODE_NAME}: SSH host key of {entry} {words}: "), message
    assert f"the node offers ED25519 {offered}" in message, message
    assert deployed.returncode != 0
    said = deployed.stdout + deployed.stderr
    assert NODE_NAME in said
    if case == "changed":
        assert "Host key for 127.0.0.1 does not match" in said, said[-2000:]
        assert f"ssh-keygen -R {entry}" in said
    else:
        assert f"No host key for {entry} found in known_hosts" in said, said[-2000:]
    rc, results = run_checks(deploy_env, results=tmp_path / "again.json")  # key back: all pass
    assert rc == 0, failed_ids(results)


# ---- testinfra conventions: `host` is the node; --hosts ------------------------------------------


def test_host_in_your_own_check_is_the_node_not_this_machine(node, deploy_env, tmp_path):
    folder = tmp_path / "checks"
    shutil.copytree(ROOT / "checks", folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "test_mine.py").write_text(
        "def test_hostname(host, node):\n"
        "    assert host.run('hostname').stdout.strip() == node.name\n"
        "    assert host.file('/opt/gpubox/venv/bin/gpubox').exists\n"
    )
    proc = subprocess.run(
        [str(BIN / "pytest"), str(folder / "test_mine.py"), "--inventory", "inventories/sim.py",
         "-p", "no:cacheprovider", "-v", "--results-json", str(tmp_path / "r.json"),
         "--junitxml", str(tmp_path / "r.xml")],
        cwd=ROOT, env=deploy_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert f"::test_hostname[{NODE_NAME}] PASSED" in proc.stdout, proc.stdout


def test_hosts_checks_a_node_against_the_spec_its_deploy_wrote(node, deploy_env, tmp_path):
    node = target.get_target(node.name)
    proc = subprocess.run(
        [str(BIN / "pytest"), "checks/", "--hosts", node.hosts, "-p", "no:cacheprovider", "-q",
         "--results-json", str(tmp_path / "r.json"), "--junitxml", str(tmp_path / "r.xml")],
        cwd=ROOT, env=deploy_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["counts"] == {"passed": 54}
    assert "not run: the stress tier" in proc.stdout
