"""The checks plugin as a user runs it: ``python -m pytest checks/`` in a child process, against
"this node" (a spec file whose NVML library is the simulated one, answering a scenario) or against
inventories whose nodes cannot be reached. Nothing here needs root or a booted node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpubox.sim import nvml, scenario

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "checks"
BUS = ("04:00.0", "05:00.0", "0F:00.0", "10:00.0")


@dataclass
class Run:
    proc: subprocess.CompletedProcess
    cwd: Path

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    def results(self, path: Path | None = None) -> dict:
        return json.loads((path or self.cwd / "results" / "checks.json").read_text())


def run_pytest(*args, cwd: Path, env=None, timeout=300) -> Run:
    """``python -m pytest ARGS`` in ``cwd`` (the results/ default lands there).

    Without ``CI``/``BUILD_NUMBER``: under them pytest stops cutting the short summary's lines to
    the terminal's width, so what the output shows would depend on where the tests run."""
    env = {k: v for k, v in (env or os.environ).items() if k not in ("CI", "BUILD_NUMBER")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(proc, cwd)


@pytest.fixture
def local_node(tmp_path):
    """``local_node(scenario="pg199-quad-debian13", **spec)`` -> (spec file, environment): this
    machine as a PG199 node, its clocks locked as the clock unit would at boot."""

    def make(name="pg199-quad-debian13", **changes):
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        for bus in BUS:
            (state / f"00000000:{bus}.gpu-locked-clocks").write_text("1140 1140\n")
        scenario_file = tmp_path / "scenario.json"
        if name is not None:
            scenario.resolve_to_file(name, scenario_file)
        spec = {
            "host": "simlocal",
            "gpus": [{"bus_id": b} for b in BUS],
            "software": {"nvml_library": str(nvml.library_path())},
            "clocks": {"graphics_mhz": 1140},
            "stress": {
                "duration_s": 4,
                "binary": str(ROOT / "gpubox" / "sim" / "burn_replay.py"),
            },
            **changes,
        }
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        env = {
            **os.environ,
            "GPUBOX_SIM_SCENARIO": str(scenario_file),
            "GPUBOX_SIM_STATE_DIR": str(state),
        }
        return tmp_path / "spec.json", env

    return make


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path
