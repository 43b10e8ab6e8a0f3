"""The simulated node: `gpubox sim up / reboot / down / ls / scenario / ssh` end to end.

Boots real systemd-nspawn containers (needs root, systemd-container, zstd, openssh-client; the
first run builds the cached base with debootstrap, about a minute). Every target lives in a
temporary GPUBOX_SIM_HOME; the module's teardown asserts that nothing of them is left running,
mounted or listening.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from gpubox.sim import target as t

pytestmark = pytest.mark.sim

REPO = Path(__file__).resolve().parents[2]


def _can_boot() -> str | None:
    if os.geteuid() != 0:
        return "simulated nodes need root"
    try:
        t.check_tools(("systemd-nspawn", "zstd", "ssh", "ssh-keygen", "tar"))
    except t.SimError as exc:
        return str(exc)
    return None


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _nspawn_pids(path: Path) -> list[int]:
    """systemd-nspawn processes whose command line mentions ``path``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"systemd-nspawn")
            and any(str(path).encode() in a for a in argv)
        ):
            pids.append(int(entry))
    return pids


def _mounts(path: Path) -> list[str]:
    with open("/proc/mounts") as handle:
        return [line for line in handle if str(path) in line]


class Sim:
    """Runs `gpubox sim ...` as a user would, in this test session's GPUBOX_SIM_HOME."""

    def __init__(self, home: Path):
        self.home = home
        self.env = {**os.environ, "GPUBOX_SIM_HOME": str(home)}
        self.ports: set[int] = set()

    def __call__(self, *args: str, check: bool = True, env: dict | None = None, timeout=600):
        result = subprocess.run(
            [sys.executable, "-m", "gpubox.cli", "sim", *args],
            capture_output=True,
            text=True,
            env=env or self.env,
            cwd=REPO,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"gpubox sim {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def up(self, name: str, *extra: str) -> dict:
        info = json.loads(self("up", "--name", name, "--json", *extra).stdout)
        self.ports.add(info["port"])
        return info

    def ls(self) -> dict[str, dict]:
        return {entry["name"]: entry for entry in json.loads(self("ls", "--json").stdout)}

    def ssh(self, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        # Like ssh itself, `gpubox sim ssh` hands its words to the remote shell.
        return self("ssh", name, "--", command, check=check)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    reason = _can_boot()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("gpubox-sim-home")
    runner = Sim(home)
    yield runner
    # Teardown: stop and purge everything, then prove nothing is left behind.
    for name in runner.ls():
        runner("down", "--purge", name)
    assert _nspawn_pids(home) == [], "a systemd-nspawn of this session is still running"
    assert _mounts(home) == [], "a mount of this session is left"
    assert [p for p in runner.ports if _port_open(p)] == [], "a target port still listens"
    assert not [p for p in home.iterdir() if p.is_dir()], "a purged target left files"


@pytest.fixture(scope="module")
def node(sim):
    """One booted target shared by the tests of this module."""
    name = f"t{uuid.uuid4().hex[:8]}"
    info = sim.up(name)
    yield info
    sim("down", name)


# ---- a booted node ------------------------------------------------------------------------


def test_up_reports_how_to_reach_it(node):
    assert node["state"] == "running"
    assert node["scenario"] == t.DEFAULT_SCENARIO
    assert node["hosts"] == f"ssh://{node['name']}?ssh_config={node['ssh_config']}"
    assert node["host_data"] == {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": node["port"],
        "ssh_user": "root",
        "ssh_key": node["key"],
        "ssh_known_hosts_file": node["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
    }
    # The sim made the node's host keys, so it records them as a user's known_hosts would.
    known = Path(node["known_hosts"]).read_text().splitlines()
    assert [line.split()[:2] for line in known] == [
        [f"[127.0.0.1]:{node['port']}", "ssh-ed25519"],
        [f"[127.0.0.1]:{node['port']}", "ecdsa-sha2-nistp256"],
    ]
    config = Path(node["ssh_config"]).read_text()
    assert "StrictHostKeyChecking yes" in config
    assert f"UserKnownHostsFile {node['known_hosts']}" in config
    assert Path(node["key"]).is_file() and Path(node["ssh_config"]).is_file()
    inventory = json.loads((Path(node["inventory"]).parent / "inventory.json").read_text())
    assert inventory == [[node["name"], node["host_data"]]]


def test_ssh_reaches_a_booted_trixie(sim, node):
    out = sim.ssh(node["name"], "cat /etc/os-release; systemctl is-system-running; hostname").stdout
    assert "VERSION_CODENAME=trixie" in out
    lines = out.split()
    assert "running" in lines or "degraded" in lines
    assert node["name"] in lines


def test_second_up_of_a_running_target_is_refused(sim, node):
    result = sim("up", "--name", node["name"], check=False)
    assert result.returncode == 2
    assert "already running" in result.stderr


def test_library_and_scenario_in_place(sim, node):
    lib, scen = t.LIBRARY_IN_TARGET, t.SCENARIO_IN_TARGET
    out = sim.ssh(
        node["name"],
        f"test -f {lib} && head -c4 {lib} | od -c | head -1; "
        f'python3 -c \'import json; print(json.load(open("{scen}"))["scenario"])\'; '
        "ldconfig -p | grep -c libnvidia-ml || true",
    ).stdout.splitlines()
    assert "E   L   F" in out[0]
    assert out[1] == t.DEFAULT_SCENARIO
    assert out[2] == "0", "the simulated library must not be on the default linker path"


def test_simulated_nvml_answers_inside_the_node(sim, node):
    code = (
        f"import ctypes; lib = ctypes.CDLL('{t.LIBRARY_IN_TARGET}'); n = ctypes.c_uint(); "
        "print(lib.nvmlInit_v2(), lib.nvmlDeviceGetCount_v2(ctypes.byref(n)), n.value)"
    )
    out = sim.ssh(node["name"], f'python3 -c "{code}"').stdout.split()
    assert out[:2] == ["0", "0"], out
    assert int(out[2]) >= 1


def test_ls_shows_running(sim, node):
    entry = sim.ls()[node["name"]]
    assert entry["state"] == "running" and entry["port"] == node["port"]
    table = sim("ls").stdout
    row = next(line for line in table.splitlines() if line.startswith(node["name"]))
    assert "running" in row and str(node["port"]) in row


def test_scenario_switch(sim, node):
    read = (
        f'python3 -c \'import json; print(json.load(open("{t.SCENARIO_IN_TARGET}"))["scenario"])\''
    )
    sim("scenario", node["name"], "fault-gpu-missing")
    assert sim.ssh(node["name"], read).stdout.strip() == "fault-gpu-missing"
    assert sim.ls()[node["name"]]["scenario"] == "fault-gpu-missing"
    bad = sim("scenario", node["name"], "no-such-scenario", check=False)
    assert bad.returncode == 2 and "unknown scenario" in bad.stderr
    sim("scenario", node["name"], t.DEFAULT_SCENARIO)
    assert sim.ssh(node["name"], read).stdout.strip() == t.DEFAULT_SCENARIO


def test_testinfra_and_pyinfra_connect(sim, node):
    import testinfra

    host = testinfra.get_host(node["hosts"])
    assert host.system_info.codename == "trixie"
    assert host.file(t.LIBRARY_IN_TARGET).exists
    result = subprocess.run(
        [sys.executable, "-m", "pyinfra", "-y", node["inventory"], "exec", "--", "uname", "-n"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert node["name"] in result.stdout + result.stderr


def test_inventory_hosts_lists_running_targets(sim, node, monkeypatch):
    monkeypatch.setenv("GPUBOX_SIM_HOME", str(sim.home))
    hosts = dict(t.inventory_hosts())
    assert hosts[node["name"]] == node["host_data"]


def test_apt_keeps_downloads_in_the_shared_archive(sim, node):
    out = sim.ssh(
        node["name"],
        "apt-config dump | grep -i keep-downloaded; grep archives /proc/mounts | wc -l",
    ).stdout
    assert '"true"' in out
    assert out.split()[-1] != "0", "/var/cache/apt/archives is not the bind-mounted host folder"


def test_each_node_has_its_own_archive_seeded_from_and_returned_to_the_shared_cache(sim):
    """apt locks its archive folder without waiting: nodes deployed in parallel need their own."""
    from gpubox.sim import target as t

    shared = t.apt_archives_dir()
    seed = shared / f"gpubox-test-seed-{uuid.uuid4().hex[:8]}_1_all.deb"
    seed.write_bytes(b"seed")
    name, fresh = f"a{uuid.uuid4().hex[:8]}", f"gpubox-test-new-{uuid.uuid4().hex[:8]}_1_all.deb"
    try:
        info = sim.up(name)
        own = Path(info["rootfs"]).parent / "apt-archives"
        assert (own / seed.name).read_bytes() == b"seed"  # seeded from the shared cache
        mounts = sim.ssh(name, "grep ' /var/cache/apt/archives ' /proc/mounts").stdout
        assert mounts, "the node's archive folder is not bind-mounted"
        sim.ssh(name, f"echo new > /var/cache/apt/archives/{fresh}")
        assert not (shared / fresh).exists()
        sim("down", name)
        assert (shared / fresh).read_bytes() == b"new\n"  # handed back when the node stopped
    finally:
        sim("down", "--purge", name, check=False)
        for leftover in (seed, shared / fresh):
            leftover.unlink(missing_ok=True)


def test_ssh_command_convenience(sim, node):
    assert sim("ssh", node["name"], "echo", "hello").stdout.strip() == "hello"


# ---- reboot, down, boot again -------------------------------------------------------------


def test_reboot_clears_run_keeps_disk(sim):
    name = f"r{uuid.uuid4().hex[:8]}"
    first = sim.up(name)
    sim.ssh(name, "echo gone > /run/gpubox-test-marker; echo kept > /root/gpubox-test-marker")
    sim("reboot", name)
    after = sim.ls()[name]
    assert after["state"] == "running"
    assert after["port"] == first["port"], "the port must survive a reboot"
    assert after["pid"] != first["pid"]
    out = sim.ssh(
        name,
        "cat /run/gpubox-test-marker 2>/dev/null || echo absent; cat /root/gpubox-test-marker; "
        "test -d /run/gpubox-sim && echo statedir",
    ).stdout.split()
    assert out == ["absent", "kept", "statedir"]

    # down: process, mount and port are gone; a second down is fine.
    sim("down", name)
    entry = sim.ls()[name]
    assert entry["state"] == "stopped" and entry["pid"] is None
    rootfs = Path(entry["rootfs"])
    assert _nspawn_pids(rootfs) == []
    assert _mounts(rootfs) == []
    assert not _port_open(first["port"])
    assert sim("down", name).returncode == 0

    # up again boots the same disk.
    sim.up(name)
    assert sim.ssh(name, "cat /root/gpubox-test-marker").stdout.strip() == "kept"
    sim("down", name, "--purge")
    assert name not in sim.ls()
    assert not (sim.home / name).exists()


def test_taken_port_moves_on_next_up(sim):
    name = f"p{uuid.uuid4().hex[:8]}"
    first = sim.up(name)
    sim("down", name)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", first["port"]))
        blocker.listen()
        text = sim("up", "--name", name).stdout  # the text form, as a user sees it
    second = sim.ls()[name]
    sim.ports.add(second["port"])
    assert second["port"] != first["port"]
    assert f"127.0.0.1:{second['port']}" in text
    for what in ("ssh -F", "pyinfra inventory:", "testinfra --hosts:", second["hosts"]):
        assert what in text
    assert sim.ssh(name, "echo ok").stdout.strip() == "ok"
    sim("down", name, "--purge")


def test_sshd_port_collision_boots_again_on_another_port(sim, monkeypatch):
    """A port taken between picking and sshd's bind: sshd fails, up retries elsewhere."""
    monkeypatch.setenv("GPUBOX_SIM_HOME", str(sim.home))
    name = f"c{uuid.uuid4().hex[:8]}"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        real_pick = t._pick_port
        picks = iter([taken])
        monkeypatch.setattr(t, "port_free", lambda port: True)  # so up keeps `taken`
        monkeypatch.setattr(t, "_pick_port", lambda avoid: next(picks, None) or real_pick(avoid))
        target = t.up(name, progress=None)
    try:
        sim.ports.add(target.port)
        assert target.port != taken
        assert sim.ssh(name, "echo ok").stdout.strip() == "ok"
    finally:
        t.down(name, purge=True, progress=None)


def test_stale_pid_file_reads_as_stopped(sim, monkeypatch):
    name = f"s{uuid.uuid4().hex[:8]}"
    state = sim.home / name
    (state / "rootfs").mkdir(parents=True)
    record = {"name": name, "port": 1, "pid": os.getpid(), "scenario": "x", "created": "now"}
    (state / "target.json").write_text(json.dumps(record))
    assert sim.ls()[name]["state"] == "stopped"
    monkeypatch.setenv("GPUBOX_SIM_HOME", str(sim.home))
    assert name not in dict(t.inventory_hosts())
    sim("down", name, "--purge")
    assert not state.exists()


# ---- errors a user can hit ---------------------------------------------------------------


def test_unknown_scenario_is_refused_before_anything_is_made(sim):
    name = f"u{uuid.uuid4().hex[:8]}"
    result = sim("up", "--name", name, "--scenario", "no-such-scenario", check=False)
    assert result.returncode == 2
    assert "unknown scenario 'no-such-scenario'" in result.stderr
    assert t.DEFAULT_SCENARIO in result.stderr  # lists the known ones
    assert not (sim.home / name).exists()


def test_missing_host_tools_name_the_packages(sim, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {**sim.env, "PATH": str(bindir)}
    result = sim("up", "--name", "nobin", check=False, env=env)
    assert result.returncode == 2
    for package in ("systemd-container", "zstd", "openssh-client"):
        assert package in result.stderr
    assert result.stderr.count("\n") == 1, "one line, no traceback"


def test_check_tools_and_root():
    with pytest.raises(t.SimError, match="need root"):
        t.check_root(euid=1000)
    t.check_root(euid=0)
    with pytest.raises(t.SimError) as err:
        t.check_tools(path="/nonexistent")
    for package in ("debootstrap", "systemd-container", "zstd", "openssh-client"):
        assert package in str(err.value)
    with pytest.raises(t.SimError, match="debootstrap"):
        t.check_host(euid=0, path="/nonexistent", tools=("debootstrap",))


def test_bad_names_are_refused():
    for bad in ("", "Upper", "a/b", "-x", "x" * 40):
        with pytest.raises(t.SimError, match="invalid target name"):
            t.validate_name(bad)


def test_debootstrap_failure_explains_the_archive(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "debootstrap").write_text(
        "#!/bin/sh\necho 'E: Failed getting release file http://deb.debian.org/...'\nexit 1\n"
    )
    (fake / "debootstrap").chmod(0o755)
    for tool in ("zstd", "tar"):
        found = shutil.which(tool)
        if found:
            (fake / tool).symlink_to(found)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("GPUBOX_SIM_CACHE", str(tmp_path / "cache"))
    with pytest.raises(t.SimError) as err:
        t.ensure_base(progress=None)
    message = str(err.value)
    assert "must be reachable" in message and "Failed getting release file" in message
    assert not list((tmp_path / "cache").glob("base-*")), "a failed build left a half cache"
    assert not list((tmp_path / "cache").glob("build-*"))


def test_killed_base_build_leaves_no_half_cache(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "debootstrap").write_text('#!/bin/sh\nmkdir -p "$5"/etc\nexec sleep 60\n')
    (fake / "debootstrap").chmod(0o755)
    for tool in ("zstd", "tar"):
        found = shutil.which(tool)
        if found:
            (fake / tool).symlink_to(found)
    cache = tmp_path / "cache"
    env = {**os.environ, "PATH": f"{fake}:{os.environ.get('PATH', '')}"}
    env["GPUBOX_SIM_CACHE"] = str(cache)
    build = subprocess.Popen(
        [sys.executable, "-c", "from gpubox.sim import target; target.ensure_base(progress=None)"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not list(cache.glob("build-*/root/etc")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(cache.glob("build-*")), "the build never started"
    finally:
        os.killpg(build.pid, signal.SIGKILL)  # python and its debootstrap, mid-build
        build.wait()
    assert not list(cache.glob("base-*")), "a killed build left a (half) base"
    # The next build clears the leftovers first (this one fails fast: archive unreachable).
    (fake / "debootstrap").write_text("#!/bin/sh\necho 'E: unreachable'\nexit 1\n")
    run = subprocess.run(
        [sys.executable, "-c", "from gpubox.sim import target; target.ensure_base(progress=None)"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "must be reachable" in run.stderr
    assert not list(cache.glob("build-*")) and not list(cache.glob("base-*"))
