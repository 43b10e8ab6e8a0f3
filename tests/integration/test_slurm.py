"""A real Slurm cluster on two simulated nodes, and ``gpubox health`` as its health check.

The test installs Debian's Slurm and MUNGE in both nodes, as a user would (slurmctld and slurmd
on the first, slurmd on the second; one MUNGE key; the nodes share the host's network, so each
slurmd listens on its own port at 127.0.0.1), deploys with ``slurm.enabled`` (the deploy writes
the ``HealthCheckProgram`` lines that slurm.conf includes), and then:

* both nodes come up idle;
* a fault on one node (a GPU off the bus) drains it with a ``gpubox:`` reason naming the check
  and the GPU, and the fault removed resumes it: once by running the health program as slurmd
  does, once by slurmd itself at its ``HealthCheckInterval``;
* a drain an admin set with another reason is left alone, fault or not.
"""

from __future__ import annotations

import base64
import json
import re
import time

import pytest

from gpubox.sim import target
from gpubox.sim.testing import HEALTHY, deploy, ssh

pytestmark = pytest.mark.sim

PROGRAM = "/opt/gpubox/bin/gpubox-health"
FRAGMENT = "/etc/slurm/slurm.conf.d/gpubox-health.conf"
FAULT = "fault-gpu-missing"  # GPU 3 (10:00.0) off the bus
INTERVAL_S = 5
CTLD_PORT = 38813
SLURMD_PORTS = (38814, 38815)
ADMIN_REASON = "admin: swapping the fans"


def slurm_conf(names: list[str]) -> str:
    lines = [
        "# gpubox's Slurm integration test: two simulated nodes on 127.0.0.1",
        "ClusterName=gpubox-test",
        f"SlurmctldHost={names[0]}(127.0.0.1)",
        f"SlurmctldPort={CTLD_PORT}",
        "AuthType=auth/munge",
        "SlurmUser=slurm",
        "SlurmdUser=root",
        "StateSaveLocation=/var/lib/slurm/slurmctld",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres",
        "ReturnToService=2",
        "MpiDefault=none",
        f"Include {FRAGMENT}",
    ]
    for name, port in zip(names, SLURMD_PORTS, strict=True):
        lines.append(f"NodeName={name} NodeAddr=127.0.0.1 Port={port} CPUs=1 State=UNKNOWN")
    lines.append("PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def put(node, path: str, text: str, mode: str = "644") -> None:
    data = base64.b64encode(text.encode()).decode()
    ssh(node, f"echo {data} | base64 -d > {path} && chmod {mode} {path}")


def hostname(node) -> str:
    return ssh(node, "hostname").stdout.strip()


def show(cluster, name: str) -> dict:
    """``State`` and ``Reason`` of a node, from scontrol on the controller."""
    text = ssh(cluster[0], f"scontrol show node {name}").stdout
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Reason="):
            fields["Reason"] = line.removeprefix("Reason=").rsplit(" [", 1)[0]
        else:
            for word in line.split():
                key, _, value = word.partition("=")
                fields.setdefault(key, value)
    return fields


def wait_for(cluster, name: str, ok, what: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        node = show(cluster, name)
        if ok(node):
            return node
        if time.monotonic() > deadline:
            log = ssh(cluster[0], "tail -n 30 /var/log/slurm/slurmctld.log", check=False).stdout
            raise AssertionError(
                f"node {name}: still State={node.get('State')} Reason={node.get('Reason')!r} "
                f"after {timeout:.0f} s, expected {what}; slurmctld.log:\n{log}"
            )
        time.sleep(1)


def drained_by_gpubox(node: dict) -> bool:
    return "DRAIN" in node.get("State", "") and node.get("Reason", "").startswith("gpubox:")


def idle(node: dict) -> bool:
    return node.get("State") == "IDLE"


def health(node) -> tuple[int, str]:
    """The health program, run as slurmd runs it: no arguments, as root, a bare environment."""
    result = ssh(node, f"env -i SLURMD_NODENAME=$(hostname) {PROGRAM}", check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def slurm(cluster, deploy_env):
    """Slurm installed, configured and running on both nodes; their Slurm names."""
    names = [hostname(n) for n in cluster]
    assert len(set(names)) == 2, f"the nodes must have distinct host names, got {names}"
    packages = {0: "munge slurm-client slurmd slurmctld", 1: "munge slurm-client slurmd"}
    for i, node in enumerate(cluster):
        ssh(
            node,
            "export DEBIAN_FRONTEND=noninteractive; (apt-get install -y -q --no-install-recommends "
            f"{packages[i]} || (apt-get update -q && apt-get install -y -q "
            f"--no-install-recommends {packages[i]})) >/var/log/gpubox-slurm-install.log 2>&1 "
            "|| (tail -n 20 /var/log/gpubox-slurm-install.log >&2; exit 1)",
        )
    # One MUNGE key for the cluster: the controller's (made here if the package made none).
    ssh(
        cluster[0],
        "[ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key",
    )
    ssh(cluster[0], "chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key")
    key = ssh(cluster[0], "base64 -w0 /etc/munge/munge.key").stdout.strip()
    ssh(
        cluster[1],
        f"echo {key} | base64 -d > /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key"
        " && chmod 400 /etc/munge/munge.key",
    )
    env = {
        **deploy_env,
        "GPUBOX_SIM_SLURM": json.dumps({"enabled": True, "interval_s": INTERVAL_S}),
    }
    result = deploy(env)
    assert result.returncode == 0, (
        f"deploy with slurm.enabled failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    )
    conf = slurm_conf(names)
    for node in cluster:
        put(node, "/etc/slurm/slurm.conf", conf)
        put(node, "/etc/slurm/cgroup.conf", "CgroupPlugin=disabled\n")
        ssh(node, "install -d -o slurm -g slurm /var/log/slurm /var/lib/slurm/slurmd")
        ssh(node, "systemctl restart munge")
    ssh(cluster[0], "install -d -o slurm -g slurm /var/lib/slurm/slurmctld")
    ssh(cluster[0], "systemctl restart slurmctld")
    for node in cluster:
        ssh(node, "systemctl restart slurmd")
    yield names
    for node in cluster:
        target.set_scenario(node.name, HEALTHY)
        ssh(node, "systemctl disable --now slurmd slurmctld", check=False)
    # Back to the inventory's spec (slurm off), so the nodes' spec and manifest match what the
    # other tests' checks expect; the health check's files stay, unused without slurmd.
    result = deploy(deploy_env)
    assert result.returncode == 0, f"redeploy failed:\n{result.stdout[-4000:]}"


def test_the_deploy_wrote_the_health_check_lines(cluster, slurm):
    for node in cluster:
        text = ssh(node, f"cat {FRAGMENT}").stdout
        assert f"HealthCheckProgram={PROGRAM}\n" in text
        assert f"HealthCheckInterval={INTERVAL_S}\n" in text
        assert "HealthCheckNodeState=ANY\n" in text
    # slurmctld read them: what it reports is what slurmd runs
    config = ssh(cluster[0], "scontrol show config").stdout
    assert re.search(rf"^HealthCheckProgram\s*=\s*{PROGRAM}$", config, re.MULTILINE), config


def test_healthy_nodes_are_idle(cluster, slurm):
    for name in slurm:
        wait_for(cluster, name, idle, "IDLE (healthy)")
    code, out = health(cluster[1])
    assert code == 0, out
    assert f"{slurm[1]}: healthy (quick tier" in out


def test_fault_drains_with_a_reason_naming_gpu_and_check_then_resumes(cluster, slurm):
    second, name = cluster[1], slurm[1]
    wait_for(cluster, name, idle, "IDLE before the fault")
    target.set_scenario(second.name, FAULT)
    try:
        code, out = health(second)
        assert code == 1, out
        node = wait_for(cluster, name, drained_by_gpubox, "drained by gpubox", timeout=10)
        assert node["Reason"].startswith("gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found")
        sinfo = ssh(cluster[0], "sinfo -R -h -o '%N|%E'").stdout
        assert f"{name}|gpubox: test_gpu_present[gpu3] gpu3 (10:00.0)" in sinfo, sinfo
        assert show(cluster, slurm[0])["State"] == "IDLE"  # the healthy node stays in service
    finally:
        target.set_scenario(second.name, HEALTHY)
    code, out = health(second)
    assert code == 0, out
    wait_for(cluster, name, idle, "IDLE again (resumed by gpubox)", timeout=10)


def test_slurmd_runs_the_health_check_itself(cluster, slurm):
    """No manual run: slurmd's HealthCheckInterval drains the node and resumes it."""
    first, name = cluster[0], slurm[0]
    wait_for(cluster, name, idle, "IDLE before the fault")
    target.set_scenario(first.name, FAULT)
    try:
        node = wait_for(cluster, name, drained_by_gpubox, "drained by slurmd's health check")
        assert "test_gpu_present[gpu3]" in node["Reason"]
    finally:
        target.set_scenario(first.name, HEALTHY)
    wait_for(cluster, name, idle, "IDLE again (resumed by slurmd's health check)")


def test_an_admin_drain_is_left_alone(cluster, slurm):
    second, name = cluster[1], slurm[1]
    wait_for(cluster, name, idle, "IDLE before the admin's drain")
    ssh(cluster[0], f"scontrol update nodename={name} state=drain reason='{ADMIN_REASON}'")
    try:
        target.set_scenario(second.name, FAULT)
        code, out = health(second)
        assert code == 1, out
        assert "drained by someone else" in out
        assert show(cluster, name)["Reason"] == ADMIN_REASON
        target.set_scenario(second.name, HEALTHY)
        code, out = health(second)
        assert code == 0, out
        time.sleep(2 * INTERVAL_S)  # slurmd's own runs too: still the admin's drain
        node = show(cluster, name)
        assert "DRAIN" in node["State"] and node["Reason"] == ADMIN_REASON, node
    finally:
        target.set_scenario(second.name, HEALTHY)
        ssh(cluster[0], f"scontrol update nodename={name} state=resume", check=False)
