"""Fixtures for the bandwidth tier's tests: the benchmark replay as the tools, a PG199 spec.

The replay (gpubox/sim/replay.py) stands in for bandwidthTest, p2pBandwidthLatencyTest and
nccl-tests: real subprocesses that print a scenario's recorded output, so the wrapper, parsers and
judge see exactly what they would see on the simulated node.
"""

from __future__ import annotations

import dataclasses
import json
import runpy
from pathlib import Path

import pytest

from gpubox.bench import commands, wrapper
from gpubox.sim import scenario
from gpubox.sim.target import REPLAY_TOOLS
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[2]
REPLAY = ROOT / "gpubox" / "sim" / "replay.py"
HEALTHY = "pg199-quad-debian13"


def home_data() -> dict:
    """inventories/home.py's node data without its connection."""
    node = runpy.run_path(str(ROOT / "inventories" / "home.py"))["_pg199_node"]
    return {k: v for k, v in node.items() if not k.startswith("ssh_")}


def snapshot(gen=3, width=16, p2p="OK", lost=(), widths=None) -> dict:
    """A minimal probe snapshot of the PG199 node: links, P2P status, lost GPUs."""
    buses = ["0000:04:00.0", "0000:05:00.0", "0000:0f:00.0", "0000:10:00.0"]
    gpus = []
    for i, bus in enumerate(buses):
        w = (widths or {}).get(i, width)
        gpus.append(
            {
                "index": i,
                "bus_id": bus,
                "lost": i in lost,
                "pcie": {"gen_current": gen, "width_current": w, "gen_max": 3, "width_max": 16},
            }
        )
    pairs = {f"{a}-{b}": {"read": p2p, "write": p2p} for a in range(4) for b in range(4) if a != b}
    return {"gpu_count": 4, "gpus": gpus, "p2p": pairs}


@pytest.fixture(scope="session")
def snap():
    """``snap(gen=3, width=16, p2p="OK", lost=(), widths={gpu: width})`` -> a snapshot."""
    return snapshot


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory) -> Path:
    """A folder where every tool name runs the replay."""
    folder = tmp_path_factory.mktemp("replay-bin")
    for tool in REPLAY_TOOLS:
        (folder / tool).symlink_to(REPLAY)
    return folder


@pytest.fixture(scope="session")
def make_spec(tools_dir):
    def make(**changes) -> NodeSpec:
        data = home_data()
        data["bench"] = {
            "tools_dir": str(tools_dir),
            "nccl_tests_dir": str(tools_dir),
            **changes.pop("bench", {}),
        }
        data.update(changes)
        return NodeSpec.from_data(data, host="home")

    return make


@pytest.fixture(scope="session")
def spec(make_spec) -> NodeSpec:
    return make_spec()


@pytest.fixture(scope="session")
def resolved(tmp_path_factory):
    """``resolved(name_or_doc) -> path`` of a resolved scenario file (a name, or a dict)."""
    folder = tmp_path_factory.mktemp("scenarios")

    def write(source) -> Path:
        if isinstance(source, str):
            path = folder / f"{source}.json"
            if not path.exists():
                scenario.resolve_to_file(source, path)
            return path
        path = folder / f"custom-{len(list(folder.iterdir()))}.json"
        path.write_text(json.dumps(source))
        return path

    return write


@pytest.fixture(scope="session")
def bench_doc(spec, resolved, tmp_path_factory):
    """``bench_doc(scenario)`` -> the bench document the node would print in that scenario."""
    cache: dict[str, dict] = {}
    logs = tmp_path_factory.mktemp("bench-logs")

    def make(name: str) -> dict:
        if name not in cache:
            env = {"GPUBOX_SIM_SCENARIO": str(resolved(name))}
            runs = []
            for inv in commands.plan(spec):
                inv = dataclasses.replace(inv, env={**inv.env, **env})
                runs.append(wrapper.run(inv, log_dir=logs / name, progress=None).as_dict())
            cache[name] = {"schema": "gpubox.bench/1", "host": spec.host, "runs": runs}
        return cache[name]

    return make
