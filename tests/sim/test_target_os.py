"""A simulated node's OS (``gpubox sim up --os``): recorded per target, its own cached base.

No container is booted here (tests/integration/test_cuda_repo.py boots a Debian 12 one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox.sim import target as t

ROOT = Path(__file__).resolve().parents[2]


def test_each_os_has_its_own_base_and_debian_13_keeps_its_cached_one():
    assert t.base_key() == t.base_key("debian-13")  # the existing Debian 13 cache stays valid
    assert t.base_key("debian-12") != t.base_key("debian-13")
    assert (
        t.base_tarball_path("debian-12").name == f"base-bookworm-{t.base_key('debian-12')}.tar.zst"
    )
    assert t.base_dir_path(os_release="debian-13").name.startswith("base-trixie-")
    with pytest.raises(t.SimError, match="unknown OS 'ubuntu-24.04'.*debian-13, debian-12"):
        t.base_key("ubuntu-24.04")


def _write_target(home: Path, name: str, **fields) -> None:
    state = home / name
    state.mkdir(parents=True)
    record = {"name": name, "port": 40000, "scenario": "pg199-quad-debian13", "created": "x"}
    (state / "target.json").write_text(json.dumps({**record, **fields}))


def test_the_os_is_recorded_and_a_target_made_before_that_runs_debian_13(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBOX_SIM_HOME", str(tmp_path))
    _write_target(tmp_path, "old")
    _write_target(tmp_path, "new", os="debian-12", scenario="pg199-quad-cuda-repo")
    found = {target.name: target for target in t.list_targets()}
    assert (found["old"].os, found["new"].os) == ("debian-13", "debian-12")
    assert found["new"].to_json()["os"] == "debian-12"
    listing = subprocess.run(
        [sys.executable, "-m", "gpubox.cli", "sim", "ls"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"GPUBOX_SIM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert listing[0].split()[:3] == ["NAME", "OS", "STATE"]
    assert listing[1].split()[:3] == ["new", "debian-12", "stopped"]
    assert listing[2].split()[:3] == ["old", "debian-13", "stopped"]


def test_booting_a_node_with_another_os_says_how_to_recreate_it(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBOX_SIM_HOME", str(tmp_path))
    monkeypatch.setattr(t, "check_host", lambda: None)  # no root needed: it stops before booting
    _write_target(tmp_path, "box", os="debian-12")
    with pytest.raises(
        t.SimError, match=r"runs debian-12, not debian-13: `gpubox sim down --purge box`"
    ):
        t.up("box", os_release="debian-13", progress=None)


def test_a_new_node_gets_its_os_s_healthy_scenario():
    assert t.DEFAULT_SCENARIOS == {
        "debian-13": "pg199-quad-debian13",
        "debian-12": "pg199-quad-cuda-repo",
    }
