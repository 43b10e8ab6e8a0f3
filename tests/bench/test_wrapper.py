"""The subprocess wrapper, with the benchmark replay as the "binary": streaming, timeout, raw log,
exit codes, missing tools; and the command lines built from the spec (mpirun included)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from gpubox.bench import commands, wrapper
from gpubox.sim import scenario

NCCL_2_18 = """\
# nccl-tests version 2.18.2 nccl-headers=22603 nccl-library=22603
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 2 minBytes 1024 maxBytes 1024 step: 1048576(bytes) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid   4127 on pg199-node device  0 [0000:04:00] NVIDIA DRIVE-PG199-PROD
#  Rank  1 Group  0 Pid   4127 on pg199-node device  1 [0000:05:00] NVIDIA DRIVE-PG199-PROD
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)             (us)  (GB/s)  (GB/s)
        1024           256     float     sum      -1    20.10    0.05    0.05       3    20.20    0.05    0.05       3
# Out of bounds values : 2 FAILED
# Avg bus bandwidth    : 0.0508
#
# Collective test concluded: all_reduce_perf

 .. pg199-node pid 4127: Test failure common.cu:1180
"""


@pytest.fixture
def with_scenario(resolved, monkeypatch):
    """Point the replay at a scenario: a shipped name, or extra benchmark entries over healthy."""

    def use(name="pg199-quad-debian13", **entries):
        doc = scenario.load(name)
        doc["benchmarks"] = {**doc["benchmarks"], **entries}
        monkeypatch.setenv("GPUBOX_SIM_SCENARIO", str(resolved(doc)))

    return use


def test_bandwidth_test_run_is_parsed_logged_and_streamed(spec, with_scenario, tmp_path):
    with_scenario()
    lines = []
    result = wrapper.run_bandwidth_test(spec, 0, log_dir=tmp_path, progress=lines.append)
    assert result.ok and result.exit_code == 0 and result.exit_meaning == "success"
    assert [r["gbps"] for r in result.parsed["results"]] == [13.1, 13.5, 981.0]
    log = (tmp_path / "bandwidthTest-gpu0.log").read_text()
    assert result.log == str(tmp_path / "bandwidthTest-gpu0.log")
    assert log.startswith("# gpubox bench: CUDA_DEVICE_ORDER=PCI_BUS_ID ")
    assert "   33554432\t\t\t13.1\n" in log  # the raw output, byte for byte
    assert lines[0].startswith("[bandwidthTest[gpu0]] $ ")
    assert "[bandwidthTest[gpu0]] Result = PASS" in lines
    assert result.as_dict()["command"][1:3] == ["--device=0", "--memory=pinned"]


def test_timeout_kills_the_tool_and_keeps_what_it_printed(spec, with_scenario, tmp_path):
    slow = scenario.load("pg199-quad-debian13")["benchmarks"]["bandwidthTest gpu1"]
    with_scenario(**{"bandwidthTest gpu1": {**slow, "seconds": 60}})
    t0 = time.monotonic()
    result = wrapper.run_bandwidth_test(spec, 1, log_dir=tmp_path, progress=None, timeout_s=1)
    assert time.monotonic() - t0 < 10
    assert result.timed_out and not result.ok and result.exit_code < 0
    assert result.exit_meaning == "killed by SIGTERM"
    assert result.errors[0].startswith("timed out after 1 s (bench.timeout_s) and was killed")
    assert (
        (tmp_path / "bandwidthTest-gpu1.log")
        .read_text()
        .endswith("[CUDA Bandwidth Test] - Starting...\n")
    )


def test_missing_binary_names_the_deploy_task(make_spec, tmp_path):
    spec = make_spec(bench={"tools_dir": "/nonexistent", "nccl_tests_dir": "/nowhere"})
    result = wrapper.run_p2p(spec, log_dir=tmp_path, progress=None)
    assert result.exit_code is None and not result.ok
    assert result.errors == [
        "/nonexistent/p2pBandwidthLatencyTest not found: p2pBandwidthLatencyTest is installed by "
        "the deploy task `bandwidth_tools` (tasks/bandwidth_tools.py): run the deploy (`pyinfra "
        "INVENTORY deploy.py`), or point bench.tools_dir at the folder that holds it"
    ]
    nccl = wrapper.run_nccl_tests(spec, (0, 1), 1024, log_dir=tmp_path, progress=None)
    assert "deploy task `nccl_tests` (tasks/nccl_tests.py)" in nccl.errors[0]
    assert "bench.nccl_tests_dir" in nccl.errors[0]


def test_wrong_data_exit_codes_follow_the_nccl_tests_version(spec, with_scenario, tmp_path):
    entry = {
        "tool": "all_reduce_perf",
        "gpus": [0, 1],
        "size": 1024,
        "exit": 7,
        "output": NCCL_2_18,
    }
    with_scenario(**{"new": entry})
    result = wrapper.run_nccl_tests(spec, (0, 1), 1024, log_dir=tmp_path, progress=None)
    assert result.exit_code == 7 and not result.ok
    assert result.exit_meaning.startswith("testNumResults: wrong data (#wrong > 0")
    assert result.errors[0].startswith("exit 7: testNumResults")
    assert result.parsed["rows"][0]["oop"]["wrong"] == 3
    # the same code in 2.17.6 is not a data error, and 6 is
    assert wrapper.exit_meaning("nccl-tests", 7, {"version": "2.17.6"}).startswith("testNum")
    assert wrapper.exit_meaning("nccl-tests", 6, {"version": "2.18.2"}) == "testInvalidUsage"
    assert wrapper.exit_meaning("nccl-tests", 6, {"version": "2.17.6"}).startswith("testNum")
    assert wrapper.exit_meaning("nccl-tests", 1, {"version": "2.16.9"}).startswith("EXIT_FAIL")
    assert wrapper.exit_meaning("nccl-tests", 3, None) == "testNcclError: an NCCL call failed"
    assert wrapper.exit_meaning("bandwidthTest", 2).startswith("EXIT_WAIVED")
    assert wrapper.exit_meaning("bandwidthTest", -9) == "killed by SIGKILL"


def test_recorded_crash_keeps_the_tools_failure_lines(spec, with_scenario, tmp_path):
    with_scenario("fault-bw-crashed")
    result = wrapper.run_nccl_tests(spec, (0, 1, 2, 3), 32 << 20, log_dir=tmp_path, progress=None)
    assert result.exit_code == 3 and result.parsed["rows"] == []
    assert result.errors[0] == "exit 3: testNcclError: an NCCL call failed"
    assert "Test NCCL failure common.cu:1279" in result.errors[1]


def test_output_that_is_not_the_tools_is_an_error(spec, with_scenario, tmp_path):
    entry = {"tool": "p2pBandwidthLatencyTest", "exit": 0, "output": "hello\n"}
    with_scenario(**{"p2pBandwidthLatencyTest": entry})
    result = wrapper.run_p2p(spec, log_dir=tmp_path, progress=None)
    assert result.parsed is None and not result.ok
    assert result.errors[0].startswith("output not understood: p2pBandwidthLatencyTest: line 1")
    assert result.errors[1] == "it last printed: hello"


def test_a_replay_without_a_recording_says_so(spec, with_scenario, tmp_path):
    with_scenario()
    result = wrapper.run_nccl_tests(spec, (1, 2), 1024, log_dir=tmp_path, progress=None)
    assert result.exit_code == 99
    assert result.errors[1].startswith("it last printed: gpubox sim replay: scenario")
    assert "no recorded output for all_reduce_perf gpus=[1, 2] size=1024" in result.errors[1]
    assert result.errors[2] == "exit 99: failure"


def test_run_without_log_dir_keeps_no_log(spec, with_scenario):
    with_scenario()
    result = wrapper.run_bandwidth_test(spec, 2, log_dir=None, progress=None)
    assert result.ok and result.log is None


# ---- command lines -------------------------------------------------------------------------


def test_command_lines_from_the_spec(make_spec):
    spec = make_spec(
        bench={"iterations": 50, "warmup": 2, "transfer_size": "64M", "memory": "pageable"}
    )
    bw = commands.bandwidth_test(spec, 3)
    assert bw.argv[1:] == (
        "--device=3", "--memory=pageable", "--mode=range", "--start=67108864", "--end=67108864",
        "--increment=67108864", "--htod", "--dtoh", "--dtod",
    )  # fmt: skip
    assert bw.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"} and bw.size == 64 << 20
    p2p = commands.p2p(spec)
    assert p2p.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3" and p2p.argv[0].endswith(
        "/p2pBandwidthLatencyTest"
    )
    nccl = commands.nccl_tests(spec, (2, 3), 1 << 30, min_bw=1.5)
    assert nccl.argv[1:] == (
        "-b",
        "1073741824",
        "-e",
        "1073741824",
        "-g",
        "2",
        "-n",
        "50",
        "-w",
        "2",
        "-c",
        "1",
    )
    assert nccl.env == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "2,3",
        "NCCL_TESTS_MIN_BW": "1.5",
    }
    assert (
        nccl.name == "all_reduce_perf[gpu2+gpu3]@1G"
        and nccl.log_name == "all_reduce_perf-gpu2+gpu3-1G.log"
    )


def test_default_tool_folders_follow_install_dir():
    from gpubox.spec import NodeSpec

    spec = NodeSpec.from_data({"gpu_count": 2, "software": {"install_dir": "/srv/gb"}})
    assert commands.bandwidth_test(spec, 0).binary == "/srv/gb/bin/bandwidthTest"
    assert (
        commands.nccl_tests(spec, (0, 1), 8).binary == "/srv/gb/nccl-tests/current/all_reduce_perf"
    )


def test_mpirun_command_line(make_spec):
    spec = make_spec(
        software={**make_spec().to_data()["software"], "mpi": True},
        bench={
            "nccl_binary": "all_gather_perf",
            "mpirun": {
                "enabled": True,
                "command": "/usr/bin/mpirun",
                "hosts": ["node1", "node2:2"],
                "extra_args": ["--mca", "btl_tcp_if_include", "eth0"],
            },
        },
    )
    inv = commands.nccl_tests(spec, (0, 1), 32 << 20)
    assert inv.launcher == "/usr/bin/mpirun" and inv.binary.endswith("/all_gather_perf")
    assert inv.argv == (
        "/usr/bin/mpirun", "-np", "4", "-H", "node1:2,node2:2", "--tag-output",
        "-x", "CUDA_DEVICE_ORDER", "-x", "CUDA_VISIBLE_DEVICES",
        "--mca", "btl_tcp_if_include", "eth0",
        inv.binary, "-b", "33554432", "-e", "33554432", "-g", "1", "-n", "20", "-w", "5", "-c", "1",
    )  # fmt: skip
    local = make_spec(
        software={**make_spec().to_data()["software"], "mpi": True},
        bench={"mpirun": {"enabled": True}},
    )
    assert commands.nccl_tests(local, (0, 1, 2), 8).argv[:5] == (
        "mpirun",
        "-np",
        "3",
        "--tag-output",
        "-x",
    )


def test_missing_mpirun_says_how_to_get_it(make_spec, tmp_path):
    spec = make_spec(
        software={**make_spec().to_data()["software"], "mpi": True},
        bench={"mpirun": {"enabled": True, "command": "/nonexistent/mpirun"}},
    )
    result = wrapper.run_nccl_tests(spec, (0, 1), 8, log_dir=tmp_path, progress=None)
    assert "mpirun not found" in result.errors[0] and "software.mpi: true" in result.errors[0]


def test_plan_covers_the_spec_once_each(spec):
    names = [inv.name for inv in commands.plan(spec)]
    assert names == [
        "bandwidthTest[gpu0]", "bandwidthTest[gpu1]", "bandwidthTest[gpu2]", "bandwidthTest[gpu3]",
        "p2pBandwidthLatencyTest",
        "all_reduce_perf[gpu0+gpu1]@32M", "all_reduce_perf[gpu0+gpu1+gpu2+gpu3]@32M",
    ]  # fmt: skip
    assert [i.name for i in commands.plan(spec, ["nccl-tests"])] == names[-2:]
    with pytest.raises(ValueError, match="unknown tool"):
        commands.plan(spec, ["gpu-burn"])
    doubled = dataclasses.replace(spec.floors, allreduce=spec.floors.allreduce * 2)
    assert len(commands.plan(dataclasses.replace(spec, floors=doubled), ["nccl-tests"])) == 2
