"""The command line's errors and host selection, as a user meets them: one line each, quotes
intact, and one flag (``--limit``, as pyinfra's) to pick inventory hosts in every command."""

from __future__ import annotations

import subprocess
import sys

import pytest


def gpubox(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpubox", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "lab.py"
    path.write_text(
        "nodes = [\n"
        "    ('n1', {'gpus': [{'bus_id': '01:00.0'}]}),\n"
        "    ('n2', {'gpus': [{'bus_id': '02:00.0'}], 'gpu_count': '4'}),\n"
        "]\n"
    )
    return path


def test_a_bad_value_keeps_its_closing_quote(inventory):
    proc = gpubox("spec", str(inventory))
    assert proc.returncode == 2
    assert proc.stderr == "gpubox spec: host 'n2': gpu_count: expected an integer; got '4'\n"


def test_an_unknown_host_is_one_line_with_the_inventory_quoted(inventory):
    proc = gpubox("spec", str(inventory), "--limit", "n9")
    assert proc.returncode == 2
    assert proc.stderr == f"gpubox spec: host(s) n9 not in inventory {str(inventory)!r}\n"


def test_limit_selects_hosts(inventory):
    proc = gpubox("spec", str(inventory), "--limit", "n1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("n1: ok") and "n2" not in proc.stdout


@pytest.mark.parametrize("command", ["spec", "history", "report", "calibrate"])
def test_every_command_that_picks_inventory_hosts_calls_it_limit(command):
    text = gpubox(command, "--help").stdout
    assert "--limit HOST" in text
    assert "--host " not in text and "[host ...]" not in text


def test_a_long_value_is_cut_but_keeps_its_quotes(tmp_path):
    path = tmp_path / "long.py"
    path.write_text(
        f"nodes = [('n1', {{'gpus': [{{'bus_id': '01:00.0'}}], 'nvlink': {'x' * 200!r}}})]\n"
    )
    proc = gpubox("spec", str(path))
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert "\n" not in line and line.endswith("...'"), line
    assert len(line.split("got ", 1)[1]) == 80
