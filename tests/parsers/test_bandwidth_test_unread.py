"""bandwidthTest output whose tables the parser could not read (issue 16): "Result = PASS" alone
never makes a run ok, and the lines that were not understood are named."""

from __future__ import annotations

from gpubox.parsers import bandwidth_test

# A range-mode run on one H200 as it was pasted into an issue: the column header under each
# "PINNED Memory Transfers" line was lost, so the figures stand alone.
NO_TABLE_HEADERS = """\
[CUDA Bandwidth Test] - Starting...
Running on...

 Device 0: NVIDIA H200
 Range Mode

 Host to Device Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432			55.1

 Device to Host Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432			55.6

 Device to Device Bandwidth, 1 Device(s)
 PINNED Memory Transfers
   33554432			3916.4

Result = PASS

NOTE: The CUDA Samples are not meant for performance measurements. Results may vary when GPU Boost is enabled.
"""


def test_a_pass_whose_tables_were_not_read_is_not_ok():
    out = bandwidth_test.parse(NO_TABLE_HEADERS)
    assert out["result"] == "PASS" and out["results"] == []
    assert out["ok"] is False
    (error,) = out["errors"]
    assert error.startswith("no measurement could be read (the tool said Result = PASS)")
    assert "line 9 '33554432\\t\\t\\t55.1'" in error
    assert "line 13 '33554432\\t\\t\\t55.6'" in error
    assert "line 17 '33554432\\t\\t\\t3916.4'" in error
    assert out["devices"] == [{"index": 0, "name": "NVIDIA H200"}]


def test_only_a_result_line_is_not_ok_and_says_nothing_was_measured():
    out = bandwidth_test.parse("Result = PASS\n")
    assert out["ok"] is False
    assert out["errors"] == [
        "no measurement in the output (the tool said Result = PASS): no table and no CSV line"
    ]


def test_many_unread_lines_are_counted_after_the_first_five():
    rows = "".join(f"   {n * 1024}\t\t\t{n}.5\n" for n in range(1, 9))
    out = bandwidth_test.parse(
        "[CUDA Bandwidth Test] - Starting...\n"
        " Host to Device Bandwidth, 1 Device(s)\n"
        f" PINNED Memory Transfers\n{rows}Result = PASS\n"
    )
    assert out["ok"] is False
    assert out["errors"][0].endswith("and 3 more")
    assert out["errors"][0].count("line ") == 5


def test_a_failure_line_the_parser_does_not_know_is_an_error():
    text = NO_TABLE_HEADERS.replace(
        "Result = PASS", "terminate called after throwing an instance of 'std::bad_alloc'"
    )
    out = bandwidth_test.parse(text)
    assert out["errors"] == ["terminate called after throwing an instance of 'std::bad_alloc'"]
    assert out["ok"] is False


def test_figures_left_unread_beside_a_read_table_are_named():
    text = NO_TABLE_HEADERS.replace(
        " PINNED Memory Transfers\n   33554432\t\t\t55.1",
        " PINNED Memory Transfers\n   Transfer Size (Bytes)\tBandwidth(GB/s)\n   33554432\t\t\t55.1",
    )
    out = bandwidth_test.parse(text)
    assert [(r["direction"], r["gbps"]) for r in out["results"]] == [("h2d", 55.1)]
    assert out["ok"] is False
    assert out["errors"] == [
        "figures outside a table the parser could read (no column header above them): "
        "line 14 '33554432\\t\\t\\t55.6', line 18 '33554432\\t\\t\\t3916.4'"
    ]


def test_every_table_read_is_ok():
    text = NO_TABLE_HEADERS.replace(
        " PINNED Memory Transfers\n",
        " PINNED Memory Transfers\n   Transfer Size (Bytes)\tBandwidth(GB/s)\n",
    )
    out = bandwidth_test.parse(text)
    assert [r["gbps"] for r in out["results"]] == [55.1, 55.6, 3916.4]
    assert out["ok"] is True and out["errors"] == [] and out["warnings"] == []
