"""The real deploy, with real pyinfra over SSH, against a booted simulated Debian 13 node."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from gpubox.sim import target
from gpubox.sim.standin import Server
from gpubox.sim.testing import NODE_NAME, ROOT, changed_ops, deploy, failed_ids, run_checks, ssh

pytestmark = pytest.mark.sim


def test_first_deploy_installs_the_pinned_stack(node):
    versions = ssh(
        node,
        "dpkg-query -W -f '${Package} ${Version}\\n' nvidia-driver "
        "nvidia-cuda-toolkit libnccl2 libnccl-dev nvidia-cuda-samples",
    ).stdout
    found = dict(line.split() for line in versions.splitlines())
    assert found["nvidia-driver"].startswith("550.163.01-")
    assert found["nvidia-cuda-toolkit"].startswith("12.4.131~")
    assert found["libnccl2"].startswith("2.22.3-") and found["libnccl-dev"].startswith("2.22.3-")
    held = set(ssh(node, "apt-mark showhold").stdout.split())
    assert {"nvidia-driver", "nvidia-cuda-toolkit", "libnccl2", "libnccl-dev"} <= held
    assert "nouveau" in ssh(node, "cat /etc/modprobe.d/gpubox-blacklist-nouveau.conf").stdout
    assert ssh(node, "systemctl is-enabled nvidia-persistenced").stdout.strip() == "enabled"


def test_first_deploy_builds_the_tools_with_nvcc(node):
    for tool in ("bandwidthTest", "p2pBandwidthLatencyTest"):
        info = ssh(node, f"file -L /opt/gpubox/bin/{tool} || readlink -f /opt/gpubox/bin/{tool}")
        assert (
            "/opt/gpubox/cuda-samples/12.4"
            in ssh(node, f"readlink -f /opt/gpubox/bin/{tool}").stdout
        )
        assert info.returncode == 0
    # The stand-in nccl-tests went through download, sha256 check and an nvcc build for sm_80.
    stamp = json.loads(ssh(node, "cat /opt/gpubox/nccl-tests/current/.gpubox-build.json").stdout)
    assert "NVCC_GENCODE=-gencode=arch=compute_80,code=sm_80" in stamp["make"]
    run = ssh(node, "/opt/gpubox/nccl-tests/current/all_reduce_perf", check=False)
    assert "gpubox stand-in for nccl-tests" in run.stdout
    assert run.returncode != 0 and "CUDA failure" in run.stdout  # no GPU in the container


def test_first_deploy_says_the_node_must_reboot_and_leaves_the_lock_for_that_boot(node):
    output = node.first_deploy.stdout + node.first_deploy.stderr
    if os.environ.get("GPUBOX_TEST_KEEP_NODE") and "reboot the node" not in output:
        pytest.skip("the kept node was deployed before (GPUBOX_TEST_KEEP_NODE)")
    assert "the NVIDIA driver changed: reboot the node to load it" in output
    assert "software.reboot is off, so gpubox will not" in output


def test_first_deploy_installs_gpubox_and_the_clock_unit(node):
    version = ssh(node, "/opt/gpubox/venv/bin/gpubox --version").stdout
    from gpubox import __version__

    assert version.strip() == f"gpubox {__version__}"
    assert ssh(node, "systemctl is-enabled gpubox-clocks").stdout.strip() == "enabled"
    assert ssh(node, "systemctl is-active gpubox-clocks").stdout.strip() == "active"
    unit = ssh(node, "cat /etc/systemd/system/gpubox-clocks.service").stdout
    assert "nvidia-smi -lgc 1140,1140" in unit and "After=nvidia-persistenced.service" in unit
    shown = ssh(node, "/opt/gpubox/venv/bin/gpubox clocks show").stdout
    assert shown.count("SM 1140 MHz") == 4, shown


def test_manifest_records_versions_hashes_and_the_spec(node):
    doc = json.loads(ssh(node, "cat /etc/gpubox/manifest.json").stdout)
    assert doc["spec"]["software"]["driver_version"] == "550.163.01"
    assert doc["packages"]["nvidia-driver"]["matches"] is True
    (tarball,) = [d for d in doc["downloads"] if "nccl-tests" in d["path"]]
    assert tarball["found_sha256"] == tarball["sha256"]
    assert all(b["binaries"] for b in doc["builds"])


def test_second_run_changes_nothing(node, deploy_env):
    result = deploy(deploy_env, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert changed_ops(result) == []


def test_quick_checks_pass_after_deploy_and_after_a_reboot(node, deploy_env, tmp_path):
    rc, results = run_checks(deploy_env, results=tmp_path / "before.json")
    assert rc == 0 and not failed_ids(results), failed_ids(results)
    target.reboot(node.name)
    assert ssh(node, "cat /run/gpubox-sim/* 2>/dev/null | head -1", check=False).stdout  # re-locked
    rc, results = run_checks(deploy_env, results=tmp_path / "after.json")
    assert rc == 0 and not failed_ids(results), failed_ids(results)
    assert results["counts"]["passed"] >= 42


def test_changing_one_version_changes_only_what_depends_on_it(node, deploy_env):
    other = Server(version="0.0.0-standin2")
    try:
        result = deploy({**deploy_env, **other.env()}, "--json")
        assert result.returncode == 0, result.stdout[-3000:]
        changed = set(changed_ops(result))
    finally:
        other.stop()
    assert changed == {
        "nccl-tests | nccl-tests 0.0.0-standin2 source (sha256-verified)",
        "nccl-tests | build nccl-tests 0.0.0-standin2 for -gencode=arch=compute_80,code=sm_80",
        "nccl-tests | nccl-tests: current version",
        "gpubox node spec | node spec /etc/gpubox/spec.json",
        "install manifest | manifest inputs",
        "install manifest | write /etc/gpubox/manifest.json",
    }, changed
    back = deploy(deploy_env, "--json")  # back to the session's version: no rebuild needed
    assert back.returncode == 0
    assert not any("build" in op for op in changed_ops(back)), changed_ops(back)


def test_a_deploy_killed_midway_converges_on_the_next_run(node, deploy_env):
    other = Server(version="0.0.0-standin3")
    env = {**deploy_env, **other.env()}
    try:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/pyinfra"), "-y", "inventories/sim.py", "deploy.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in proc.stdout:  # kill it while nvcc builds the new release
            if "Starting operation: nccl-tests | build nccl-tests 0.0.0-standin3" in line:
                time.sleep(2)
                proc.kill()
                break
        proc.wait(timeout=60)
        assert proc.returncode != 0, "the deploy finished before it could be killed"
        half = ssh(node, "ls -d /opt/gpubox/nccl-tests/*", check=False).stdout
        assert "0.0.0-standin3/" not in half  # only a stage folder, never a half-built release
        again = deploy(env)
        assert again.returncode == 0, again.stdout[-3000:]
        settled = deploy(env, "--json")
        assert changed_ops(settled) == []
        assert (
            ssh(node, "test -x /opt/gpubox/nccl-tests/0.0.0-standin3/all_reduce_perf").returncode
            == 0
        )
    finally:
        other.stop()
        assert deploy(deploy_env).returncode == 0


def test_a_wrong_checksum_stops_the_deploy_showing_both_hashes(node, deploy_env):
    other = Server(version="0.0.0-standin-bad")
    wrong = "0" * 64
    try:
        result = deploy({**deploy_env, **other.env(sha256=wrong)})
    finally:
        other.stop()
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"expected {wrong}, got {other.sha256}" in output, output[-3000:]
    assert "nothing was installed from it" in output
    leftovers = ssh(node, "ls /opt/gpubox/src/", check=False).stdout
    assert "standin-bad" not in leftovers, leftovers
    spec = json.loads(ssh(node, "cat /etc/gpubox/spec.json").stdout)
    assert spec["software"]["nccl_tests"]["version"] == "0.0.0-standin"  # unchanged


def test_spec_drift_fails_the_manifest_check(node, deploy_env, tmp_path):
    """The inventory now pins another nccl-tests release than the node has: say so."""
    other = Server(version="0.0.0-standin4")
    try:
        env = {**deploy_env, **other.env()}
        rc, results = run_checks(env, results=tmp_path / "drift.json")
    finally:
        other.stop()
    assert failed_ids(results) == {f"test_manifest[{NODE_NAME}]"}
    (entry,) = [c for c in results["checks"] if c["id"].endswith(f"test_manifest[{NODE_NAME}]")]
    assert "software.nccl_tests.version" in entry["message"]
    assert "re-run the deploy" in entry["message"]


def test_the_node_venv_holds_only_what_runs_on_the_node(node):
    out = ssh(node, "/opt/gpubox/venv/bin/python -m pip list --format=freeze").stdout
    installed = {line.split("==")[0].lower() for line in out.split()}
    assert {"gpubox", "nvidia-ml-py", "pytest", "pytest-testinfra"} <= installed
    # jinja2 runs on the node too (`gpubox report`, see pyproject.toml), so it is not here.
    controller = {"pyinfra", "paramiko", "pytest-xdist", "gevent", "cryptography"}
    assert not installed & controller, installed & controller


def test_the_node_venv_and_the_checks_hold_compiled_bytecode(node):
    """Written by the deploy, so no start on the node compiles gpubox or the checks again."""
    found = ssh(
        node,
        "ls /opt/gpubox/venv/lib/python3*/site-packages/gpubox/__pycache__/ "
        "/opt/gpubox/checks/__pycache__/",
    ).stdout
    assert "probe.cpython-" in found and "cli.cpython-" in found, found
    assert "test_quick.cpython-" in found and "-pytest-" in found, found  # as pytest rewrites it


def test_a_dry_run_without_uv_says_so_in_one_line(node, deploy_env):
    env = {**deploy_env, "PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin"}
    result = deploy(env, "--dry")
    said = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0
    assert "Traceback" not in "\n".join(said)
    assert "builds gpubox's wheel for the node with `uv`, which is not on PATH" in said[-1], said[
        -5:
    ]
