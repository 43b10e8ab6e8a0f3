"""A clone without ``../shared`` (issue 16): the test run ends by saying, in one line, how many
tests were skipped for want of the shared fixtures and where to put them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path, *args, fixtures):
    env = {**os.environ, "GPUBOX_FIXTURES": str(fixtures)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_last_lines_count_the_skips_and_say_where_the_fixtures_go(tmp_path):
    missing = tmp_path / "no-shared" / "fixtures"
    proc = run_pytest(tmp_path, "tests/parsers/test_gpu_fryer.py", fixtures=missing)
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = proc.stdout.strip().splitlines()
    counts = lines[-1]
    assert " passed, 7 skipped in " in counts
    assert lines[-2] == (
        "gpubox: 7 tests skipped for want of the shared fixtures (real tool output samples): "
        f"put them in {missing} (or unset GPUBOX_FIXTURES to use ../shared/fixtures)"
    )
    assert sum("for want of the shared fixtures" in line for line in lines) == 1


def test_no_line_when_nothing_was_skipped_for_them(tmp_path):
    proc = run_pytest(
        tmp_path, "tests/parsers/test_nccl_tests_pastes.py", fixtures=tmp_path / "none"
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "shared fixtures" not in proc.stdout
