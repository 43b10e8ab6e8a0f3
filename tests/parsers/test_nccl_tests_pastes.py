"""nccl-tests output the parser met on a real H200 and in public issue threads (issue 16): a run
that refused to start, old failure lines, pastes that lost the '#' of their header and footer,
and old rank lines. Each sample is written here as the tool (or the paste) printed it."""

from __future__ import annotations

import pytest

from gpubox.parsers import nccl_tests

# all_reduce_perf -g 2 on a one-GPU H200 (nccl-tests 2.17.6). nccl-tests writes the cause to
# stderr, unbuffered, so in a captured log it comes before stdout's header; the trace line is
# TESTCHECK(result) in main (common.cu:1100).
TOO_MANY_GPUS = """\
Invalid number of GPUs: 2 requested but only 1 were found.
Please check the number of processes and GPUs per process.
# nccl-tests version 2.17.6 nccl-headers=22703 nccl-library=22703
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 2 minBytes 33554432 maxBytes 33554432 step: 1048576(bytes) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
 .. vm pid 1510: Test failure common.cu:1100
"""


@pytest.mark.parametrize("order", ["stderr-first", "as-printed"])
def test_a_run_with_more_gpus_than_exist_names_the_cause(order):
    text = TOO_MANY_GPUS
    if order == "as-printed":  # the order a terminal shows (stdout line-buffered)
        lines = text.splitlines()
        text = "\n".join(lines[2:7] + lines[:2] + lines[7:]) + "\n"
    out = nccl_tests.parse(text)
    assert out["ok"] is False and out["rows"] == []
    assert "Invalid number of GPUs: 2 requested but only 1 were found." in out["errors"]
    assert "Please check the number of processes and GPUs per process." in out["errors"]
    assert ".. vm pid 1510: Test failure common.cu:1100" in out["errors"]
    assert out["errors"].index("Invalid number of GPUs: 2 requested but only 1 were found.") < (
        out["errors"].index(".. vm pid 1510: Test failure common.cu:1100")
    )
    assert not any("ignored" in w for w in out["warnings"]), out["warnings"]
    assert (out["version"], out["params"]["ngpus"]) == ("2.17.6", 2)


# nccl-tests before 2.13: NCCLCHECK printed "NCCL failure file:line 'reason'" (no host, no
# "Test"), CUDACHECK "Cuda failure ...", and the rank lines had no Group.
OLD_NCCL_FAILURE = """\
# nThread 1 nGpus 2 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 validation: 1
#
# Using devices
#   Rank  0 Pid  23961 on     node03 device  0 [0x04] Tesla P100-PCIE-16GB
#   Rank  1 Pid  23961 on     node03 device  1 [0x05] Tesla P100-PCIE-16GB
NCCL failure all_reduce.cu:95 'unhandled cuda error'
"""


def test_an_old_nccl_failure_line_is_an_error_not_ignored():
    out = nccl_tests.parse(OLD_NCCL_FAILURE)
    assert out["ok"] is False
    assert out["errors"] == ["NCCL failure all_reduce.cu:95 'unhandled cuda error'"]
    assert out["warnings"] == []
    assert [(r["rank"], r["pid"], r["bus_id"]) for r in out["ranks"]] == [
        (0, 23961, "0x04"),
        (1, 23961, "0x05"),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Cuda failure common.cu:732 'out of memory'",
        " .. node03: Test failure common.cu:1082",  # TESTCHECK before it printed the pid
        "mpirun noticed that process rank 1 with PID 0 on node node03 exited on signal 11 "
        "(Segmentation fault).",
        "./build/all_reduce_perf: error while loading shared libraries: libnccl.so.2: cannot "
        "open shared object file: No such file or directory",
    ],
    ids=["old-cuda-failure", "old-trace-without-pid", "mpirun-signal", "missing-libnccl"],
)
def test_no_failure_line_is_ever_ignored(line):
    out = nccl_tests.parse(OLD_NCCL_FAILURE.rsplit("\n", 2)[0] + "\n" + line + "\n")
    assert line.strip() in out["errors"]
    assert out["ok"] is False
    assert not any("ignored" in w for w in out["warnings"])


def test_benign_noise_stays_a_warning_or_ignored():
    text = OLD_NCCL_FAILURE.replace(
        "NCCL failure all_reduce.cu:95 'unhandled cuda error'",
        "invalid type half, defaulting to float .. \n"
        "libibverbs: Warning: couldn't load driver 'libmlx4-rdmav34.so': libmlx4-rdmav34.so: "
        "cannot open shared object file: No such file or directory\n"
        "Authorization required, but no authorization protocol specified",
    )
    out = nccl_tests.parse(text)
    assert out["errors"] == []
    assert out["warnings"][0] == "line 6: invalid type half, defaulting to float .."
    assert out["warnings"][1].startswith("line 7: libibverbs: Warning: couldn't load driver")
    assert out["warnings"][2] == (
        "line 8: ignored 'Authorization required, but no authorization protocol specified'"
    )


# An 8-GPU all_reduce pasted into an issue as Markdown: every '# ...' line became a heading,
# so the header and footer lost their '#' (and their alignment).
LOST_HASHES = """\
nThread 1 nGpus 8 minBytes 33554432 maxBytes 268435456 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
Using devices
Rank 0 Group 0 Pid 4121 on dgx01 device 0 [0x07] NVIDIA A100-SXM4-80GB
Rank 1 Group 0 Pid 4121 on dgx01 device 1 [0x0f] NVIDIA A100-SXM4-80GB
out-of-place in-place
size count type redop root time algbw busbw #wrong time algbw busbw #wrong
(B) (elements) (us) (GB/s) (GB/s) (us) (GB/s) (GB/s)
    33554432       8388608     float     sum      -1    299.1  112.19  196.33      0    298.4  112.45  196.79      0
    67108864      16777216     float     sum      -1    525.8  127.63  223.36      2    526.1  127.56  223.23      0
   134217728      33554432     float     sum      -1   1002.7  133.86  234.25      0   1001.9  133.96  234.43      0
   268435456      67108864     float     sum      -1   1942.0  138.23  241.90      0   1941.5  138.26  241.96      0
Out of bounds values : 2 FAILED
Avg bus bandwidth : 128.942
Collective test concluded: all_reduce_perf
"""


def test_header_and_footer_without_their_hash_are_read():
    out = nccl_tests.parse(LOST_HASHES)
    assert out["oob"] == {"count": 2, "ok": False}
    assert out["avg_busbw"] == 128.942
    assert out["ok"] is False  # the footer's failure and the non-zero #wrong are seen
    assert len(out["rows"]) == 4 and out["rows"][1]["oop"]["wrong"] == 2
    assert out["rows"][0]["redop"] == "sum" and out["rows"][0]["root"] == -1
    assert (out["params"]["ngpus"], out["collective"]) == (8, "all_reduce")
    assert [(r["rank"], r["host"], r["bus_id"]) for r in out["ranks"]] == [
        (0, "dgx01", "0x07"),
        (1, "dgx01", "0x0f"),
    ]
    assert not any("column header" in w or "ignored" in w for w in out["warnings"])
    assert not any("footer" in w for w in out["warnings"])


def test_a_footer_alone_without_its_hash_is_nccl_tests_output():
    out = nccl_tests.parse("Out of bounds values : 2 FAILED\nAvg bus bandwidth    : 128.942\n")
    assert out["oob"] == {"count": 2, "ok": False} and out["avg_busbw"] == 128.942
    assert out["ok"] is False


# nccl-tests 1.x (2017): rank lines without Group or Pid.
OLD_RANKS = """\
# nThread 1 nGpus 2 minBytes 8 maxBytes 8 step: 2(factor) warmup iters: 5 iters: 20 validation: 1
#
# Using devices
#   Rank  0 on     node03 device  0 [0x00] Tesla P100-PCIE-16GB
#   Rank  1 on     node03 device  1 [0x00] Tesla P100-PCIE-16GB

#                                                 out-of-place                    in-place
#      bytes             N    type      op     time  algbw  busbw      res     time  algbw  busbw      res
           8             2   float     sum    0.045   0.00   0.00    0e+00    0.043   0.00   0.00    0e+00
 Out of bounds values : 0 OK
 Avg bus bandwidth    : 0
"""


def test_old_rank_lines_are_read():
    out = nccl_tests.parse(OLD_RANKS)
    assert out["ranks"] == [
        {
            "rank": 0,
            "group": None,
            "pid": None,
            "host": "node03",
            "device": 0,
            "bus_id": "0x00",
            "name": "Tesla P100-PCIE-16GB",
        },
        {
            "rank": 1,
            "group": None,
            "pid": None,
            "host": "node03",
            "device": 1,
            "bus_id": "0x00",
            "name": "Tesla P100-PCIE-16GB",
        },
    ]
    assert not any("Rank" in w for w in out["warnings"]), out["warnings"]
    assert out["ok"] is True and out["rows"][0]["oop"]["wrong"] == 0


def test_classify_is_the_one_place_lines_are_told_apart():
    kinds = [nccl_tests.classify(line)[0] for line in LOST_HASHES.splitlines()]
    assert kinds == [
        "nthread",
        "quiet",
        "rank",
        "rank",
        "quiet",
        "header",
        "quiet",
        "row",
        "row",
        "row",
        "row",
        "oob",
        "avg",
        "collective",
    ]
