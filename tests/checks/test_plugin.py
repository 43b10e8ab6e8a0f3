"""What a pytest user expects of ``pytest checks/``: quick by default, the long tiers only when
asked, an entry-point plugin that stays out of other projects, ``host`` being the node, result
files only from real runs, JUnit with figures, and one line per problem instead of a traceback."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import CHECKS, run_pytest


def ids(results: dict) -> set[str]:
    return {c["id"].split("::")[-1] for c in results["checks"]}


# ---- tiers: the default run is quick; full load only when asked ------------------------------


def test_the_default_run_is_the_quick_tier_only(local_node, workdir):
    spec, env = local_node()
    run = run_pytest(CHECKS, "--node-spec", spec, cwd=workdir, env=env)
    checks = ids(run.results())
    assert checks and all(
        not c.startswith(("test_burn", "test_h2d", "test_p2p_bandwidth")) for c in checks
    )
    assert "test_gpu_count[simlocal]" in checks and "test_p2p[gpu0-gpu1]" in checks
    assert (
        "not run: the stress tier (21 checks, minutes of full load); ask with -m stress or --gpubox-stress"
        in run.output
    )
    assert "not run: the bandwidth tier" in run.output
    assert "gpu_burn" not in run.output and not (workdir / "results" / "burn").exists()


@pytest.mark.parametrize(
    "asking", [("-m", "stress"), ("--gpubox-stress",), ("-m", "quick or stress")]
)
def test_the_stress_tier_runs_when_asked(local_node, workdir, asking):
    spec, env = local_node()
    run = run_pytest(
        CHECKS, "--node-spec", spec, "--collect-only", "-q", *asking, cwd=workdir, env=env
    )
    assert run.proc.returncode == 0, run.output
    assert "test_stress.py::test_burn_errors[gpu0]" in run.output
    assert "not run: the stress tier" not in run.output


def test_the_bandwidth_tier_runs_when_asked(local_node, workdir):
    spec, env = local_node()
    run = run_pytest(
        CHECKS,
        "--node-spec",
        spec,
        "--collect-only",
        "-q",
        "--gpubox-bandwidth",
        cwd=workdir,
        env=env,
    )
    assert "test_bandwidth.py::test_h2d[gpu0]" in run.output
    assert "test_stress.py" not in run.output


def test_collect_only_writes_no_results(local_node, workdir):
    spec, env = local_node()
    run = run_pytest(CHECKS, "--node-spec", spec, "--collect-only", "-q", cwd=workdir, env=env)
    assert run.proc.returncode == 0, run.output
    assert "test_quick.py::test_gpu_count[simlocal]" in run.output
    assert not (workdir / "results").exists()


def test_long_tiers_say_how_long_they_take_and_show_progress(local_node, workdir):
    spec, env = local_node()
    run = run_pytest(
        CHECKS, "--node-spec", spec, "-m", "stress", "--gpubox-progress", "1", cwd=workdir, env=env
    )
    lines = [line for line in run.lines if line.startswith("gpubox: simlocal: stress tier")]
    assert lines[0].startswith(
        "gpubox: simlocal: stress tier started: GPUs 0,1,2,3 at full load for 4 s (about 24 s "
        "with start-up and stop); stopped after 194 s"
    ), run.output[-3000:]
    periodic = [line for line in lines[1:-1] if " s: " in line]
    assert len(periodic) >= 2, lines
    assert any("[burn]" in line for line in periodic), periodic  # what the burn last printed
    assert lines[-1].startswith("gpubox: simlocal: stress tier finished in")


# ---- JUnit carries figures; the JSON results keep the documents --------------------------------


def test_junit_has_figures_and_the_json_the_documents(local_node, workdir):
    spec, env = local_node("fault-gpu0-x4", pcie={"min_gen": 3, "min_width": 16})
    run = run_pytest(CHECKS, "--node-spec", spec, cwd=workdir, env=env)
    junit = ET.parse(workdir / "results" / "checks-junit.xml")
    props = {}
    for case in junit.iter("testcase"):
        props[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert set().union(*props.values()) <= {"level", "expected", "found"}
    assert all(len(v) <= 500 and "{'" not in v for p in props.values() for v in p.values())
    assert props["test_pcie[gpu0]"]["level"] == "fail"
    assert "4" in props["test_pcie[gpu0]"]["found"]
    results = run.results()
    assert results["hosts"]["simlocal"]["snapshot"]["gpu_count"] == 4
    pcie = next(c for c in results["checks"] if c["id"].endswith("test_pcie[gpu0]"))
    assert pcie["verdict"]["level"] == "fail" and "x4" in pcie["message"]


# ---- the plugin: an entry point, inert elsewhere, `host` is the node --------------------------


def test_the_plugin_loads_once_from_its_entry_point_or_the_conftest(local_node, workdir):
    spec, env = local_node()
    for extra_env, args in (
        ({}, ()),  # the pytest11 entry point
        ({}, ("-p", "gpubox.checks")),  # named explicitly as well: still once
        ({"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, ()),  # no entry points: checks/conftest.py
    ):
        run = run_pytest(
            CHECKS,
            "--node-spec",
            spec,
            "--collect-only",
            "-q",
            *args,
            cwd=workdir,
            env={**env, **extra_env},
        )
        assert run.proc.returncode == 0, (args, extra_env, run.output[-2000:])
        assert run.output.count("test_quick.py::test_gpu_count[simlocal]") == 1


def test_other_projects_keep_testinfra_host_and_their_own_node_fixture(tmp_path):
    project = tmp_path / "elsewhere"
    project.mkdir()
    (project / "test_other.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture\n"
        "def node():\n"
        "    return 'my node'\n\n"
        "def test_own_node(node):\n"
        "    assert node == 'my node'\n\n"
        "def test_testinfra_host(host):\n"
        "    assert host.backend.get_connection_type() == 'local'\n"
    )
    run = run_pytest("-q", cwd=project)
    assert run.proc.returncode == 0, run.output
    assert "2 passed" in run.output
    assert not (project / "results").exists()


def test_host_in_your_own_check_is_the_node_under_test(local_node, tmp_path, workdir):
    spec, env = local_node()
    folder = tmp_path / "mychecks"
    shutil.copytree(CHECKS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "test_mine.py").write_text(
        "def test_mine(host, node):\n"
        "    assert host is node.host\n"
        "    assert host.run('echo $GPUBOX_SIM_STATE_DIR').stdout.strip()\n"
    )
    run = run_pytest(folder / "test_mine.py", "--node-spec", spec, "-v", cwd=workdir, env=env)
    assert run.proc.returncode == 0, run.output
    assert "test_mine.py::test_mine[simlocal] PASSED" in run.output


# ---- one line per problem -----------------------------------------------------------------------


def inventory(tmp_path, data: dict, name="box") -> Path:
    path = tmp_path / "inv.py"
    path.write_text(f"nodes = [({name!r}, {data!r})]\n")
    return path


GPUS4 = {"gpus": [{"bus_id": f"0{i}:00.0"} for i in range(1, 5)]}


@pytest.mark.parametrize(
    "data, limit, expected",
    [
        ({**GPUS4, "clokcs": {"graphics_mhz": 1140}}, None, "ERROR: host 'box': clokcs: unknown key 'clokcs'"),
        ({**GPUS4, "clocks": {"graphics_mhz": 9000}}, None, "ERROR: host 'box': clocks.graphics_mhz: expected a number in 1..3000; got 9000"),
        (GPUS4, "nosuch", "ERROR: host(s) nosuch not in inventory "),
    ],
)  # fmt: skip
def test_a_bad_inventory_is_one_line(tmp_path, workdir, data, limit, expected):
    inv = inventory(tmp_path, data)
    run = run_pytest(
        CHECKS, "--inventory", inv, *(["--limit", limit] if limit else []), cwd=workdir
    )
    assert run.proc.returncode == 4
    assert [line for line in run.lines if line.strip()] == [run.lines[0]]
    assert run.lines[0].startswith(expected), run.output
    assert not (workdir / "results").exists()


def test_an_unreachable_node_fails_each_check_with_one_line(tmp_path, workdir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inv = inventory(tmp_path, {**GPUS4, "ssh_hostname": "127.0.0.1", "ssh_port": port})
    run = run_pytest(CHECKS, "--inventory", inv, cwd=workdir)
    assert run.proc.returncode == 1
    reason = f"box: cannot connect over SSH (root@127.0.0.1:{port}): ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    results = run.results()
    assert len(results["checks"]) == 54
    assert {c["message"] for c in results["checks"]} == {reason}
    assert "Traceback" not in run.output and "During handling" not in run.output
    assert run.output.count(reason) == 54 + 1  # once per check, once in the gpubox summary
    assert "FAIL 54 checks (" in run.output
    assert len(run.lines) < 3.5 * 54, len(run.lines)  # a few lines per check (was 1400 for 42)


def test_a_hung_ssh_never_hangs_pytest(tmp_path, workdir):
    """A server that accepts the connection and never speaks: ssh gives up (ConnectTimeout)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    inv = inventory(
        tmp_path, {**GPUS4, "ssh_hostname": "127.0.0.1", "ssh_port": server.getsockname()[1]}
    )
    started = time.monotonic()
    run = run_pytest(CHECKS, "--inventory", inv, cwd=workdir, timeout=120)
    took = time.monotonic() - started
    server.close()
    assert run.proc.returncode == 1
    messages = {c["message"] for c in run.results()["checks"]}
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith("box: cannot connect over SSH") and "timed out" in message, message
    assert took < 60, took  # one connection attempt (10 s), then every check fails at once


def test_a_hung_nvml_never_hangs_pytest(local_node, workdir, tmp_path):
    """nvmlInit blocks: the simulated library opens a scenario that is a FIFO nobody writes."""
    spec, env = local_node(name=None)
    os.mkfifo(tmp_path / "scenario.json")
    started = time.monotonic()
    run = run_pytest(
        CHECKS, "--node-spec", spec, "--gpubox-timeout", "3", cwd=workdir, env=env, timeout=120
    )
    took = time.monotonic() - started
    results = run.results()
    gpu_count = next(c for c in results["checks"] if c["id"].endswith("test_gpu_count[simlocal]"))
    assert gpu_count["outcome"] == "failed"
    assert (
        "probe --json" in gpu_count["message"]
        and "still running after 3 s: stopped" in gpu_count["message"]
    )
    assert took < 60, took  # probed once (3 s), every snapshot check fails with that
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, str(spec))]
    assert left == [], "the hung probe was left running"


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False


# ---- testinfra's own options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--hosts", "paramiko://root@127.0.0.1:22"), "ERROR: --hosts paramiko://root@127.0.0.1:22: testinfra's paramiko backend does not verify SSH host keys; use ssh://"),
        (("--hosts", "ssh://root@127.0.0.1:1", "--inventory", "INV"), "ERROR: --hosts and --inventory both name the nodes"),
        (("--ssh-config", "/etc/ssh/ssh_config", "--inventory", "INV"), "ERROR: --ssh-config with --inventory: the inventory's host data says how to connect, as for the deploy; set `ssh_config_file` there"),
        (("--ssh-identity-file", "/root/id", "--inventory", "INV"), "ERROR: --ssh-identity-file with --inventory"),
    ],
)  # fmt: skip
def test_testinfra_options_work_or_are_refused_in_one_line(tmp_path, workdir, args, expected):
    inv = inventory(tmp_path, GPUS4)
    args = [str(inv) if a == "INV" else a for a in args]
    run = run_pytest(CHECKS, *args, cwd=workdir)
    assert run.proc.returncode == 4
    assert run.lines[0].startswith(expected), run.output
    assert [line for line in run.lines if line.strip()] == [run.lines[0]]


def test_hosts_local_checks_this_machine_against_its_deployed_spec(local_node, workdir):
    """``--hosts local://`` reads the spec where the deploy writes it; here there is none."""
    run = run_pytest(CHECKS, "--hosts", "local://", cwd=workdir)
    if Path("/etc/gpubox/spec.json").exists():
        pytest.skip("this machine is a deployed node")
    assert run.proc.returncode == 4
    assert (
        run.lines[0]
        == "ERROR: --hosts local://: no /etc/gpubox/spec.json there: deploy the node first"
    )
