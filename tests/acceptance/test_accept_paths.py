"""``gpubox accept`` with paths given relative to where it was started, and checks folders that
pytest would run without gpubox's plugin (issue 16: `gpubox accept --checks gpubox/checks` ran
pytest from another folder, which failed with "unrecognized arguments: --node-spec ...")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox import records
from gpubox.sim import nvml, scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(tmp_path, spec):
    """A spec file (simulated library, an existing install folder that holds no checks: pytest
    runs there) and an environment with the clock lock applied."""
    data = {"host": "node0", **spec.to_data()}
    data["software"]["nvml_library"] = str(nvml.library_path())
    data["software"]["install_dir"] = str(tmp_path / "install")
    (tmp_path / "install").mkdir()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    resolved = scenario.resolve_to_file("pg199-quad-debian13", tmp_path / "scenario.json")
    env = nvml.environment(resolved, tmp_path / "state")
    subprocess.run(
        [sys.executable, "-m", "gpubox", "clocks", "lock", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        check=True,
    )
    return spec_file, env


def accept(cwd, env, *args):
    return subprocess.run(
        [sys.executable, "-m", "gpubox", "accept", "--no-notify", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_relative_paths_are_taken_from_where_accept_was_started(tmp_path, node, boot_ids):
    spec_file, env = node
    runs = tmp_path / "runs"
    proc = accept(
        ROOT,
        env,
        "--spec",
        os.path.relpath(spec_file, ROOT),
        "--checks",
        "checks",
        "--runs-dir",
        os.path.relpath(runs, ROOT),
        "--boot-id",
        boot_ids[0],
    )
    (rec,) = records.list_records(runs)
    assert "unrecognized arguments" not in (rec.path / "logs/pytest.log").read_text()
    assert rec.meta["error"] is None, rec.meta["error"]
    assert sum(rec.meta["counts"].values()) == 54
    log = (rec.path / "logs/pytest.log").read_text().splitlines()[0]
    assert f" {ROOT / 'checks'} -m quick " in log and f"--node-spec {spec_file} " in log
    assert f"record {rec.path}" in proc.stderr


def _no_autoload(env):
    # Whether gpubox also registers its plugin as a pytest11 entry point must not matter here.
    return {**env, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def test_a_checks_folder_without_gpubox_conftest_is_refused(tmp_path, node, boot_ids):
    spec_file, env = node
    folder = tmp_path / "my-checks"
    folder.mkdir()
    (folder / "test_gpus.py").write_text("def test_nothing():\n    pass\n")
    runs = tmp_path / "runs"
    proc = accept(
        tmp_path,
        _no_autoload(env),
        *("--spec", str(spec_file), "--checks", "my-checks", "--runs-dir", str(runs)),
        *("--boot-id", boot_ids[0]),
    )
    assert proc.returncode == 2
    assert (
        f"checks folder {folder}: has no conftest.py: gpubox's pytest plugin (gpubox.checks) "
        "would not be loaded, so pytest would refuse --node-spec and --results-json"
    ) in proc.stderr
    assert "from gpubox.checks import *" in proc.stderr
    assert not runs.exists()  # refused before anything was written

    (folder / "conftest.py").write_text("import pytest\n")
    proc = accept(
        tmp_path,
        _no_autoload(env),
        *("--spec", str(spec_file), "--checks", str(folder), "--runs-dir", str(runs)),
    )
    assert proc.returncode == 2
    assert f"checks folder {folder}: has a conftest.py that does not load it" in proc.stderr


@pytest.mark.parametrize(
    "conftest",
    [
        "from gpubox.checks import *  # noqa\n",
        "import gpubox.checks\n",
        'pytest_plugins = ["gpubox.checks"]\n',
    ],
    ids=["star-import", "import", "pytest_plugins"],
)
def test_a_conftest_that_loads_the_plugin_is_accepted(tmp_path, conftest):
    from gpubox.commands.accept_cmd import check_folder

    (tmp_path / "test_x.py").write_text("")
    (tmp_path / "conftest.py").write_text(conftest)
    check_folder(str(tmp_path), "/opt/gpubox")  # no error


def test_a_folder_without_tests_or_missing_is_refused(tmp_path, node):
    spec_file, env = node
    (tmp_path / "empty").mkdir()
    proc = accept(tmp_path, env, "--spec", str(spec_file), "--checks", "empty")
    assert proc.returncode == 2
    assert f"checks folder {tmp_path / 'empty'}: no test files (test_*.py) in it" in proc.stderr
    proc = accept(tmp_path, env, "--spec", str(spec_file), "--checks", "nowhere")
    assert proc.returncode == 2
    assert f"no checks folder {tmp_path / 'nowhere'}: deploy the node first" in proc.stderr
