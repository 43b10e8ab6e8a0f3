"""nccl-tests parser: every shared sample (values read off the files by hand), error paths."""

from __future__ import annotations

import pytest

from gpubox.parsers import nccl_tests
from gpubox.parsers.common import ParseError

DIR = "nccl-tests"


def g(time_us, algbw, busbw, wrong):
    """One timing group (out-of-place or in-place) as the parser returns it."""
    return {"time_us": time_us, "algbw": algbw, "busbw": busbw, "wrong": wrong}


def row(size, count, type_, redop, root, oop, ip):
    return {"size": size, "count": count, "type": type_, "redop": redop, "root": root}, oop, ip


# file -> what a person reads off the file. first/last: (lead fields, oop, ip).
EXPECTED = {
    "allgather-8xA100-SXM4-old-noredop-noroot.txt": dict(
        ok=True,
        collective="all_gather",
        version=None,
        n_rows=34,
        first=row(0, 0, "float", None, None, g(34.27, 0.0, 0.0, None), g(33.57, 0.0, 0.0, None)),
        last=row(
            8589934592,
            268435456,
            "float",
            None,
            None,
            g(33646.0, 255.31, 223.39, None),
            g(32669.0, 262.94, 230.07, None),
        ),
        avg_busbw=58.2651,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=8,
        rank0={"rank": 0, "group": None, "pid": 112372, "host": "localhost", "device": 0},
        rank0_bus="0x00",
        rank0_name="A100-SXM4-40GB",
    ),
    "allreduce-1gpu-RTX5090-v2.18.0-tail-sci-notation.txt": dict(
        ok=True,
        collective="all_reduce",
        version=None,
        n_rows=12,
        first=row(
            65536, 16384, "float", "sum", -1, g(2.84, 23.06, 0.0, 0), g(0.10, 631.37, 0.0, 0)
        ),
        last=row(
            134217728,
            33554432,
            "float",
            "sum",
            -1,
            g(176.33, 761.18, 0.0, 0),
            g(0.10, 1e6, 0.0, 0),
        ),
        avg_busbw=0.0,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=0,
    ),
    "allreduce-1xRTX5090-single-gpu-column-overflow.txt": dict(
        ok=True,
        collective="all_reduce",
        version=None,
        n_rows=25,
        first=row(8, 2, "float", "sum", -1, g(5.63, 0.0, 0.0, 0), g(0.20, 0.04, 0.0, 0)),
        last=row(
            134217728,
            33554432,
            "float",
            "sum",
            -1,
            g(175.6, 764.34, 0.0, 0),
            g(0.08, 1777718.25, 0.0, 0),
        ),
        avg_busbw=0.0,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=1,
        rank0={"rank": 0, "group": 0, "pid": 5092, "host": "GENOA-06", "device": 0},
        rank0_bus="0x21",
        rank0_name="NVIDIA GeForce RTX 5090",
    ),
    "allreduce-2node-GH200-FAIL-wrong-nonzero-oob-4.txt": dict(
        ok=False,
        collective="all_reduce",
        version="2.17.8",
        n_rows=25,
        first=row(8, 2, "float", "sum", -1, g(17.49, 0.0, 0.0, 0), g(16.41, 0.0, 0.0, 0)),
        last=row(
            134217728,
            33554432,
            "float",
            "sum",
            -1,
            g(5869.38, 22.87, 22.87, 0),
            g(5886.67, 22.80, 22.80, 0),
        ),
        avg_busbw=4.79995,
        oob={"count": 4, "ok": False},
        errors=[
            ".. gpu-1-1 pid 662195: Test failure common.cu:1189",
            ".. gpu-1-7 pid 2448661: Test failure common.cu:1189",
        ],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 662195, "host": "gpu-1-1", "device": 0},
        rank0_bus="0009:01:00",
        rank0_name="NVIDIA GH200 120GB",
    ),
    "allreduce-2x2080Ti-pcie-noP2P-v2.x-prompt.txt": dict(
        ok=True,
        collective="all_reduce",
        version=None,
        n_rows=28,
        first=row(8, 2, "float", "sum", -1, g(12.25, 0.0, 0.0, 0), g(12.00, 0.0, 0.0, 0)),
        last=row(
            1073741824,
            268435456,
            "float",
            "sum",
            -1,
            g(268588.0, 4.0, 4.0, 0),
            g(268461.0, 4.0, 4.0, 0),
        ),
        avg_busbw=2.05774,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 31706, "host": "autodl-container-xxxxx", "device": 0},
        rank0_bus="0000:b4:00",
        rank0_name="NVIDIA GeForce RTX 2080 Ti",
    ),
    "allreduce-2xRTX5090-FAIL-test-nccl-failure.txt": dict(
        ok=False,
        collective="all_reduce",
        version=None,
        n_rows=0,
        avg_busbw=None,
        oob={"count": None, "ok": None},
        errors=[
            "GENOA-06: Test NCCL failure common.cu:392 'unhandled cuda error "
            "(run with NCCL_DEBUG=INFO for details) / '",
            ".. GENOA-06 pid 5068: Test failure common.cu:590",
            ".. GENOA-06 pid 5068: Test failure all_reduce.cu:90",
            ".. GENOA-06 pid 5068: Test failure common.cu:623",
            ".. GENOA-06 pid 5068: Test failure common.cu:1078",
            ".. GENOA-06 pid 5068: Test failure common.cu:891",
        ],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 5068, "host": "GENOA-06", "device": 0},
        rank0_bus="0x21",
        rank0_name="NVIDIA GeForce RTX 5090",
    ),
    "allreduce-3xA6000-FAIL-unhandled-system-error-nvml.txt": dict(
        ok=False,
        collective="all_reduce",
        version=None,
        n_rows=0,
        avg_busbw=None,
        oob={"count": None, "ok": None},
        errors=[
            "gpu0301: Test NCCL failure common.cu:1119 'unhandled system error "
            "(run with NCCL_DEBUG=INFO for details) / '",
            ".. gpu0301 pid 842624: Test failure common.cu:937",
        ],
        n_ranks=3,
        rank0={"rank": 0, "group": 0, "pid": 842624, "host": "gpu0301", "device": 0},
        rank0_bus="0000:81:00",
        rank0_name="NVIDIA RTX A6000",
    ),
    "allreduce-4node-2xA100-collnet-INFO-tail-excerpt.txt": dict(
        ok=True,
        collective="all_reduce",  # guessed: busbw (21.70) > algbw (12.40) on the biggest row
        version=None,
        n_rows=15,
        first=row(16, 4, "float", "sum", -1, g(151.3, 0.0, 0.0, 0), g(68.64, 0.0, 0.0, 0)),
        last=row(
            4294967296,
            1073741824,
            "float",
            "sum",
            -1,
            g(346304.0, 12.40, 21.70, 0),
            g(347314.0, 12.37, 21.64, 0),
        ),
        avg_busbw=8.69534,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=0,
    ),
    "allreduce-6xRTX4090-pcie-p2p-single-size-bytes-step.txt": dict(
        ok=True,
        collective="all_reduce",
        version=None,
        n_rows=1,
        first=row(
            33554432,
            8388608,
            "float",
            "sum",
            -1,
            g(2275.1, 14.75, 24.58, 0),
            g(2282.5, 14.70, 24.50, 0),
        ),
        last=row(
            33554432,
            8388608,
            "float",
            "sum",
            -1,
            g(2275.1, 14.75, 24.58, 0),
            g(2282.5, 14.70, 24.50, 0),
        ),
        avg_busbw=24.5413,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=6,
        rank0={"rank": 0, "group": 0, "pid": 26230, "host": "tiny14", "device": 0},
        rank0_bus="0x01",
        rank0_name="NVIDIA GeForce RTX 4090",
    ),
    "allreduce-8xRTX5090-pcie-v2.18.2-unalign-no-footer.txt": dict(
        ok=True,
        collective="all_reduce",
        version="2.18.2",
        n_rows=25,
        first=row(8, 2, "float", "sum", -1, g(25.47, 0.0, 0.0, 0), g(24.82, 0.0, 0.0, 0)),
        last=row(
            134217728,
            33554432,
            "float",
            "sum",
            -1,
            g(5355.16, 25.06, 43.86, 0),
            g(5329.43, 25.18, 44.07, 0),
        ),
        avg_busbw=None,
        oob={"count": None, "ok": None},
        errors=[],
        n_ranks=8,
        rank0={"rank": 0, "group": 0, "pid": 27238, "host": "crazy", "device": 0},
        rank0_bus="0000:01:00",
        rank0_name="NVIDIA GeForce RTX 5090",
    ),
    "allreduce-mpi-tagoutput-2rank-1xRTX5090-v2.18.0.txt": dict(
        ok=True,
        collective="all_reduce",
        version="2.18.0",
        n_rows=8,
        first=row(
            1048576,
            262144,
            "float",
            "sum",
            -1,
            g(4366.46, 0.24, 0.24, 0),
            g(4365.21, 0.24, 0.24, 0),
        ),
        last=row(
            134217728,
            33554432,
            "float",
            "sum",
            -1,
            g(58479.5, 2.30, 2.30, 0),
            g(58055.4, 2.31, 2.31, 0),
        ),
        avg_busbw=1.57614,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 2994447, "host": "lab", "device": 0},
        rank0_bus="0000:02:00",
        rank0_name="NVIDIA GeForce RTX 5090",
    ),
    "alltoall-2x2080Ti-pcie-inplace-wrong-NA.txt": dict(
        ok=True,
        collective="alltoall",
        version=None,
        n_rows=28,
        first=row(0, 0, "float", "none", -1, g(12.97, 0.0, 0.0, 0), g(12.86, 0.0, 0.0, None)),
        last=row(
            1073741824,
            134217728,
            "float",
            "none",
            -1,
            g(116573.0, 9.21, 4.61, 0),
            g(113591.0, 9.45, 4.73, None),
        ),
        avg_busbw=2.06935,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 31856, "host": "autodl-container-xxxxx", "device": 0},
        rank0_bus="0000:b4:00",
        rank0_name="NVIDIA GeForce RTX 2080 Ti",
    ),
    "alltoall-8xA100-SXM4-old-empty-redop.txt": dict(
        ok=True,
        collective="alltoall",  # guessed: old table, 'redop' header over blank cells, no root
        version=None,
        n_rows=34,
        first=row(0, 0, "float", None, None, g(1.63, 0.0, 0.0, None), g(1.38, 0.0, 0.0, None)),
        last=row(
            8589934592,
            268435456,
            "float",
            None,
            None,
            g(33508.0, 256.36, 224.31, None),
            g(33234.0, 258.47, 226.16, None),
        ),
        avg_busbw=58.6481,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=8,
        rank0={"rank": 0, "group": None, "pid": 167261, "host": "localhost", "device": 0},
        rank0_bus="0x00",
        rank0_name="A100-SXM4-40GB",
    ),
    "broadcast-mpi-2rank-RTX5090-v2.18.0.txt": dict(
        ok=True,
        collective="broadcast",
        version=None,
        n_rows=9,
        first=row(1024, 256, "float", "none", 0, g(2239.78, 0.0, 0.0, 0), g(2233.58, 0.0, 0.0, 0)),
        last=row(
            67108864,
            16777216,
            "float",
            "none",
            0,
            g(28066.8, 2.39, 2.39, 0),
            g(37664.5, 1.78, 1.78, 0),
        ),
        avg_busbw=0.8664,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=2,
        rank0={"rank": 0, "group": 0, "pid": 3038984, "host": "lab", "device": 0},
        rank0_bus="0000:02:00",
        rank0_name="NVIDIA GeForce RTX 5090",
    ),
    "reduce-8xA100-SXM4-old-redop-root.txt": dict(
        ok=True,
        collective="reduce",  # guessed: redop 'sum' with root 0
        version=None,
        n_rows=34,
        first=row(0, 0, "float", "sum", 0, g(36.90, 0.0, 0.0, None), g(36.47, 0.0, 0.0, None)),
        last=row(
            8589934592,
            2147483648,
            "float",
            "sum",
            0,
            g(37613.0, 228.38, 228.38, None),
            g(37539.0, 228.83, 228.83, None),
        ),
        avg_busbw=65.018,
        oob={"count": 0, "ok": True},
        errors=[],
        n_ranks=8,
        rank0={"rank": 0, "group": None, "pid": 112476, "host": "localhost", "device": 0},
        rank0_bus="0x00",
        rank0_name="A100-SXM4-40GB",
    ),
}


def _check_row(actual: dict, expected: tuple) -> None:
    lead, oop, ip = expected
    assert {k: actual[k] for k in lead} == lead
    assert actual["oop"] == pytest.approx(oop)
    assert actual["ip"] == pytest.approx(ip)


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = nccl_tests.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is exp["ok"]
    assert out["collective"] == exp["collective"]
    assert out["version"] == exp["version"]
    assert len(out["rows"]) == exp["n_rows"]
    if exp["n_rows"]:
        _check_row(out["rows"][0], exp["first"])
        _check_row(out["rows"][-1], exp["last"])
    if exp["avg_busbw"] is None:
        assert out["avg_busbw"] is None
    else:
        assert out["avg_busbw"] == pytest.approx(exp["avg_busbw"])
    assert out["oob"] == exp["oob"]
    assert out["errors"] == exp["errors"]
    assert len(out["ranks"]) == exp["n_ranks"]
    if exp["n_ranks"]:
        rank0 = out["ranks"][0]
        assert {k: rank0[k] for k in exp["rank0"]} == exp["rank0"]
        assert rank0["bus_id"] == exp["rank0_bus"]
        assert rank0["name"] == exp["rank0_name"]


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new nccl-tests fixtures need expected values here"


# --- details of particular samples -----------------------------------------------------------


def test_nonzero_wrong_is_read_per_row(fixture_text):
    out = nccl_tests.parse(
        fixture_text(f"{DIR}/allreduce-2node-GH200-FAIL-wrong-nonzero-oob-4.txt")
    )
    bad = [r for r in out["rows"] if r["oop"]["wrong"] or r["ip"]["wrong"]]
    assert [(r["size"], r["oop"]["wrong"], r["ip"]["wrong"]) for r in bad] == [(1048576, 96, 32)]
    assert out["ranks"][1]["host"] == "gpu-1-7"
    assert out["ranks"][1]["pid"] == 2448661
    assert out["params"]["nccl_library"] == 22902


def test_integer_and_scientific_cells(fixture_text):
    out = nccl_tests.parse(
        fixture_text(f"{DIR}/allreduce-1gpu-RTX5090-v2.18.0-tail-sci-notation.txt")
    )
    by_size = {r["size"]: r for r in out["rows"]}
    assert by_size[1048576]["ip"]["algbw"] == 11061.0
    assert by_size[33554432]["ip"]["algbw"] == 348075.0
    assert by_size[134217728]["ip"]["algbw"] == 1_000_000.0
    assert any("column header" in w for w in out["warnings"])


def test_bytes_step_and_params(fixture_text):
    out = nccl_tests.parse(
        fixture_text(f"{DIR}/allreduce-6xRTX4090-pcie-p2p-single-size-bytes-step.txt")
    )
    p = out["params"]
    assert (p["step"], p["step_kind"], p["min_bytes"], p["max_bytes"]) == (
        1048576,
        "bytes",
        33554432,
        33554432,
    )
    assert (p["ngpus"], p["warmup_iters"], p["iters"], p["agg_iters"]) == (6, 5, 20, 1)
    assert out["ranks"][5]["bus_id"] == "0xc2"


def test_factor_step_unalign_and_missing_footer(fixture_text):
    out = nccl_tests.parse(
        fixture_text(f"{DIR}/allreduce-8xRTX5090-pcie-v2.18.2-unalign-no-footer.txt")
    )
    assert (out["params"]["step"], out["params"]["step_kind"], out["params"]["unalign"]) == (
        2,
        "factor",
        0,
    )
    assert out["ranks"][7]["bus_id"] == "0000:f1:00"
    assert any("footer" in w for w in out["warnings"])


def test_nccl_warn_with_timestamp_is_a_warning(fixture_text):
    out = nccl_tests.parse(
        fixture_text(f"{DIR}/allreduce-3xA6000-FAIL-unhandled-system-error-nvml.txt")
    )
    warns = [w for w in out["warnings"] if "NCCL WARN" in w]
    assert len(warns) == 1
    assert "Failed to open libnvidia-ml.so.1" in warns[0]
    assert "[2025-06-12" not in warns[0]  # the leading timestamp is cleaned off
    assert out["ranks"][2]["bus_id"] == "0000:c1:00"


def test_mpi_ranks_share_a_device(fixture_text):
    out = nccl_tests.parse(fixture_text(f"{DIR}/broadcast-mpi-2rank-RTX5090-v2.18.0.txt"))
    assert [(r["rank"], r["pid"], r["device"]) for r in out["ranks"]] == [
        (0, 3038984, 0),
        (1, 3038985, 0),
    ]
    assert (out["params"]["step"], out["params"]["iters"]) == (4, 1)


def test_tabs_instead_of_spaces_parse_the_same(fixture_text):
    text = fixture_text(f"{DIR}/allreduce-2x2080Ti-pcie-noP2P-v2.x-prompt.txt")
    tabbed = "\n".join(
        line if line.startswith("#") else "\t".join(line.split()) for line in text.split("\n")
    )
    assert nccl_tests.parse(tabbed)["rows"] == nccl_tests.parse(text)["rows"]


# --- synthetic variants ------------------------------------------------------------------------

HEADER = (
    "#       size         count      type   redop    root     time   algbw   busbw #wrong"
    "     time   algbw   busbw #wrong\n"
)
ROW_8 = (
    "           8             2     float     sum      -1    12.25    0.00    0.00      0"
    "    12.00    0.00    0.00      0\n"
)


def test_avg_busbw_check_failed_is_an_error():
    out = nccl_tests.parse(
        HEADER + ROW_8 + "# Out of bounds values : 0 OK\n# Avg bus bandwidth : 2.5 FAILED\n"
    )
    assert out["ok"] is False
    assert out["avg_busbw"] == 2.5
    assert out["avg_busbw_ok"] is False
    assert out["errors"] == ["# Avg bus bandwidth : 2.5 FAILED"]


def test_cputime_and_timestamp_columns():
    header = (
        "#       size         count      type   redop    root  cputime   algbw   busbw #wrong"
        "  cputime   algbw   busbw #wrong           timestamp\n"
    )
    line = (
        "           8             2     float     sum      -1    12.25    0.00    0.00      0"
        "    12.00    0.00    0.00      0  2025-06-12 16:57:52\n"
    )
    out = nccl_tests.parse(header + line)
    assert out["rows"][0]["timestamp"] == "2025-06-12 16:57:52"
    assert out["rows"][0]["ip"] == g(12.0, 0.0, 0.0, 0)


def test_terminal_decoration_is_cleaned():
    # ANSI bold on the header, an MPI tag, a '\r' progress repaint and CRLF line ends.
    text = "\x1b[1m" + HEADER + "[1,0]<stdout>:warming up...\r" + ROW_8.rstrip() + "\r\n"
    out = nccl_tests.parse(text + "[1,0]<stdout>:# Avg bus bandwidth : 1\r\n")
    assert out["rows"][0]["oop"]["time_us"] == 12.25
    assert out["avg_busbw"] == 1.0
    assert out["warnings"] == []


def test_failure_line_without_table_is_ok_false_not_an_exception():
    out = nccl_tests.parse(
        "# nThread 1 nGpus 2 minBytes 8 maxBytes 8 step: 2(factor) warmup iters: 5 iters: 20\n"
        "host: Test CUDA failure common.cu:100 'out of memory'\n"
    )
    assert out["ok"] is False
    assert out["rows"] == []
    assert out["errors"] == ["host: Test CUDA failure common.cu:100 'out of memory'"]


def test_guess_reduce_scatter_from_ratio():
    line = (
        "        1024           128     float     sum      -1    10.00   10.00    7.50      0"
        "    10.00   10.00    7.50      0\n"
    )
    assert nccl_tests.parse(line)["collective"] == "reduce_scatter"


# --- unparseable input ---------------------------------------------------------------------------


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        nccl_tests.parse("hello\nthis is not a benchmark\n")
    msg = str(info.value)
    assert "nccl-tests" in msg and "line 1" in msg and "expected nccl-tests output" in msg
    assert "'hello'" in msg


def test_empty_input_is_a_parse_error():
    with pytest.raises(ParseError, match="line 1"):
        nccl_tests.parse("")


def test_truncated_row_names_its_line(fixture_text):
    lines = fixture_text(f"{DIR}/allreduce-2x2080Ti-pcie-noP2P-v2.x-prompt.txt").split("\n")
    no = next(i for i, line in enumerate(lines) if line.lstrip().startswith("2048 "))
    lines[no] = "        2048           512     float     sum      -1    11.83    0.17"
    with pytest.raises(ParseError) as info:
        nccl_tests.parse("\n".join(lines))
    assert info.value.line_no == no + 1
    assert f"line {no + 1}: expected a results row with columns: size count type" in str(info.value)
    assert "11.83    0.17" in str(info.value)


def test_garbage_cell_names_its_line():
    with pytest.raises(ParseError, match=r"line 2: expected a results row"):
        nccl_tests.parse(HEADER + ROW_8.replace("12.25", "12.2x"))


def test_comment_lines_alone_are_not_nccl_output():
    with pytest.raises(ParseError, match=r"line 2: expected nccl-tests output"):
        nccl_tests.parse("\n# My notes\n#\n# more notes\n")
