"""``gpubox parse TOOL FILE`` end to end, as a user runs it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpubox(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpubox.cli", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_fixture_file_with_its_header(fixtures_dir):
    path = fixtures_dir / "nccl-tests" / "allreduce-6xRTX4090-pcie-p2p-single-size-bytes-step.txt"
    assert path.read_text().startswith("# source:")  # the header is really there
    proc = gpubox("parse", "nccl-tests", str(path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True
    assert out["avg_busbw"] == 24.5413
    assert out["rows"][0]["oop"]["busbw"] == 24.58
    assert proc.stdout.startswith('{\n  "ok": true,')  # indent 2


def test_failure_output_still_exits_0(fixtures_dir):
    path = (
        fixtures_dir
        / "bandwidthTest"
        / "FAIL-802-system-not-yet-initialized-A100-no-fabricmanager.txt"
    )
    proc = gpubox("parse", "bandwidthTest", str(path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is False
    assert out["errors"][0] == "cudaGetDeviceProperties returned 802"


def test_stdin(fixtures_dir):
    text = (fixtures_dir / "nvbandwidth" / "v0.4-8xH100-d2d-read-ce-NA-diagonal.txt").read_text()
    proc = gpubox("parse", "nvbandwidth", "-", stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tests"]["device_to_device_memcpy_read_ce"]["sum"] == 20785.58


def test_unparseable_file_exits_2_with_one_line(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n- milk\n")
    proc = gpubox("parse", "p2pBandwidthLatencyTest", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("gpubox parse: p2pBandwidthLatencyTest: line 1: expected")
    assert "'shopping list'" in lines[0]


def test_line_numbers_count_the_header_lines(tmp_path):
    header = "# source: https://example.org\n# truncated-in-source\n"
    body = (
        "#  size count type redop root time algbw busbw #wrong time algbw busbw #wrong\n"
        "      8     2 float  sum   -1 12.25  0.00\n"
    )
    path = tmp_path / "cut.txt"
    path.write_text(header + body)
    proc = gpubox("parse", "nccl-tests", str(path))
    assert proc.returncode == 2
    assert "nccl-tests: line 4: expected a results row" in proc.stderr


def test_missing_file_exits_2(tmp_path):
    proc = gpubox("parse", "nvbandwidth", str(tmp_path / "absent.log"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("gpubox parse: cannot read")
    assert "absent.log" in proc.stderr


@pytest.mark.parametrize(
    "args", [["parse"], ["parse", "nvidia-smi", "x.log"]], ids=["no-args", "bad-tool"]
)
def test_usage_errors_exit_2(args):
    proc = gpubox(*args)
    assert proc.returncode == 2
    assert "usage: gpubox parse" in proc.stderr
