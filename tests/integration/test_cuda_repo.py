"""The first user's own install path, for real: ``source: cuda-repo`` on a booted Debian 12 node.

``inventories/home.py`` deploys from NVIDIA's CUDA apt repository. Here the real ``deploy.py``
runs that path with real pyinfra over SSH against a booted Debian 12 node (``gpubox sim up --os
debian-12``) whose apt, dpkg and systemd are Debian's, installing from the stand-in of NVIDIA's
``debian12/x86_64`` repository (``gpubox.sim.cuda_repo``): a signed flat repository with NVIDIA's
package names, versions and dependency shape, which also publishes what ``apt upgrade`` would be
offered (570.148.08, 575.57.08, CUDA 12.9.1, NCCL 2.27.3). Only the addresses differ from
home.py; its versions are the real ones (driver 570.124.06, CUDA 12.8.1, NCCL 2.26.2).

One node is deployed once per module and shared (every test leaves it as the first deploy did);
a second, fresh node takes the deploys that must fail before anything is applied. The session's
Debian 13 node may be running too: every deploy and check here is ``--limit``-ed to its node.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from gpubox.sim import cuda_repo, target
from gpubox.sim.testing import (
    CUDA_REPO_PORT,
    HEALTHY_CUDA_REPO,
    NODE_NAME,
    changed_ops,
    deploy,
    failed_ids,
    run_checks,
    ssh,
)

pytestmark = pytest.mark.sim

D12 = f"{NODE_NAME}-d12"  # the deployed Debian 12 node
FRESH = f"{NODE_NAME}-d12f"  # a fresh one: deploys that must stop before anything is applied
DRIVER, NEWER_BUILD, NEXT_BRANCH = "570.124.06-1", "570.148.08-1", "575.57.08-1"
PINNED = {  # home.py's pins as NVIDIA's repository spells them
    "cuda-drivers-570": DRIVER,
    "cuda-drivers": DRIVER,
    "cuda-toolkit-12-8": "12.8.1-1",
    "libnccl2": "2.26.2-1+cuda12.8",
    "libnccl-dev": "2.26.2-1+cuda12.8",
}
# The parts of the driver build that cuda-drivers-570 pulls in (with ">="), pinned by name glob.
PARTS = (
    "nvidia-driver",
    "nvidia-driver-libs",
    "nvidia-driver-bin",
    "nvidia-kernel-dkms",
    "nvidia-kernel-support",
    "firmware-nvidia-gsp",
    "libcuda1",
    "libnvidia-ml1",
    "nvidia-smi",
    "nvidia-persistenced",
    "nvidia-modprobe",
    "libnvidia-cfg1",
    "nvidia-settings",
    "xserver-xorg-video-nvidia",
)
KEYRING_DEB = "/var/cache/gpubox/cuda-keyring_1.1-1_all.deb"
SOURCES = "/etc/apt/sources.list.d/cuda-debian12-x86_64.list"
PIN_FILE = "/etc/apt/preferences.d/gpubox-nvidia.pref"
GENCODE = "-gencode=arch=compute_80,code=sm_80"


def versions(node, names) -> dict[str, str]:
    out = ssh(
        node, "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' " + " ".join(names)
    ).stdout
    found = {}
    for line in out.splitlines():
        name, version, status = line.split()
        assert status in ("ii", "hi"), f"{name} {version} is in state {status}"
        found[name] = version
    return found


def with_software(env: dict, **software) -> dict:
    """``env`` with the Debian 12 nodes' software fields overridden (GPUBOX_CUDA_REPO_SPEC)."""
    data = json.loads(env["GPUBOX_CUDA_REPO_SPEC"])
    for key, value in software.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    return {**env, "GPUBOX_CUDA_REPO_SPEC": json.dumps(data)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def repo():
    """The stand-in repository, served on CUDA_REPO_PORT (GPUBOX_CUDA_REPO_PORT)."""
    server = cuda_repo.Server(cuda_repo.build(), port=CUDA_REPO_PORT)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def env(deploy_env, repo):
    return {**deploy_env, **repo.env()}


def _boot(name, sim_home):
    existing = {t.name: t for t in target.list_targets()}
    if name in existing and existing[name].running:  # a kept node left running
        return target.reboot(name)
    return target.up(name, scenario=HEALTHY_CUDA_REPO, os_release="debian-12")


@pytest.fixture(scope="module")
def node(sim_home, env):
    """A booted Debian 12 node with the whole cuda-repo deploy applied, after the reboot the
    first deploy asks for; its first deploy's output."""
    booted = _boot(D12, sim_home)
    first = deploy(env, "--limit", D12)
    assert first.returncode == 0, f"first deploy failed:\n{first.stdout[-5000:]}\n{first.stderr}"
    if "reboot the node to load it" in first.stdout + first.stderr:
        booted = target.reboot(D12)
    booted.first_deploy = first
    yield booted
    target.down(D12, purge=not os.environ.get("GPUBOX_TEST_KEEP_NODE"))


@pytest.fixture(scope="module")
def fresh(sim_home):
    booted = target.up(FRESH, scenario=HEALTHY_CUDA_REPO, os_release="debian-12")
    yield booted
    target.down(FRESH, purge=True)


def nothing_applied(t) -> None:
    """Nothing of the cuda-repo path is on ``t``: no sources entry, keyring, pins or packages."""
    left = ssh(
        t,
        f"ls {SOURCES} {PIN_FILE} {KEYRING_DEB} {KEYRING_DEB}.part "
        "/usr/share/keyrings/cuda-archive-keyring.gpg /etc/gpubox 2>/dev/null; "
        "dpkg-query -W -f '${Package}\\n' 'cuda-*' 'nvidia-*' 2>/dev/null",
        check=False,
    ).stdout
    assert left.strip() == "", f"left on {t.name}:\n{left}"


# ---- the first deploy ----------------------------------------------------------------------


def test_the_keyring_is_sha256_verified_and_the_repository_entered_in_apt_sources(node, repo):
    found = ssh(node, f"sha256sum {KEYRING_DEB}").stdout.split()[0]
    assert found == repo.repository.keyring_sha256
    assert versions(node, ["cuda-keyring"]) == {"cuda-keyring": "1.1-1"}
    # The keyring's own entry names NVIDIA's URL; the deploy put the spec's in its place.
    assert ssh(node, f"cat {SOURCES}").stdout == (
        f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] {repo.url} /\n"
    )
    assert "developer.download.nvidia.com" not in ssh(node, "cat /etc/apt/sources.list.d/*").stdout
    # apt fetched the signed index from the repository (and verified it against the test key).
    assert f"{cuda_repo.URL_PATH}InRelease" in repo.requests
    policy = ssh(node, "apt-cache policy cuda-drivers").stdout
    assert f"*** {DRIVER} 1001" in policy and NEXT_BRANCH in policy, policy


def test_every_pinned_package_is_at_its_pin_and_held(node):
    assert versions(node, PINNED) == PINNED
    held = set(ssh(node, "apt-mark showhold").stdout.split())
    assert set(PINNED) <= held, held
    pins = ssh(node, f"cat {PIN_FILE}").stdout
    assert "Package: cuda-drivers-570\nPin: version 570.124.06-*\nPin-Priority: 1001" in pins
    assert "Package: libnccl2\nPin: version 2.26.2-*+cuda12.8\nPin-Priority: 1001" in pins


def test_every_part_of_the_driver_is_the_pinned_build_though_newer_ones_are_published(node):
    # cuda-drivers-570 asks for its parts with ">=" and 570.148.08 and 575.57.08 are published:
    # the pin file's name globs keep every part at the pinned build.
    assert versions(node, PARTS) == dict.fromkeys(PARTS, DRIVER)
    published = ssh(node, "apt-cache madison nvidia-driver libcuda1").stdout
    assert NEWER_BUILD in published and NEXT_BRANCH in published
    # No stand-in puts an NVML on the linker path: the simulated one stays the only one.
    assert "libnvidia-ml" not in ssh(node, "ldconfig -p").stdout
    assert ssh(node, "nvidia-smi", check=False).returncode == 9  # no driver loaded, as on hardware


def test_nccl_tests_bandwidth_tools_and_gpu_burn_are_built_with_the_repository_s_cuda(node):
    assert "release 12.8, V12.8.93" in ssh(node, "/usr/local/cuda-12.8/bin/nvcc --version").stdout
    stamps = {
        "nccl-tests": "/opt/gpubox/nccl-tests/current/.gpubox-build.json",
        "bandwidth tools": f"/opt/gpubox/cuda-samples/{cuda_repo.SAMPLES_VERSION}/.gpubox-build.json",
        "gpu-burn": f"/opt/gpubox/gpu-burn/{cuda_repo.GPU_BURN_VERSION}/.gpubox-build.json",
    }
    stamp = {k: json.loads(ssh(node, f"cat {path}").stdout) for k, path in stamps.items()}
    assert "CUDA_HOME=/usr/local/cuda-12.8" in stamp["nccl-tests"]["make"]
    assert stamp["nccl-tests"]["nccl"] == "2.26.2"
    assert stamp["bandwidth tools"]["gencode"] == GENCODE
    assert stamp["gpu-burn"]["make"] == [
        "CUDAPATH=/usr/local/cuda-12.8",
        "COMPUTE=80",
        "IS_JETSON=false",
    ]
    assert all(s["cuda"] == "12.8.1" for s in stamp.values())
    # Each links the repository's CUDA (and NCCL) and stops as the real tool does without a GPU.
    run = ssh(node, "/opt/gpubox/nccl-tests/current/all_reduce_perf", check=False)
    assert "NCCL version 22602" in run.stdout and "no CUDA-capable device" in run.stdout
    run = ssh(node, "/opt/gpubox/bin/bandwidthTest", check=False)
    assert run.returncode != 0 and "no CUDA-capable device is detected" in run.stdout
    run = ssh(node, "cd /opt/gpubox/bin && ./gpu_burn", check=False)
    assert run.returncode != 0 and "Couldn't init CUDA: no CUDA-capable device" in run.stderr
    assert "/opt/gpubox/gpu-burn/" in ssh(node, "readlink -f /opt/gpubox/bin/gpu_burn").stdout
    assert ssh(node, "test -s /opt/gpubox/gpu-burn/*/compare.ptx", check=False).returncode == 0


def test_the_clock_and_acceptance_units_are_enabled(node):
    for unit in ("gpubox-clocks", "gpubox-acceptance", "nvidia-persistenced"):
        assert ssh(node, f"systemctl is-enabled {unit}").stdout.strip() == "enabled", unit
    assert ssh(node, "systemctl is-active gpubox-clocks").stdout.strip() == "active"
    first = node.first_deploy.stdout + node.first_deploy.stderr
    if "reboot the node to load it" in first:  # a fresh node: the driver was just installed
        assert "software.reboot is off, so gpubox will not" in first


def test_after_the_reboot_the_quick_checks_pass_test_manifest_included(node, env, tmp_path):
    rc, results = run_checks(env, "--limit", D12, results=tmp_path / "quick.json")
    assert rc == 0 and not failed_ids(results), failed_ids(results)
    passed = {c["id"].split("::")[-1] for c in results["checks"] if c["outcome"] == "passed"}
    assert {f"test_manifest[{D12}]", f"test_driver_version[{D12}]"} <= passed, passed
    # ...and so did the acceptance run the unit made at that boot.
    history = ssh(node, "/opt/gpubox/venv/bin/gpubox history --json").stdout
    assert json.loads(history)["boots"][-1]["ok"] is True, history[-2000:]


def test_a_second_run_changes_nothing(node, env):
    result = deploy(env, "--limit", D12, "--json")
    assert result.returncode == 0, result.stdout[-3000:]
    assert changed_ops(result) == []


# ---- what an upgrade, a spec change and a killed install do --------------------------------


def test_apt_upgrade_with_newer_builds_published_moves_nothing_pinned(node, env, tmp_path):
    ssh(node, "apt-get update -q")
    # What apt would do without gpubox's pins and holds: move the driver to the next branch and
    # NCCL to the next CUDA's build. (A simulation: nothing changes.)
    unpinned = ssh(
        node,
        "mkdir -p /tmp/no-pins && apt-get -s --ignore-hold "
        "-o Dir::Etc::PreferencesParts=/tmp/no-pins upgrade",
    ).stdout
    assert f"Inst nvidia-driver [{DRIVER}] ({NEXT_BRANCH}" in unpinned, unpinned
    assert "Inst libnccl2 [2.26.2-1+cuda12.8] (2.27.3-1+cuda12.9" in unpinned, unpinned
    upgrade = ssh(node, "DEBIAN_FRONTEND=noninteractive apt-get -y upgrade")
    assert "0 upgraded" in upgrade.stdout, upgrade.stdout
    assert versions(node, PINNED) == PINNED
    assert versions(node, PARTS) == dict.fromkeys(PARTS, DRIVER)
    rc, results = run_checks(env, "--limit", D12, "-k", "manifest", results=tmp_path / "m.json")
    assert rc == 0 and [c["outcome"] for c in results["checks"]] == ["passed"], results["checks"]


def test_a_driver_change_moves_the_driver_and_what_depends_on_it(node, env):
    newer = with_software(env, driver_version="570.148.08")
    try:
        result = deploy(newer, "--limit", D12, "--json")
        assert result.returncode == 0, result.stdout[-3000:]
        assert set(changed_ops(result)) == {
            "NVIDIA driver | apt pins for the NVIDIA stack",
            "NVIDIA driver | apt update (sources or pins changed)",
            "NVIDIA driver | driver 570.148.08",
            "NVIDIA driver | say that a reboot is needed",
            "gpubox node spec | node spec /etc/gpubox/spec.json",
            "install manifest | manifest inputs",
            "install manifest | write /etc/gpubox/manifest.json",
        }, changed_ops(result)
        assert versions(node, ["cuda-drivers-570", *PARTS]) == dict.fromkeys(
            ["cuda-drivers-570", *PARTS], NEWER_BUILD
        )
    finally:  # back to home.py's build: a downgrade, every part with it
        back = deploy(env, "--limit", D12, "--json")
    assert back.returncode == 0, back.stdout[-3000:]
    assert "NVIDIA driver | driver 570.124.06" in changed_ops(back)
    assert versions(node, ["cuda-drivers-570", *PARTS]) == dict.fromkeys(
        ["cuda-drivers-570", *PARTS], DRIVER
    )


def test_a_cuda_change_moves_cuda_nccl_and_the_builds_and_nothing_else(node, env):
    # NCCL is built per CUDA release (libnccl2 X-1+cudaY.Z): CUDA 12.9 comes with NCCL 2.27.3.
    newer = with_software(env, cuda_version="12.9.1", nccl_version="2.27.3")
    try:
        result = deploy(newer, "--limit", D12, "--json")
        assert result.returncode == 0, result.stdout[-3000:]
        changed = set(changed_ops(result))
        assert changed == {
            "NVIDIA driver | apt pins for the NVIDIA stack",
            "NVIDIA driver | apt update (sources or pins changed)",
            "CUDA toolkit and NCCL | CUDA toolkit 12.9.1",
            "CUDA toolkit and NCCL | NCCL 2.27.3",
            f"nccl-tests | build nccl-tests 0.0.0-standin for {GENCODE}",
            f"bandwidth tools | build bandwidthTest and p2pBandwidthLatencyTest for {GENCODE}",
            "gpu-burn | build gpu-burn 0.0.0-standin for compute_80",
            "gpubox node spec | node spec /etc/gpubox/spec.json",
            "install manifest | manifest inputs",
            "install manifest | write /etc/gpubox/manifest.json",
        }, changed
        assert versions(node, ["cuda-toolkit-12-9", "libnccl2"]) == {
            "cuda-toolkit-12-9": "12.9.1-1",
            "libnccl2": "2.27.3-1+cuda12.9",
        }
        assert versions(node, ["cuda-drivers-570"]) == {"cuda-drivers-570": DRIVER}
        stamp = json.loads(
            ssh(node, "cat /opt/gpubox/nccl-tests/current/.gpubox-build.json").stdout
        )
        assert "CUDA_HOME=/usr/local/cuda-12.9" in stamp["make"]
    finally:
        back = deploy(env, "--limit", D12, "--json")
    assert back.returncode == 0, back.stdout[-3000:]
    assert versions(node, PINNED) == PINNED  # (test_the_deployed_node_is_still_as_pinned: settled)


def test_a_driver_install_killed_midway_converges_on_the_next_run(node, env):
    newer = with_software(env, driver_version="570.148.08")
    # Kill dpkg (SIGKILL, as an OOM kill or a power cut would stop it) once it has unpacked a
    # package and journalled it: dpkg is left "interrupted".
    killer = subprocess.Popen(
        node.ssh_command(
            "for i in $(seq 1 12000); do if ls /var/lib/dpkg/updates | grep -qE '^[0-9]+$'; then "
            "pkill -KILL -f '^/usr/bin/dpkg ' && { echo killed; exit 0; }; fi; sleep 0.01; "
            "done; echo never"
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        cut = deploy(newer, "--limit", D12)
        said, _ = killer.communicate(timeout=180)
        assert said.strip() == "killed" and cut.returncode != 0, cut.stdout[-3000:]
        assert "Sub-process /usr/bin/dpkg" in cut.stdout + cut.stderr
        # dpkg's journal holds the unfinished run: how apt tells "dpkg was interrupted, you must
        # manually run 'dpkg --configure -a'" (and refuses every install until then).
        journal = ssh(node, "ls /var/lib/dpkg/updates").stdout.split()
        assert [j for j in journal if j.isdigit()], journal
        again = deploy(newer, "--limit", D12)
        assert again.returncode == 0, again.stdout[-3000:]
        settled = deploy(newer, "--limit", D12, "--json")
        assert changed_ops(settled) == []
        assert ssh(node, "dpkg --audit").stdout.strip() == ""
        assert versions(node, ["cuda-drivers", "cuda-drivers-570", *PARTS]) == dict.fromkeys(
            ["cuda-drivers", "cuda-drivers-570", *PARTS], NEWER_BUILD
        )
    finally:
        killer.kill()
        back = deploy(env, "--limit", D12)
    assert back.returncode == 0, back.stdout[-3000:]
    assert versions(node, PARTS) == dict.fromkeys(PARTS, DRIVER)


# ---- deploys that must stop before anything is applied --------------------------------------


def test_a_wrong_keyring_sha256_stops_the_deploy_before_any_source_is_added(fresh, env, repo):
    wrong = "0" * 64
    result = deploy(with_software(env, cuda_repo={"keyring": {"sha256": wrong}}), "--limit", FRESH)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    got = repo.repository.keyring_sha256
    assert f"expected {wrong}, got {got}; nothing was installed from it" in output, output[-3000:]
    nothing_applied(fresh)


def test_an_unreachable_repository_fails_naming_the_url_and_the_host(fresh, node, env):
    url = f"http://127.0.0.1:{free_port()}/compute/cuda/repos/debian12/x86_64/"
    down = with_software(env, cuda_repo={"url": url})
    result = deploy(down, "--limit", FRESH)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"host {FRESH} cannot reach the CUDA repository {url} (curl: (7)" in output, output[
        -3000:
    ]
    assert "nothing was added to apt's sources, and nothing was installed from it" in output
    nothing_applied(fresh)
    # On a deployed node the message says what an earlier deploy left, and nothing changes.
    result = deploy(down, "--limit", D12)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"host {D12} cannot reach the CUDA repository {url}" in output, output[-3000:]
    assert f"apt's sources are as an earlier deploy left them ({SOURCES}: deb " in output
    spec = json.loads(ssh(node, "cat /etc/gpubox/spec.json").stdout)
    assert spec["software"]["cuda_repo"]["url"] != url  # the node's recorded spec is as it was


def test_the_deployed_node_is_still_as_pinned(node, env):
    """The tests above left the node as the first deploy made it."""
    result = deploy(env, "--limit", D12, "--json")
    assert result.returncode == 0 and changed_ops(result) == []
    assert versions(node, PINNED) == PINNED
