"""nvbandwidth output whose ``Running <test>.`` line was cut off (issue 16): the matrix and its
``SUM <test>`` line are kept, and the SUM line names the test."""

from __future__ import annotations

import pytest

from gpubox.parsers import nvbandwidth
from gpubox.parsers.common import ParseError

# The tail of `nvbandwidth` on a one-GPU H200 (v0.8, driver 580), copied from a terminal that
# had scrolled past the first test's "Running host_to_device_memcpy_ce." line.
TOP_CUT = """\
memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)
           0
 0     55.83

SUM host_to_device_memcpy_ce 55.83

Running device_to_host_memcpy_ce.
memcpy CE CPU(row) <- GPU(column) bandwidth (GB/s)
           0
 0     55.61

SUM device_to_host_memcpy_ce 55.61
"""


def test_a_matrix_without_its_running_line_is_named_by_its_sum_line():
    out = nvbandwidth.parse(TOP_CUT)
    assert out["ok"] is True
    h2d = out["tests"]["host_to_device_memcpy_ce"]
    assert (h2d["status"], h2d["sum"], h2d["matrix"], h2d["unit"]) == (
        "Passed",
        55.83,
        [[55.83]],
        "GB/s",
    )
    assert h2d["description"] == "memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)"
    assert out["tests"]["device_to_host_memcpy_ce"]["sum"] == 55.61
    assert list(out["tests"]) == ["host_to_device_memcpy_ce", "device_to_host_memcpy_ce"]
    assert out["warnings"] == [
        "line 5: no 'Running host_to_device_memcpy_ce.' line before this matrix (output cut?); "
        "its SUM line names the test"
    ]


# A run whose "Running device_to_device_bidirectional_memcpy_read_ce." line was lost between two
# tests (a paste that dropped one line): the two matrices belong to the test their SUM keys
# name (key + "_read1" / "_total"), not to the test before them.
MIDDLE_CUT = """\
nvbandwidth Version: v0.8
Built from Git version: v0.8

CUDA Runtime Version: 13000
CUDA Driver Version: 13000
Driver Version: 580.159.04

Device 0: NVIDIA H200 (00000000:00:06)
Device 1: NVIDIA H200 (00000000:00:07)

Running device_to_device_memcpy_read_ce.
memcpy CE GPU(row) -> GPU(column) bandwidth (GB/s)
           0         1
 0       N/A    389.82
 1    390.11       N/A

SUM device_to_device_memcpy_read_ce 779.93

memcpy CE GPU(row) <-> GPU(column) Read1 bandwidth (GB/s)
           0         1
 0       N/A    368.07
 1    368.22       N/A

SUM device_to_device_bidirectional_memcpy_read_ce_read1 736.29

memcpy CE GPU(row) <-> GPU(column) Total bandwidth (GB/s)
           0         1
 0       N/A    736.15
 1    736.30       N/A

SUM device_to_device_bidirectional_memcpy_read_ce_total 1472.45
"""


def test_a_matrix_cut_from_its_test_between_two_tests_goes_to_the_test_its_sum_names():
    out = nvbandwidth.parse(MIDDLE_CUT)
    read = out["tests"]["device_to_device_memcpy_read_ce"]
    assert [m["key"] for m in read["matrices"]] == ["device_to_device_memcpy_read_ce"]
    assert (read["status"], read["sum"]) == ("Passed", 779.93)
    bidir = out["tests"]["device_to_device_bidirectional_memcpy_read_ce"]
    assert [m["key"] for m in bidir["matrices"]] == [
        "device_to_device_bidirectional_memcpy_read_ce_read1",
        "device_to_device_bidirectional_memcpy_read_ce_total",
    ]
    assert (bidir["status"], bidir["sum"], bidir["matrix"][1][0]) == ("Passed", 1472.45, 736.3)
    assert out["ok"] is True
    assert len([w for w in out["warnings"] if "no 'Running" in w]) == 1


def test_a_matrix_with_neither_running_nor_sum_line_is_left_out_with_a_warning():
    out = nvbandwidth.parse(
        "nvbandwidth Version: v0.8\n\n" + TOP_CUT.replace("SUM host_to_device_memcpy_ce 55.83", "")
    )
    assert list(out["tests"]) == ["device_to_host_memcpy_ce"]
    assert out["warnings"] == [
        "line 3: a matrix ('memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)') with neither a "
        "'Running <test>.' line nor a SUM line: its test is unknown, left out"
    ]


def test_a_lone_matrix_without_a_sum_line_is_not_nvbandwidth_output_yet():
    with pytest.raises(ParseError, match=r"line 1: expected nvbandwidth output"):
        nvbandwidth.parse(TOP_CUT.split("\n\n")[0] + "\n")
