"""Fixtures every test folder may use, and the one line that says when tests were skipped for
want of the shared real-output samples.

The samples live outside the repo in ``../shared/fixtures`` (or wherever ``GPUBOX_FIXTURES``
points); tests that need them are skipped with the reason when the folder is absent, and the
end of the run says how many and where to put them (a fresh clone has no ``../shared``).
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpubox.parsers.common import strip_fixture_header
from gpubox.sim import nvml, scenario, sysfs
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[1]
HOST = "node0"

# The skip reason's first words: how the summary recognises these skips.
MISSING = "shared fixtures folder not found at"


def fixtures_root() -> Path:
    env = os.environ.get("GPUBOX_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def read_raw(path: Path) -> str:
    # newline="" keeps '\r' so the parsers see exactly what the tool printed.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        pytest.skip(f"{MISSING} {root} (set GPUBOX_FIXTURES)")
    return root


@pytest.fixture
def fixture_text(fixtures_dir: Path) -> Callable[[str], str]:
    """``fixture_text("nccl-tests/x.txt")`` -> the tool's output without the fixture header."""

    def load(relative: str) -> str:
        return strip_fixture_header(read_raw(fixtures_dir / relative))

    return load


def node_data() -> dict:
    """The simulated node's expectations (the first user's node, as inventories/sim.py has them)."""
    home = runpy.run_path(str(ROOT / "inventories/home.py"))["_pg199_node"]
    data = {k: v for k, v in home.items() if not k.startswith("ssh_") and k != "software"}
    data["software"] = {"os": "debian-13", "source": "debian", "build_kernel_modules": False}
    return data


@pytest.fixture(scope="session")
def spec() -> NodeSpec:
    return NodeSpec.from_data(node_data(), host=HOST)


@pytest.fixture(scope="session")
def snap(tmp_path_factory):
    """``snap(scenario, locked=True, tree=True)``: ``gpubox probe --json`` in a child process
    against the simulated NVML library answering the scenario (a name or a file) and the
    scenario's sysfs tree (``tree=False``: an empty sysfs, as in a VM), locked at 1140 MHz as the
    clock unit leaves the node. Cached per session."""
    cache: dict = {}
    base = tmp_path_factory.mktemp("snapshots")

    def take(name: str | Path, locked: bool = True, tree: bool = True) -> dict:
        key = (str(name), locked, tree)
        if key in cache:
            return cache[key]
        folder = base / f"{Path(str(name)).stem}-{locked}-{tree}"
        resolved = scenario.resolve_to_file(name, folder / "scenario.json")
        if tree:
            sysfs.install(scenario.load(name), folder / "sys")  # what the node's sysfs shows
        else:
            (folder / "sys").mkdir()
        env = nvml.environment(resolved, folder / "state")
        lib = str(nvml.library_path())
        gpubox = [sys.executable, "-m", "gpubox"]
        if locked:
            subprocess.run(
                [*gpubox, "clocks", "lock", "--mhz", "1140", "--library", lib, "--settle", "0"],
                env=env,
                capture_output=True,
                check=False,
            )
        out = subprocess.run(
            [*gpubox, "probe", "--json", "--library", lib, "--sysfs-root", str(folder / "sys")],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        cache[key] = json.loads(out.stdout)
        return cache[key]

    return take


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


# tryfirst on a wrapper: it wraps pytest's own summary, so this line comes after the short test
# summary (where the skips are listed one by one) and just before the final counts.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    result = yield
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if MISSING in _skip_reason(r)]
    if skipped:
        root = fixtures_root()
        how = (
            "or unset GPUBOX_FIXTURES to use ../shared/fixtures"
            if os.environ.get("GPUBOX_FIXTURES")
            else "or point GPUBOX_FIXTURES at them"
        )
        terminalreporter.write_line(
            f"gpubox: {len(skipped)} tests skipped for want of the shared fixtures (real tool "
            f"output samples): put them in {root} ({how})",
            yellow=True,
            bold=True,
        )
    return result
