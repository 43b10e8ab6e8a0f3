"""A nccl-tests run that refused to start (issue 16: all_reduce_perf -g 2 on a one-GPU H200):
replayed through the real wrapper and parser, its cause must reach the all_reduce check's
message, not only the trace line after it."""

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


def test_the_cause_is_in_the_errors_and_the_check_message(spec, tmp_path):
    fault = tmp_path / "fault-nccl-too-many-gpus.json"
    fault.write_text(
        json.dumps(
            {
                "extends": "pg199-quad-debian13",
                "set": {
                    "benchmarks.all_reduce_perf gpu0+gpu1 32M": {
                        "tool": "all_reduce_perf",
                        "gpus": [0, 1],
                        "size": 33554432,
                        "exit": 5,
                        "output": STDOUT,
                        "stderr": STDERR,
                    }
                },
            }
        )
    )
    resolved = scenario.resolve_to_file(fault, tmp_path / "scenario.json")
    floor = spec.floors.allreduce[0]
    (inv,) = [
        i
        for i in commands.plan(spec)
        if i.tool == "nccl-tests" and tuple(i.gpus) == tuple(floor.gpus)
    ]
    inv = dataclasses.replace(inv, env={**inv.env, "GPUBOX_SIM_SCENARIO": str(resolved)})
    entry = wrapper.run(inv, log_dir=tmp_path / "logs", progress=None).as_dict()

    assert entry["exit_code"] == 5 and entry["ok"] is False
    assert CAUSE in entry["parsed"]["errors"]
    assert CAUSE in entry["errors"]
    doc = {"schema": "gpubox.bench/1", "host": spec.host, "runs": [entry]}
    verdict = jb.allreduce(spec, doc, floor)
    assert verdict.level == "fail"
    assert CAUSE in verdict.message
    assert verdict.message.index(CAUSE) < verdict.message.index("Test failure common.cu:1100")
    assert "exit 5: testNotImplemented" in verdict.message
