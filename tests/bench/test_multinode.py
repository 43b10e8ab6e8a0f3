"""Multi-node nccl-tests: the mpirun command line, the per-rank ``--tag-output`` facts, the
unreachable-host error, and the judging against ``floors.multinode`` (each check must fail)."""

from __future__ import annotations

import time

import pytest

from gpubox import judge_bandwidth as jb
from gpubox.bench import commands
from gpubox.bench.wrapper import ToolResult, launch_error
from gpubox.parsers import mpi, parse
from gpubox.spec import NodeSpec, SpecError

FIXTURE = "nccl-tests/allreduce-mpi-tagoutput-2rank-1xRTX5090-v2.18.0.txt"


def make_spec(hosts=("node1", "node2"), gpus=(0, 1), busbw=2.0, size="32M") -> NodeSpec:
    return NodeSpec.from_data(
        {
            "gpu_count": 2,
            "software": {"mpi": True},
            "bench": {"mpirun": {"enabled": True, "extra_args": ["--allow-run-as-root"]}},
            "floors": {
                "multinode": [
                    {"hosts": list(hosts), "gpus": list(gpus), "size": size, "busbw_gbps": busbw}
                ]
            },
        },
        host="node1",
    )


def rank_lines(layout) -> str:
    return "\n".join(
        f"[1,0]<stdout>:#  Rank {r:2d} Group  0 Pid {1000 + r:6d} on {host:>10} device "
        f"{dev:2d} [0000:0{4 + dev}:00] NVIDIA DRIVE-PG199-PROD"
        for r, (host, dev) in enumerate(layout)
    )


FOUR = [("node1", 0), ("node1", 1), ("node2", 0), ("node2", 1)]


def output(layout=FOUR, busbw="2.31", wrong="0", tail="") -> str:
    return (
        "[1,0]<stdout>:# nccl-tests version 2.17.6 nccl-headers=22203 nccl-library=22203\n"
        "[1,0]<stdout>:# nThread 1 nGpus 1 minBytes 33554432 maxBytes 33554432 step: "
        "1048576(bytes) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0\n"
        "[1,0]<stdout>:# Using devices\n" + rank_lines(layout) + "\n"
        "[1,0]<stdout>:#       size         count      type   redop    root     time   algbw"
        "   busbw  #wrong     time   algbw   busbw  #wrong\n"
        f"[1,0]<stdout>:    33554432       8388608     float     sum      -1  21788.6    1.54"
        f"    {busbw}       {wrong}  21801.2    1.54    {busbw}       {wrong}\n"
        "[1,0]<stdout>:# Out of bounds values : 0 OK\n"
        f"[1,0]<stdout>:# Avg bus bandwidth    : {busbw}\n" + tail
    )


def bench_doc(spec: NodeSpec, text: str, exit_code=0, timed_out=False) -> dict:
    """The bench document the wrapper would write for this output (same post-processing)."""
    inv = commands.plan(spec, ["nccl-tests"])[0]
    result = ToolResult(inv, exit_code=exit_code, timed_out=timed_out, log="/var/log/x.log")
    result.mpi = mpi.parse(text)
    if result.mpi["launch"]:
        result.errors.append(launch_error(inv, result.mpi["launch"]))
    else:
        result.parsed = parse("nccl-tests", text)
        result.errors.extend(result.parsed["errors"])
    if exit_code:
        result.exit_meaning = "testNcclError: an NCCL call failed"
        result.errors.append(f"exit {exit_code}: testNcclError")
    if timed_out:
        result.errors.append("timed out after 600 s (bench.mpirun.timeout_s) and was killed")
    return {"host": spec.host, "runs": [result.as_dict()]}


def judge(spec, text, **kw):
    return jb.multinode(spec, bench_doc(spec, text, **kw), spec.floors.multinode[0])


# ---- the command line ------------------------------------------------------------------------


def test_the_mpirun_command_line_has_one_rank_per_gpu_and_host():
    spec = make_spec()
    (inv,) = commands.plan(spec, ["nccl-tests"])
    assert inv.argv[:7] == ("mpirun", "-np", "4", "-H", "node1:2,node2:2", "--tag-output", "-x")
    assert "--allow-run-as-root" in inv.argv
    assert inv.argv[-13:] == (
        "/opt/gpubox/nccl-tests/current/all_reduce_perf",
        *("-b", "33554432", "-e", "33554432", "-g", "1", "-n", "20", "-w", "5", "-c", "1"),
    )
    assert inv.env["CUDA_VISIBLE_DEVICES"] == "0,1" and inv.hosts == ("node1", "node2")
    assert inv.as_dict()["ranks"] == 4


def test_mpirun_has_a_timeout_of_its_own():
    spec = NodeSpec.from_data(
        {
            "gpu_count": 2,
            "software": {"mpi": True},
            "bench": {"timeout_s": 900, "mpirun": {"enabled": True, "timeout_s": 45}},
            "floors": {
                "multinode": [{"hosts": ["a", "b"], "gpus": [0], "size": 8, "busbw_gbps": 1}]
            },
        }
    )
    assert commands.plan(spec, ["nccl-tests"])[0].timeout_s == 45


@pytest.mark.parametrize(
    ("floor", "field"),
    [
        ({"hosts": ["a"], "gpus": [0], "size": 8, "busbw_gbps": 1}, "floors.multinode[0].hosts"),
        ({"hosts": ["a", "a"], "gpus": [0], "size": 8, "busbw_gbps": 1}, "hosts"),
        ({"hosts": ["a", "b"], "gpus": [7], "size": 8, "busbw_gbps": 1}, "gpus"),
        ({"hosts": ["a", "b"], "gpus": [0], "size": 8, "busbw_gbps": 0}, "busbw_gbps"),
    ],
    ids=["one host", "a host twice", "a GPU the node lacks", "a zero floor"],
)
def test_a_broken_multinode_floor_names_the_field(floor, field):
    data = {"gpu_count": 2, "software": {"mpi": True}, "bench": {"mpirun": {"enabled": True}}}
    with pytest.raises(
        SpecError, match=rf"host 'n1': floors\.multinode\[0\]\.{field.split('.')[-1]}"
    ):
        NodeSpec.from_data({**data, "floors": {"multinode": [floor]}}, host="n1")


def test_a_multinode_floor_needs_mpirun():
    with pytest.raises(SpecError, match=r"bench\.mpirun\.enabled: expected true"):
        NodeSpec.from_data(
            {
                "floors": {
                    "multinode": [{"hosts": ["a", "b"], "gpus": [0], "size": 8, "busbw_gbps": 1}]
                },
                "gpu_count": 1,
            }  # fmt: skip
        )


# ---- per-rank facts ---------------------------------------------------------------------------


def test_the_real_tagged_fixture_keeps_its_parser_result_and_shows_both_ranks(fixture_text):
    text = fixture_text(FIXTURE)
    facts = mpi.parse(text)
    assert facts["tagged"] and facts["printed"] == [0, 1]
    assert facts["failures"] == [] and facts["launch"] is None
    parsed = parse("nccl-tests", text)
    assert [(r["rank"], r["host"]) for r in parsed["ranks"]] == [(0, "lab"), (1, "lab")]
    assert parsed["avg_busbw"] == 1.57614


def test_a_failing_rank_is_named_with_its_host():
    text = output(tail="[1,3]<stdout>:node2: Test NCCL failure common.cu:1100 'unhandled'\n"
                  "[1,3]<stdout>: .. node2 pid 123: Test failure common.cu:891\n")  # fmt: skip
    facts = mpi.parse(text)
    assert [(f["rank"], f["host"], f["pid"]) for f in facts["failures"]] == [
        (3, "node2", None),
        (3, "node2", 123),
    ]


def test_an_untagged_failure_line_is_still_read():
    facts = mpi.parse(" .. node2 pid 123: Test failure common.cu:1100\n")
    assert facts["failures"][0]["host"] == "node2" and facts["failures"][0]["rank"] is None


PRRTE_LOST = """ssh: connect to host 127.0.0.1 port 1: Connection refused
--------------------------------------------------------------------------
PRTE has lost communication with a remote daemon.

  HNP daemon   : [prterun-node1-5133@0,0] on node node1
  Remote daemon: [prterun-node1-5133@0,1] on node ghost

This is usually due to either a failure of the TCP network
connection to the node, or possibly an internal failure of
the daemon itself. We cannot recover from this failure, and
therefore will terminate the job.
--------------------------------------------------------------------------
"""
ORTE_START = """ssh: Could not resolve hostname ghost: Name or service not known
--------------------------------------------------------------------------
ORTE was unable to reliably start one or more daemons.
This usually is caused by:
--------------------------------------------------------------------------
"""


@pytest.mark.parametrize(
    ("text", "host", "reason"),
    [
        (PRRTE_LOST, "ghost", "ssh: connect to host 127.0.0.1 port 1: Connection refused"),
        (ORTE_START, "ghost", "ssh: Could not resolve hostname ghost: Name or service not known"),
        ("ssh: connect to host n9 port 22: No route to host\n", "n9", None),
        ("root@n9: Permission denied (publickey).\n", "n9", None),
    ],
    ids=["prrte lost its daemon", "orte could not start daemons", "ssh alone", "no key"],
)
def test_an_unreachable_host_is_named(text, host, reason):
    found = mpi.unreachable(text)
    assert found["host"] == host
    assert found["reason"] == (reason or text.strip())


# What Debian 13's Open MPI 5 (PRRTE) printed when rank 3 of a 4-rank job exited 3: a rank's
# failure, not a launch error (captured from tests/integration/test_mpi.py).
PRRTE_RANK_EXIT = """[1,3]<stdout>: mpib: Test NCCL failure common.cu:1100 'unhandled system error'
[1,3]<stdout>:  .. mpib pid 9600: Test failure common.cu:891
[1,0]<stdout>: # Using devices
--------------------------------------------------------------------------
prterun detected that one or more processes exited with non-zero status,
thus causing the job to be terminated. The first process to do so was:

   Process name: [prterun-mpi-844@1,3]
   Exit code:    3
--------------------------------------------------------------------------
"""


def test_a_rank_that_exits_non_zero_is_no_launch_error():
    facts = mpi.parse(PRRTE_RANK_EXIT)
    assert facts["launch"] is None
    assert {(f["rank"], f["host"]) for f in facts["failures"]} == {(3, "mpib")}
    assert facts["printed"] == [0, 3]


def test_a_silent_host_is_named_after_ssh_gives_up():
    text = "Connection timed out during banner exchange\n" + PRRTE_LOST.split("\n", 1)[1]
    found = mpi.unreachable(text)
    assert found == {"host": "ghost", "reason": "Connection timed out during banner exchange"}


def test_a_hung_mpirun_is_killed_at_its_own_timeout_naming_the_silent_ranks(tmp_path):
    from gpubox.bench import wrapper

    launcher = tmp_path / "mpirun"
    launcher.write_text("#!/bin/sh\necho '[1,0]<stdout>: # nThread 1 nGpus 1'\nexec sleep 60\n")
    launcher.chmod(0o755)
    spec = make_spec()
    inv = commands.plan(spec, ["nccl-tests"])[0]
    inv = type(inv)(**{**inv.__dict__, "argv": (str(launcher),), "launcher": str(launcher),
                       "binary": str(launcher), "timeout_s": 1.0})  # fmt: skip
    start = time.monotonic()
    result = wrapper.run(inv, log_dir=None, progress=None)
    assert time.monotonic() - start < 10
    assert result.timed_out and not result.ok
    assert result.errors[0] == (
        "timed out after 1 s (bench.mpirun.timeout_s) and was killed; ranks that printed "
        "nothing: 1, 2, 3"
    )


def test_no_launch_error_in_a_good_run(fixture_text):
    assert mpi.unreachable(fixture_text(FIXTURE)) is None
    assert mpi.unreachable(output()) is None


# ---- judging: a pass, and a failure for each check --------------------------------------------


def test_a_healthy_multinode_run_passes_and_names_every_host_and_gpu():
    verdict = judge(make_spec(), output())
    assert verdict.level == "pass", verdict.message
    assert verdict.message.startswith(
        "node1 all_reduce_perf across node1, node2 (4 ranks) [node1: gpu0 (0000:04:00), gpu1 "
        "(0000:05:00); node2: gpu0 (0000:04:00), gpu1 (0000:05:00)]: busbw at 32 MiB 2.31 GB/s"
    )


def test_busbw_below_the_multinode_floor_fails():
    verdict = judge(make_spec(busbw=3.0), output())
    assert verdict.level == "fail"
    assert "2.31 GB/s, expected at least 3 GB/s (spec floors.multinode[node1+node2:gpu0+gpu1])" in (
        verdict.message
    )
    assert "[log: /var/log/x.log]" in verdict.message


def test_a_failing_rank_fails_naming_its_rank_host_and_gpu():
    tail = (
        "[1,3]<stdout>:node2: Test NCCL failure common.cu:1100 'unhandled system error'\n"
        "[1,3]<stdout>: .. node2 pid 1003: Test failure common.cu:891\n"
    )
    text = output().split("[1,0]<stdout>:#       size")[0] + tail
    verdict = judge(make_spec(), text, exit_code=3)
    assert verdict.level == "fail"
    assert (
        "rank 3 on host node2, gpu1 (0000:05:00) failed: node2: Test NCCL failure common.cu:1100"
        in verdict.message
    )
    assert "(exit 3: testNcclError)" in verdict.message


def test_a_missing_rank_fails_naming_where_it_should_have_run():
    verdict = judge(make_spec(), output(layout=FOUR[:3]))
    assert verdict.level == "fail"
    assert "expected 4 ranks, 2 per host on node1, node2; found 3" in verdict.message
    assert "rank 3 (host node2, gpu1)" in verdict.message
    assert "host node2 ran 1 rank(s) (GPUs: gpu0 (0000:04:00)), expected 2" in verdict.message


def test_a_rank_on_a_host_outside_the_floor_fails():
    layout = [("node1", 0), ("node1", 1), ("node3", 0), ("node3", 1)]
    verdict = judge(make_spec(), output(layout=layout))
    assert verdict.level == "fail"
    assert "rank(s) on host(s) not in the floor: node3" in verdict.message


def test_wrong_data_across_nodes_fails():
    verdict = judge(make_spec(), output(wrong="12"))
    assert verdict.level == "fail" and "#wrong 12 out-of-place" in verdict.message


def test_an_unreachable_host_fails_with_one_line_naming_it():
    verdict = judge(make_spec(hosts=("node1", "ghost")), PRRTE_LOST, exit_code=1)
    assert verdict.level == "fail"
    assert "\n" not in verdict.message
    assert verdict.message.startswith(
        "node1 all_reduce_perf across node1, ghost (4 ranks): mpirun could not start the ranks "
        "on host ghost (mpirun -H node1,ghost): ssh: connect to host 127.0.0.1 port 1: "
        "Connection refused: check that this node reaches ghost by `ssh`"
    )


def test_a_timed_out_mpirun_fails():
    text = output().split("[1,0]<stdout>:#       size")[0]
    verdict = judge(make_spec(), text, timed_out=True)
    assert verdict.level == "fail" and "bench.mpirun.timeout_s" in verdict.message


def test_no_result_fails():
    text = output().split("[1,0]<stdout>:#       size")[0]
    verdict = judge(make_spec(), text)
    assert verdict.level == "fail" and "printed no result at 32 MiB" in verdict.message


def test_a_run_missing_from_the_document_fails():
    spec = make_spec()
    verdict = jb.multinode(spec, {"runs": []}, spec.floors.multinode[0])
    assert verdict.level == "fail" and verdict.message.startswith(
        "node1 node1+node2:gpu0+gpu1: no all_reduce_perf (mpirun across nodes) at 32 MiB run"
    )


# ---- the replay as nccl-tests built with MPI (what each rank runs on a simulated node) -------


def _ranks(tmp_path, scenarios: list[str], size=4, per_node=2):
    """Start the replay as ``size`` ranks the way mpirun would (its OMPI_* variables)."""
    import json
    import os
    import subprocess
    import sys

    from gpubox.sim import replay, scenario

    port = _free_port()
    procs = []
    for rank, name in enumerate(scenarios):
        path = tmp_path / f"{name}.json"
        if not path.exists():  # written once, before any rank reads it
            path.write_text(json.dumps(scenario.load(name)))
        env = {
            **os.environ,
            "OMPI_COMM_WORLD_RANK": str(rank),
            "OMPI_COMM_WORLD_SIZE": str(size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(rank % per_node),
            "CUDA_VISIBLE_DEVICES": "0,1",
            "GPUBOX_SIM_SCENARIO": str(path),
            "GPUBOX_SIM_MPI_PORT": str(port),
        }
        argv = [sys.executable, replay.__file__, "all_reduce_perf", "-b", "32M", "-e", "32M"]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True))
    return procs


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_replay_under_mpirun_prints_one_rank_line_per_rank_from_rank_0(tmp_path):
    import socket

    procs = _ranks(tmp_path, ["pg199-quad-debian13"] * 4)
    outs = [p.communicate(timeout=30)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert outs[1:] == ["", "", ""]  # only rank 0 prints, as nccl-tests does
    parsed = parse("nccl-tests", outs[0])
    host = socket.gethostname()
    assert [(r["rank"], r["host"], r["device"], r["bus_id"]) for r in parsed["ranks"]] == [
        (0, host, 0, "0000:04:00"),
        (1, host, 1, "0000:05:00"),
        (2, host, 0, "0000:04:00"),
        (3, host, 1, "0000:05:00"),
    ]
    assert parsed["ok"] and parsed["rows"][0]["oop"]["busbw"] == 2.31


def test_the_replay_fault_makes_one_rank_fail_and_rank_0_wait(tmp_path):
    procs = _ranks(tmp_path, ["pg199-quad-debian13"] * 3 + ["fault-mpi-rank-fails"])
    out3, _ = procs[3].communicate(timeout=30)
    assert procs[3].returncode == 3
    facts = mpi.parse(out3)
    assert facts["failures"][0]["line"].endswith(
        "Test NCCL failure common.cu:1100 'unhandled system error (run with NCCL_DEBUG=INFO "
        "for details) / '"
    )
    time.sleep(1)
    # the other ranks wait in "NCCL's set-up" until mpirun stops the job, as it does here
    assert [p.poll() for p in procs[:3]] == [None, None, None]
    for p in procs[:3]:
        p.kill()
    out0, _ = procs[0].communicate(timeout=10)
    for p in procs[1:3]:
        p.communicate(timeout=10)
    assert out0.count("#  Rank") == 4 and "Avg bus bandwidth" not in out0
    assert out0.endswith("NVIDIA DRIVE-PG199-PROD\n")  # whole lines, even when killed


def test_a_figure_just_above_the_multinode_floor_warns():
    verdict = judge(make_spec(busbw=2.25), output())
    assert verdict.level == "warn" and "within 5 % above the floor 2.25 GB/s" in verdict.message


def test_a_good_table_from_a_run_that_failed_still_fails():
    verdict = judge(make_spec(), output(), exit_code=3)
    assert verdict.level == "fail"
    assert "busbw 2.31 GB/s, but the run failed: exit 3: testNcclError" in verdict.message
