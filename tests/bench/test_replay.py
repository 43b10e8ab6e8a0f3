"""The benchmark replay (a simulation input) and the scenarios' ``benchmarks`` section."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from gpubox.sim import replay, scenario
from gpubox.sim.scenario import ScenarioError

BW_ARGS = ["--device=1", "--memory=pinned", "--mode=range", "--start=33554432", "--end=33554432"]


def test_invocation_of_each_tool(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert replay.invocation("bandwidthTest", BW_ARGS) == {
        "tool": "bandwidthTest",
        "gpus": [1],
        "size": 33554432,
    }
    assert replay.invocation("bandwidthTest", ["--device", "0"])["size"] == 32000000  # quick
    assert replay.invocation("p2pBandwidthLatencyTest", [])["gpus"] is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert replay.invocation("all_reduce_perf", ["-b", "32M", "-e", "32M", "-g", "2"]) == {
        "tool": "all_reduce_perf",
        "gpus": [2, 3],
        "size": 32 * 1024 * 1024,
    }
    assert replay.invocation("all_reduce_perf", ["--minbytes=1G"])["size"] == 1024**3
    # --device counts within CUDA_VISIBLE_DEVICES
    assert replay.invocation("bandwidthTest", ["--device=1"])["gpus"] == [3]


def test_first_matching_entry_wins_and_missing_keys_match_anything():
    doc = {
        "benchmarks": {
            "a": {"tool": "all_reduce_perf", "gpus": [0, 1], "size": 8, "output": "a"},
            "b": {"tool": "all_reduce_perf", "output": "b"},
        }
    }
    call = {"tool": "all_reduce_perf", "gpus": [0, 1], "size": 8}
    assert replay.find(doc, call)[0] == "a"
    assert replay.find(doc, {**call, "size": 16})[0] == "b"
    assert replay.find(doc, {**call, "tool": "bandwidthTest"}) is None


def test_replay_prints_the_recording_and_exits_with_its_code(tools_dir, resolved):
    env = {**os.environ, "GPUBOX_SIM_SCENARIO": str(resolved("fault-bw-crashed"))}
    env["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"
    done = subprocess.run(
        [str(tools_dir / "all_reduce_perf"), "-b", "33554432", "-e", "33554432", "-g", "4"],
        env=env,
        capture_output=True,
        text=True,
    )
    recorded = scenario.load("fault-bw-crashed")["benchmarks"]
    assert done.returncode == 3
    assert done.stdout == recorded["all_reduce_perf gpu0+gpu1+gpu2+gpu3 32M"]["output"]


def test_replay_without_scenario_or_recording(tools_dir, tmp_path):
    env = {**os.environ, "GPUBOX_SIM_SCENARIO": str(tmp_path / "none.json")}
    done = subprocess.run(
        [str(tools_dir / "bandwidthTest")], env=env, capture_output=True, text=True
    )
    assert done.returncode == replay.NO_MATCH and "cannot read scenario" in done.stderr
    (tmp_path / "s.json").write_text(json.dumps({"scenario": "x", "benchmarks": {}}))
    env["GPUBOX_SIM_SCENARIO"] = str(tmp_path / "s.json")
    done = subprocess.run(
        [str(tools_dir / "bandwidthTest")], env=env, capture_output=True, text=True
    )
    assert done.returncode == replay.NO_MATCH
    assert "has no recorded output for bandwidthTest gpus=None size=32000000" in done.stderr


# ---- the scenario key ------------------------------------------------------------------------


def test_healthy_scenario_records_the_first_users_measurements():
    doc = scenario.load("pg199-quad-debian13")
    bench = doc["benchmarks"]
    assert sorted(bench) == [
        "all_reduce_perf 2 nodes x gpu0+gpu1 32M",  # not a recording: see SCENARIOS.md
        "all_reduce_perf gpu0+gpu1 32M",
        "all_reduce_perf gpu0+gpu1+gpu2+gpu3 32M",
        "bandwidthTest gpu0",
        "bandwidthTest gpu1",
        "bandwidthTest gpu2",
        "bandwidthTest gpu3",
        "p2pBandwidthLatencyTest",
    ]
    assert "   33554432\t\t\t13.1\n" in bench["bandwidthTest gpu0"]["output"]  # pg199.md: H2D 13.1
    assert "output_file" not in bench["bandwidthTest gpu0"]  # inlined at resolution
    assert scenario.diff("pg199-quad", "pg199-quad-debian13").keys() == {
        "system.cuda_driver_version",
        "system.driver_version",
        "system.nvml_version",
    }


@pytest.mark.parametrize(
    ("fault", "changed"),
    [
        ("fault-bw-gpu0-x4-slot", {"bandwidthTest gpu0", "bandwidthTest gpu1"}),
        ("fault-bw-p2p-off", {"p2pBandwidthLatencyTest"}),
        ("fault-bw-slow-pair", {"p2pBandwidthLatencyTest"}),
        ("fault-bw-wrong-data", {"all_reduce_perf gpu0+gpu1 32M", "all_reduce_perf gpu0+gpu1+gpu2+gpu3 32M"}),
        ("fault-bw-crashed", {"all_reduce_perf gpu0+gpu1+gpu2+gpu3 32M"}),
    ],
)  # fmt: skip
def test_benchmark_faults_change_only_recorded_output(fault, changed):
    diff = scenario.diff("pg199-quad-debian13", fault)
    # The x4 slot is also what sysfs shows above GPUs 0 and 1: the quick tier's test_pcie_path.
    besides = {"fault-bw-gpu0-x4-slot": {"pcie_tree.sw-a-up.width"}}.get(fault, set())
    assert {k for k in diff if not k.startswith("benchmarks.")} == besides
    assert {k.split(".")[1] for k in diff if k.startswith("benchmarks.")} == changed


def write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_set_can_replace_an_output_add_an_entry_and_change_an_exit_code(tmp_path):
    (tmp_path / "out.txt").write_text("hello\n")
    path = write(
        tmp_path / "child.json",
        {
            "extends": "pg199-quad-debian13",
            "set": {
                "benchmarks.bandwidthTest gpu0.output_file": "out.txt",
                "benchmarks.bandwidthTest gpu1.exit": 1,
                "benchmarks.extra": {"tool": "reduce_perf", "output_file": "out.txt", "seconds": 2},
            },
        },
    )
    bench = scenario.load(path)["benchmarks"]
    assert bench["bandwidthTest gpu0"]["output"] == "hello\n"
    assert bench["bandwidthTest gpu1"]["exit"] == 1
    assert bench["extra"] == {"tool": "reduce_perf", "output": "hello\n", "seconds": 2}


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ({"output": "x"}, "benchmarks.x.tool: missing"),
        ({"tool": "bandwidthTest"}, "benchmarks.x.output: missing"),
        ({"tool": "a", "output": "", "exit": 300}, "benchmarks.x.exit: expected an exit code"),
        ({"tool": "a", "output": "", "gpu": [0]}, "benchmarks.x.gpu: unknown key"),
        ({"tool": "a", "output_file": "missing.txt"}, "benchmarks.x.output_file: cannot read"),
    ],
)
def test_bad_benchmark_entries_are_errors_naming_the_key(tmp_path, entry, error):
    path = write(
        tmp_path / "child.json", {"extends": "pg199-quad-debian13", "set": {"benchmarks.x": entry}}
    )
    with pytest.raises(ScenarioError, match=error.replace("[", r"\[")):
        scenario.load(path)


def test_a_base_scenario_may_carry_benchmarks(tmp_path):
    base = json.loads((scenario.SCENARIO_DIR / "pg199-quad.json").read_text())
    base["benchmarks"] = {"only": {"tool": "bandwidthTest", "output": "x"}}
    assert scenario.load(write(tmp_path / "b.json", base))["benchmarks"] == {
        "only": {"tool": "bandwidthTest", "output": "x"}
    }
    del base["benchmarks"]
    assert scenario.load(write(tmp_path / "c.json", base))["benchmarks"] == {}
