"""``gpubox bench run``, ``gpubox calibrate`` and ``pytest checks/ -m bandwidth`` on "this node":
a local spec whose tools are the benchmark replay, and the simulated NVML library for the probe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox.baseline import Baseline, BaselineError, build
from gpubox.bench import tier
from gpubox.sim import nvml
from gpubox.spec import NodeSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def node(tmp_path, make_spec, resolved):
    """``node(scenario, **spec changes)`` -> (spec file, environment) of a replayed local node."""

    def make(name="pg199-quad-debian13", **changes):
        spec = make_spec(**changes)
        data = {"host": "home", **spec.to_data()}
        data["bench"]["log_dir"] = str(tmp_path / "logs")
        path = tmp_path / "spec.json"
        path.write_text(json.dumps(data))
        env = {
            **os.environ,
            "GPUBOX_SIM_SCENARIO": str(resolved(name)),
            "GPUBOX_SIM_STATE_DIR": str(tmp_path / "state"),
            "GPUBOX_NVML_LIBRARY": nvml.library_path(),
        }
        return path, env

    return make


def gpubox(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "gpubox", *args], env=env, capture_output=True, text=True, cwd=ROOT
    )


def test_bench_run_json_on_this_node(node, tmp_path):
    spec, env = node()
    done = gpubox(env, "bench", "run", "--spec", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["schema"] == "gpubox.bench/1" and doc["host"] == "home"
    assert len(doc["runs"]) == 7 and all(r["ok"] for r in doc["runs"])
    assert doc["log_dir"].startswith(str(tmp_path / "logs"))
    assert "[bandwidthTest[gpu0]] Result = PASS" in done.stderr  # progress, streamed
    assert sorted(os.listdir(doc["log_dir"]))[0] == "all_reduce_perf-gpu0+gpu1+gpu2+gpu3-32M.log"


def test_bench_run_summary_exit_status_and_tools_filter(node):
    spec, env = node("fault-bw-crashed")
    done = gpubox(env, "bench", "run", "--spec", str(spec), "--quiet", "--tools", "nccl-tests")
    assert done.returncode == 1 and done.stderr == ""
    assert "all_reduce_perf[gpu0+gpu1]@32M: ok" in done.stdout
    assert "all_reduce_perf[gpu0+gpu1+gpu2+gpu3]@32M: FAILED" in done.stdout
    assert "exit 3: testNcclError: an NCCL call failed" in done.stdout
    assert "bandwidthTest" not in done.stdout


def test_bench_run_dry_run_and_usage_errors(node, tmp_path):
    spec, env = node()
    done = gpubox(
        env, "bench", "run", "--spec", str(spec), "--dry-run", "--tools", "p2pBandwidthLatencyTest"
    )
    assert done.returncode == 0
    assert done.stdout == (
        "p2pBandwidthLatencyTest: CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0,1,2,3 "
        f"{Path(json.loads(spec.read_text())['bench']['tools_dir'])}/p2pBandwidthLatencyTest\n"
    )
    bad = gpubox(env, "bench", "run", "--spec", str(spec), "--tools", "gpu-burn")
    assert bad.returncode == 2 and "unknown tool(s) gpu-burn" in bad.stderr
    missing = gpubox(env, "bench", "run", "--spec", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "no node spec at" in missing.stderr


def test_unwritable_log_root_falls_back_to_a_temporary_folder(spec, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GPUBOX_SIM_SCENARIO", "/nonexistent")
    doc = tier.run_tier(spec, ["bandwidthTest"], log_root=str(blocker / "logs"), progress=None)
    assert doc["warnings"][0].startswith(f"cannot write {blocker / 'logs'}")
    assert "gpubox-bench-" in doc["log_dir"]


def test_old_run_folders_are_pruned(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("GPUBOX_SIM_SCENARIO", "/nonexistent")
    for i in range(25):
        (tmp_path / f"20200101T0000{i:02d}Z-1").mkdir()
    (tmp_path / "keep-me").mkdir()
    tier.run_tier(spec, ["p2pBandwidthLatencyTest"], log_root=str(tmp_path), progress=None)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == tier.KEEP_RUNS + 1 and "keep-me" in left
    assert "20200101T000000Z-1" not in left


# ---- pytest checks/ -m bandwidth on this node -------------------------------------------------


def run_checks(env, spec, tmp_path):
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "checks/", "-m", "bandwidth", "--node-spec", str(spec),
         "-p", "no:cacheprovider", "-q", "--results-json", str(results),
         "--junitxml", str(tmp_path / "junit.xml")],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return done, json.loads(results.read_text())


def test_bandwidth_checks_on_this_node_pass_warn_and_keep_the_bench_document(
    node, make_spec, tmp_path
):
    floors = {
        **make_spec().to_data()["floors"],
        "h2d_gbps": {"gpu0": 12.9, "gpu1": 12.9, "default": 1},
    }
    spec, env = node(floors=floors)
    done, results = run_checks(env, spec, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:]
    assert results["counts"] == {"passed": 16}
    warned = [c for c in results["checks"] if c["verdict"]["level"] == "warn"]
    assert {c["id"].split("::")[-1] for c in warned} == {"test_h2d[gpu0]", "test_h2d[gpu1]"}
    assert "WARN test_h2d[gpu0]: home gpu0 (04:00.0): host-to-device" in done.stdout
    assert "GpuboxWarning" in done.stdout
    assert len(results["hosts"]["home"]["bench"]["runs"]) == 7


def test_bandwidth_checks_on_this_node_fail_a_fault(node, tmp_path):
    spec, env = node("fault-bw-slow-pair")
    done, results = run_checks(env, spec, tmp_path)
    assert done.returncode == 1
    failed = {c["id"].split("::")[-1] for c in results["checks"] if c["outcome"] == "failed"}
    assert failed == {"test_p2p_bandwidth[gpu0-gpu1]"}
    assert "FAIL test_p2p_bandwidth[gpu0-gpu1]: home gpu0 (04:00.0) <-> gpu1" in done.stdout


def test_a_broken_baseline_fails_the_bandwidth_checks_with_its_reason(node, tmp_path):
    (tmp_path / "b.json").write_text('{"schema": "gpubox.baseline/1", "hosts": {"other": {}}}')
    spec, env = node(bench={"baseline": str(tmp_path / "b.json")})
    done, results = run_checks(env, spec, tmp_path)
    assert done.returncode == 1
    assert f"{tmp_path / 'b.json'}: no baseline for host 'home' (has: other)" in done.stdout


# ---- gpubox calibrate -----------------------------------------------------------------------


def test_calibrate_on_this_node_writes_medians_and_floors(node, tmp_path):
    spec, env = node()
    out = tmp_path / "baseline.json"
    done = gpubox(env, "calibrate", "--spec", str(spec), "--runs", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "run 2/2 on home" in done.stderr
    doc = json.loads(out.read_text())
    entry = doc["hosts"]["home"]
    assert (entry["runs"], entry["margin"], len(entry["measurements"])) == (2, 0.15, 16)
    h2d = entry["measurements"]["h2d[gpu0]"]
    assert (h2d["median"], h2d["floor"], h2d["samples"]) == (13.1, 11.135, [13.1, 13.1])
    assert entry["measurements"]["p2p[gpu2-gpu3]"]["median"] == 1.98
    assert entry["measurements"]["allreduce[gpu0+gpu1]@32M"]["median"] == 5.62
    assert "h2d[gpu0]" in done.stdout and "explicit spec floor" in done.stdout
    # the spec names the baseline: the next calibration reports drift against it
    spec, env = node("fault-bw-gpu0-x4-slot", bench={"baseline": str(out)})
    again = gpubox(
        env, "calibrate", "--spec", str(spec), "--runs", "1", "--out", str(tmp_path / "2.json")
    )
    assert again.returncode == 0
    assert "-74.8 % vs 13.1" in again.stdout
    # and the checks report it
    done, results = run_checks(env, spec, tmp_path)
    by_id = {c["id"].split("::")[-1]: c["message"] for c in results["checks"]}
    assert "baseline median 13.1 GB/s (-74.8 %)" in by_id["test_h2d[gpu0]"]
    assert "baseline median 1.21 GB/s (+0.0 %)" in by_id["test_allreduce[gpu0+gpu1+gpu2+gpu3]"]


def test_calibrate_leaves_out_what_failed_and_keeps_other_hosts(node, tmp_path):
    out = tmp_path / "baseline.json"
    out.write_text(json.dumps(build({"h2d[gpu0]": [1.0]}, 0.1, 1, "other")))
    spec, env = node("fault-bw-crashed")
    done = gpubox(env, "calibrate", "--spec", str(spec), "--runs", "1", "--out", str(out))
    assert done.returncode == 1
    assert "left out allreduce[gpu0+gpu1+gpu2+gpu3]@32M" in done.stdout
    doc = json.loads(out.read_text())
    assert set(doc["hosts"]) == {"home", "other"}
    assert "allreduce[gpu0+gpu1+gpu2+gpu3]@32M" not in doc["hosts"]["home"]["measurements"]


def test_calibrate_usage_errors(node, tmp_path):
    spec, env = node()
    assert (
        "--runs must be at least 1"
        in gpubox(env, "calibrate", "--spec", str(spec), "--runs", "0").stderr
    )
    done = gpubox(env, "calibrate", "--inventory", "inventories/home.py")
    assert done.returncode == 2 and "give --out FILE" in done.stderr


# ---- baseline files and the spec ---------------------------------------------------------------


def test_baseline_errors_name_the_file():
    with pytest.raises(BaselineError, match="b.json: not a gpubox baseline"):
        Baseline.from_text("{}", "home", "b.json")
    with pytest.raises(BaselineError, match="b.json: not valid JSON"):
        Baseline.from_text("{", "home", "b.json")
    doc = build({"h2d[gpu0]": [13.1]}, 0.15, 1, "home")
    doc["hosts"]["home"]["measurements"]["h2d[gpu0]"]["median"] = -1
    with pytest.raises(BaselineError, match=r"measurements.h2d\[gpu0\]: expected positive"):
        Baseline.from_document(doc, "home", "b.json")


def test_bench_spec_fields():
    spec = NodeSpec.from_data({"gpu_count": 2, "bench": {"transfer_size": "64M"}})
    assert spec.bench.transfer_size == 64 << 20 and spec.bench.memory == "pinned"
    with pytest.raises(SpecError, match="bench.mpirun.enabled: expected false, or `software.mpi"):
        NodeSpec.from_data({"gpu_count": 2, "bench": {"mpirun": {"enabled": True}}})
    with pytest.raises(SpecError, match="bench.tools_dir: expected an absolute path"):
        NodeSpec.from_data({"gpu_count": 2, "bench": {"tools_dir": "bin"}})
    with pytest.raises(SpecError, match="bench.nccl_binary: expected a program name"):
        NodeSpec.from_data({"gpu_count": 2, "bench": {"nccl_binary": "/x/all_reduce_perf"}})
    with pytest.raises(SpecError, match="bench.memory: expected one of pinned, pageable"):
        NodeSpec.from_data({"gpu_count": 2, "bench": {"memory": "managed"}})
