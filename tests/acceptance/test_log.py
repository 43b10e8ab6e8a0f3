"""Log lines with levels: on a terminal ``gpubox CMD: message``; under systemd each line carries
its syslog priority, so ``journalctl -p warning`` finds gpubox's warnings (the booted node proves
the journal side: tests/integration/test_acceptance.py)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from gpubox import log
from gpubox.sim import nvml, scenario


@pytest.fixture(autouse=True)
def _restore_gpubox_logger():
    logger = logging.getLogger("gpubox")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_terminal_lines_name_the_command():
    out = io.StringIO()
    log.setup("gpubox accept", stream=out, journal=False)
    logging.getLogger("gpubox.notify").warning("not delivered: %s", "HTTP 500")
    logging.getLogger("gpubox.commands.accept_cmd").debug("not shown at INFO")
    assert out.getvalue() == "gpubox accept: not delivered: HTTP 500\n"


def test_journal_lines_carry_their_priority_on_every_line():
    out = io.StringIO()
    log.setup("gpubox accept", stream=out, journal=True)
    logger = logging.getLogger("gpubox.commands.accept_cmd")
    logger.info("boot x: PASS")
    logger.warning("boot y: FAIL\nsecond line")
    logger.error("metrics: cannot write")
    assert out.getvalue().splitlines() == [
        "<6>gpubox accept: boot x: PASS",
        "<4>gpubox accept: boot y: FAIL",
        "<4>gpubox accept: second line",
        "<3>gpubox accept: metrics: cannot write",
    ]


def test_the_journal_is_recognised_by_journal_stream(tmp_path, monkeypatch):
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert log.writes_to_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not log.writes_to_journal(stream)
        monkeypatch.delenv("JOURNAL_STREAM")
        assert not log.writes_to_journal(stream)


def test_a_clock_lock_that_did_not_take_is_an_error_in_the_journal(tmp_path):
    """``gpubox clocks lock`` as the clock unit runs it, stderr being "the journal"."""
    resolved = scenario.resolve_to_file("fault-clock-lock-ignored", tmp_path / "scenario.json")
    env = nvml.environment(resolved, tmp_path / "state")
    with open(tmp_path / "stderr", "w+") as stderr:
        st = os.fstat(stderr.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.run(
            [sys.executable, "-m", "gpubox", "clocks", "lock", "--mhz", "1140"]
            + ["--library", str(nvml.library_path()), "--settle", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.seek(0)
        lines = stderr.read().splitlines()
    assert proc.returncode == 1
    assert [line[:3] for line in lines] == ["<3>"], lines
    assert lines[0].startswith("<3>gpubox clocks: gpu3: clock lock did not take")
    assert "gpu0: SM 1140 MHz" in proc.stdout  # the readings stay plain stdout (priority info)
