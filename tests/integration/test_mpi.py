"""Multi-node nccl-tests under real Open MPI ``mpirun`` across two simulated nodes.

Both nodes are deployed with ``software.mpi: true`` (``GPUBOX_SIM_MPI=1``): the deploy installs
Debian 13's Open MPI and builds nccl-tests (the stand-in release) with ``MPI=1``, linked to its
libmpi (the host's Debian 12 Open MPI is another major version, so mpirun runs ON node 1); the
module ends with a deploy without it, as the inventory has it. mpirun starts the ranks
on node 1 itself and on node 2 over SSH: the nodes share the host's network namespace, so node
1's ``/root/.ssh/config`` maps node 2's name to 127.0.0.1 and its sshd's port, with a key of
node 1's root installed on node 2 and node 2's host key recorded. Every rank runs the replay
(gpubox/sim/replay.py) as nccl-tests built with MPI: rank 0 prints one ``#  Rank`` line per rank
with each rank's own hostname, and ``fault-mpi-rank-fails`` on node 2 makes its rank 3 fail.

The run is gpubox's own: ``gpubox bench run --tools nccl-tests --json`` on node 1 with a spec
that has ``floors.multinode`` across both nodes, judged here by ``judge_bandwidth.multinode``.
"""

from __future__ import annotations

import json
import shlex
import socket
import time

import pytest

from gpubox import judge_bandwidth
from gpubox.sim import target
from gpubox.sim.testing import HEALTHY, deploy, ssh
from gpubox.spec import NodeSpec

pytestmark = pytest.mark.sim

GPUBOX = "/opt/gpubox/venv/bin/gpubox"
SPEC_IN_NODE = "/root/gpubox-mpi-spec.json"
MPI_TIMEOUT_S = 60  # bench.mpirun.timeout_s of these runs: no run may take longer
GHOST = "ghost"  # a host in node 1's ssh_config whose port nobody listens on
QUIET = "quiet"  # a host whose port accepts connections and never answers (a hung sshd)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ssh_config(second, ghost_port: int, quiet_port: int) -> str:
    common = (
        "    HostName 127.0.0.1\n    User root\n    IdentityFile /root/.ssh/id_ed25519\n"
        "    IdentitiesOnly yes\n    BatchMode yes\n    StrictHostKeyChecking yes\n"
        "    UserKnownHostsFile /root/.ssh/known_hosts\n    ConnectTimeout 5\n"
        "    LogLevel ERROR\n"
    )
    return (
        f"Host {second.name}\n    Port {second.port}\n{common}"
        f"Host {GHOST}\n    Port {ghost_port}\n{common}"
        f"Host {QUIET}\n    Port {quiet_port}\n{common}"
    )


@pytest.fixture(scope="module")
def quiet_port():
    """A port that accepts TCP connections (the kernel's backlog) and never says a word: the
    nodes share the host's network namespace, so node 1 reaches it on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def mpi_deployed(cluster, deploy_env):
    """Both nodes deployed with ``software.mpi: true``; afterwards deployed as the inventory is."""
    result = deploy({**deploy_env, "GPUBOX_SIM_MPI": "1"})
    assert result.returncode == 0, (
        f"deploy with software.mpi failed:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    )
    yield cluster
    back = deploy(deploy_env)
    assert back.returncode == 0, f"deploy without software.mpi failed:\n{back.stdout[-4000:]}"


@pytest.fixture(scope="module")
def mpi_cluster(mpi_deployed, quiet_port):
    """The two nodes with Open MPI from the deploy, node 1 reaching node 2 by SSH."""
    first, second = mpi_deployed
    pub = ssh(
        first,
        "test -f /root/.ssh/id_ed25519 || ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519;"
        " cat /root/.ssh/id_ed25519.pub",
    ).stdout.strip()
    key = shlex.quote(pub)
    ssh(
        second,
        f"mkdir -p -m 700 /root/.ssh; grep -qxF {key} /root/.ssh/authorized_keys 2>/dev/null || "
        f"echo {key} >> /root/.ssh/authorized_keys",
    )
    known = second.known_hosts.read_text()
    config = _ssh_config(second, _closed_port(), quiet_port)
    ssh(
        first,
        f"umask 077; printf %s {shlex.quote(known)} > /root/.ssh/known_hosts; "
        f"printf %s {shlex.quote(config)} > /root/.ssh/config",
    )
    # node 1 reaches node 2 as mpirun will (its hostname is its own: each container has one)
    assert ssh(first, f"ssh {second.name} hostname").stdout.strip() == second.name
    return first, second


def spec_data(first, hosts: list[str]) -> dict:
    """Node 1's deployed spec with mpirun on and one multi-node floor across ``hosts``."""
    data = json.loads(ssh(first, "cat /etc/gpubox/spec.json").stdout)
    data["software"]["mpi"] = True
    data["bench"]["mpirun"] = {
        "enabled": True,
        "extra_args": ["--allow-run-as-root"],
        "timeout_s": MPI_TIMEOUT_S,
    }
    data["floors"]["allreduce"] = []
    data["floors"]["multinode"] = [
        {"hosts": hosts, "gpus": [0, 1], "size": "32M", "busbw_gbps": 2.0}
    ]
    return data


def bench_run(first, data: dict, *args: str) -> tuple[object, float]:
    ssh(first, f"printf %s {shlex.quote(json.dumps(data))} > {SPEC_IN_NODE}")
    start = time.monotonic()
    result = ssh(
        first,
        f"{GPUBOX} bench run --spec {SPEC_IN_NODE} --tools nccl-tests --quiet {' '.join(args)}",
        check=False,
    )
    return result, time.monotonic() - start


def judged(first, data: dict, result):
    doc = json.loads(result.stdout)
    spec = NodeSpec.from_data({k: v for k, v in data.items() if k != "host"}, host=first.name)
    return doc, judge_bandwidth.multinode(spec, doc, spec.floors.multinode[0])


def test_the_deploy_installs_open_mpi_and_builds_nccl_tests_with_it(mpi_deployed):
    for t in mpi_deployed:
        assert ssh(t, "command -v mpirun").stdout.strip() == "/usr/bin/mpirun"
        stamp = json.loads(ssh(t, "cat /opt/gpubox/nccl-tests/current/.gpubox-build.json").stdout)
        assert "MPI=1" in json.dumps(stamp), stamp
        binary = "/opt/gpubox/nccl-tests/current/all_reduce_perf"
        assert "libmpi.so" in ssh(t, f"ldd {binary}").stdout
        out = ssh(t, binary, check=False).stdout  # no GPU: it stops at CUDA, after the header
        assert "# built with MPI: Open MPI v" in out, out


def test_the_command_line_runs_one_rank_per_gpu_on_both_nodes(mpi_cluster):
    first, second = mpi_cluster
    result, _ = bench_run(first, spec_data(first, [first.name, second.name]), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert (
        f"mpirun -np 4 -H {first.name}:2,{second.name}:2 --tag-output -x CUDA_DEVICE_ORDER "
        "-x CUDA_VISIBLE_DEVICES --allow-run-as-root /usr/lib/gpubox-sim/bin/all_reduce_perf "
        "-b 33554432 -e 33554432 -g 1 -n 20 -w 5 -c 1"
    ) in result.stdout


def test_every_rank_reports_from_its_own_node_and_the_run_passes(mpi_cluster):
    first, second = mpi_cluster
    data = spec_data(first, [first.name, second.name])
    result, took = bench_run(first, data, "--json")
    doc, verdict = judged(first, data, result)
    (run,) = doc["runs"]
    assert result.returncode == 0, run["errors"]
    assert run["command"][0] == "mpirun" and run["ranks"] == 4
    assert run["mpi"]["tagged"] and 0 in run["mpi"]["printed"]
    ranks = [(r["rank"], r["host"], r["device"]) for r in run["parsed"]["ranks"]]
    assert ranks == [
        (0, first.name, 0),
        (1, first.name, 1),
        (2, second.name, 0),
        (3, second.name, 1),
    ]
    assert len({r["pid"] for r in run["parsed"]["ranks"]}) == 4  # one process per rank
    assert verdict.level == "pass", verdict.message
    assert f"[{first.name}: gpu0 (0000:04:00), gpu1 (0000:05:00); {second.name}: gpu0" in (
        verdict.message
    )
    assert took < MPI_TIMEOUT_S


def test_one_rank_failing_fails_naming_its_rank_host_and_gpu(mpi_cluster):
    first, second = mpi_cluster
    data = spec_data(first, [first.name, second.name])
    target.set_scenario(second.name, "fault-mpi-rank-fails")
    try:
        result, took = bench_run(first, data, "--json")
    finally:
        target.set_scenario(second.name, HEALTHY)
    doc, verdict = judged(first, data, result)
    assert result.returncode == 1
    assert verdict.level == "fail"
    assert (
        f"rank 3 on host {second.name}, gpu1 (0000:05:00) failed: {second.name}: Test NCCL "
        "failure common.cu:1100"
    ) in verdict.message, verdict.message
    assert "\n" not in verdict.message
    assert took < MPI_TIMEOUT_S  # mpirun stopped the job when the rank failed: no hang


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        (GHOST, "Connection refused"),
        (QUIET, "Connection timed out during banner exchange"),
    ],
    ids=["nothing listens", "sshd never answers"],
)
def test_an_unreachable_host_is_named_and_returns_within_the_timeout(mpi_cluster, host, reason):
    first, _ = mpi_cluster
    data = spec_data(first, [first.name, host])
    result, took = bench_run(first, data, "--json")
    doc, verdict = judged(first, data, result)
    (run,) = doc["runs"]
    assert result.returncode == 1
    assert took < MPI_TIMEOUT_S + 30, run
    assert run["mpi"]["launch"]["host"] == host, run["mpi"]
    assert verdict.level == "fail"
    assert f"mpirun could not start the ranks on host {host}" in verdict.message
    assert reason in verdict.message, verdict.message
    assert "\n" not in verdict.message
