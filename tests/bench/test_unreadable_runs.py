"""Tool runs whose output says less than a figure (issue 16), replayed through the real wrapper
and parsers into the judge: a nccl-tests run that refused to start (all_reduce_perf -g 2 on a
one-GPU H200) must put its cause in the check's message, not only the trace line after it; a
bandwidthTest run whose tables could not be read fails its checks, naming the unread lines,
even though the tool said "Result = PASS"."""

from __future__ import annotations

import dataclasses
import json

from gpubox import judge_bandwidth as jb
from gpubox.bench import commands, wrapper
from gpubox.sim import scenario

# What nccl-tests 2.17.6 printed: stdout (the header) and stderr (the cause), exit 5
# (testNotImplemented, returned by writeDeviceReport and relayed by TESTCHECK in main).
STDOUT = """\
# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 2 minBytes 33554432 maxBytes 33554432 step: 1048576(bytes) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
 .. vm pid 1510: Test failure common.cu:1100
"""
STDERR = """\
Invalid number of GPUs: 2 requested but only 1 were found.
Please check the number of processes and GPUs per process.
"""
CAUSE = "Invalid number of GPUs: 2 requested but only 1 were found."


def replay(spec, tmp_path, name: str, entry: dict, tool: str, gpus: tuple[int, ...]) -> dict:
    """Run the planned invocation of ``tool`` on ``gpus`` against the healthy scenario with the
    benchmark entry ``name`` replaced; its entry in the bench document."""
    fault = tmp_path / "fault.json"
    fault.write_text(
        json.dumps({"extends": "pg199-quad-debian13", "set": {f"benchmarks.{name}": entry}})
    )
    resolved = scenario.resolve_to_file(fault, tmp_path / "scenario.json")
    (inv,) = [i for i in commands.plan(spec) if i.tool == tool and tuple(i.gpus) == gpus]
    inv = dataclasses.replace(inv, env={**inv.env, "GPUBOX_SIM_SCENARIO": str(resolved)})
    return wrapper.run(inv, log_dir=tmp_path / "logs", progress=None).as_dict()


def test_the_cause_is_in_the_errors_and_the_check_message(spec, tmp_path):
    floor = spec.floors.allreduce[0]
    recorded = {
        "tool": "all_reduce_perf",
        "gpus": [0, 1],
        "size": 33554432,
        "exit": 5,
        "output": STDOUT,
        "stderr": STDERR,
    }
    entry = replay(
        spec, tmp_path, "all_reduce_perf gpu0+gpu1 32M", recorded, "nccl-tests", floor.gpus
    )

    assert entry["exit_code"] == 5 and entry["ok"] is False
    assert CAUSE in entry["parsed"]["errors"]
    assert CAUSE in entry["errors"]
    doc = {"schema": "gpubox.bench/1", "host": spec.host, "runs": [entry]}
    verdict = jb.allreduce(spec, doc, floor)
    assert verdict.level == "fail"
    assert CAUSE in verdict.message
    assert verdict.message.index(CAUSE) < verdict.message.index("Test failure common.cu:1100")
    assert "exit 5: testNotImplemented" in verdict.message


# bandwidthTest on gpu0 whose column headers were lost (a wrapper that filtered lines, a
# terminal paste): the figures stand alone, and the tool still says PASS.
HEADERLESS = """\
[CUDA Bandwidth Test] - Starting...
Running on...

 Device 0: NVIDIA DRIVE-PG199-PROD
 Range Mode

 Host to Device Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432\t\t\t13.1

 Device to Host Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432\t\t\t13.5

 Device to Device Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432\t\t\t981.0

Result = PASS
"""


def test_a_pass_with_no_readable_figure_fails_the_copy_checks(spec, snap, tmp_path):
    recorded = {"tool": "bandwidthTest", "gpus": [0], "size": 33554432, "output": HEADERLESS}
    entry = replay(spec, tmp_path, "bandwidthTest gpu0", recorded, "bandwidthTest", (0,))
    assert entry["exit_code"] == 0 and entry["ok"] is False
    assert entry["parsed"]["result"] == "PASS" and entry["parsed"]["results"] == []
    doc = {"schema": "gpubox.bench/1", "host": spec.host, "runs": [entry]}
    for check in (jb.h2d, jb.d2h):
        verdict = check(spec, snap(), doc, 0)
        assert verdict.level == "fail"
        assert "no measurement could be read (the tool said Result = PASS)" in verdict.message
        assert "line 9 '33554432\\t\\t\\t13.1'" in verdict.message
