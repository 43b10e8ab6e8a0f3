"""nvbandwidth parser (text and -j JSON): every shared sample (read off the files), error paths."""

from __future__ import annotations

import pytest

from gpubox.parsers import nvbandwidth
from gpubox.parsers.common import ParseError

DIR = "nvbandwidth"

D2D_READ = "device_to_device_memcpy_read_ce"
JSON_WAIVED = [
    "device_to_device_memcpy_read_ce",
    "device_to_device_memcpy_write_ce",
    "device_to_device_bidirectional_memcpy_read_ce",
    "device_to_device_bidirectional_memcpy_write_ce",
    "all_to_one_write_ce",
    "all_to_one_read_ce",
    "one_to_all_write_ce",
    "one_to_all_read_ce",
    "device_to_device_memcpy_read_sm",
    "device_to_device_memcpy_write_sm",
    "device_to_device_bidirectional_memcpy_read_sm",
    "device_to_device_bidirectional_memcpy_write_sm",
    "all_to_one_write_sm",
    "all_to_one_read_sm",
    "one_to_all_write_sm",
    "one_to_all_read_sm",
    "device_to_device_latency_sm",
]
# The 15 tests a 1-GPU Grace/x86 box runs (v0.5 JSON and v0.6 text samples alike).
HOST_TESTS = [
    "host_to_device_memcpy_ce",
    "device_to_host_memcpy_ce",
    "host_to_device_bidirectional_memcpy_ce",
    "device_to_host_bidirectional_memcpy_ce",
    "all_to_host_memcpy_ce",
    "all_to_host_bidirectional_memcpy_ce",
    "host_to_all_memcpy_ce",
    "host_to_all_bidirectional_memcpy_ce",
    "host_to_device_memcpy_sm",
    "device_to_host_memcpy_sm",
    "all_to_host_memcpy_sm",
    "all_to_host_bidirectional_memcpy_sm",
    "host_to_all_memcpy_sm",
    "host_to_all_bidirectional_memcpy_sm",
    "host_device_latency_sm",
]

# file -> expected: ok, version, devices (count, first name, first bus id), statuses of the
# tests, sums, cells (test, row, column, value), errors.
EXPECTED = {
    "readme-8gpu-d2d-write-ce-zero-diagonal.txt": dict(
        ok=True,
        format="text",
        version=None,
        n_devices=0,
        statuses={"device_to_device_memcpy_write_ce": "Passed"},
        sums={"device_to_device_memcpy_write_ce": None},
        shapes={"device_to_device_memcpy_write_ce": (8, 8)},
        cells=[
            ("device_to_device_memcpy_write_ce", 0, 0, 0.0),
            ("device_to_device_memcpy_write_ce", 0, 1, 276.07),
            ("device_to_device_memcpy_write_ce", 6, 0, 274.89),
            ("device_to_device_memcpy_write_ce", 7, 7, 0.0),
        ],
        units={"device_to_device_memcpy_write_ce": "GB/s"},
        errors=[],
    ),
    "v0.4-8xH100-d2d-read-ce-NA-diagonal.txt": dict(
        ok=True,
        format="text",
        version="v0.4",
        n_devices=8,
        device0=("NVIDIA H100 80GB HBM3", None),
        statuses={D2D_READ: "Passed"},
        sums={D2D_READ: 20785.58},
        shapes={D2D_READ: (8, 8)},
        cells=[
            (D2D_READ, 0, 0, None),
            (D2D_READ, 0, 1, 370.90),
            (D2D_READ, 2, 4, 372.96),
            (D2D_READ, 7, 7, None),
        ],
        units={D2D_READ: "GB/s"},
        errors=[],
    ),
    "v0.5-json-1gpu-driver565-with-waived.json.txt": dict(
        ok=True,
        format="json",
        version="v0.5",
        n_devices=0,
        statuses={
            **dict.fromkeys(HOST_TESTS, "Passed"),
            **dict.fromkeys(JSON_WAIVED, "Waived"),
        },
        sums={
            "host_to_device_memcpy_ce": 12.396361291250001,
            "all_to_host_bidirectional_memcpy_sm": 9.8367895670000003,
            "host_device_latency_sm": 649.87858038348088,
            D2D_READ: None,
        },
        shapes={"host_to_device_memcpy_ce": (1, 1), D2D_READ: None},
        cells=[
            ("host_to_device_memcpy_ce", 0, 0, 12.3964),
            ("device_to_host_bidirectional_memcpy_ce", 0, 0, 11.329),
            ("all_to_host_bidirectional_memcpy_sm", 0, 0, 9.83679),
            ("host_device_latency_sm", 0, 0, 649.879),
        ],
        units={"host_to_device_memcpy_ce": "GB/s", "host_device_latency_sm": "ns"},
        errors=[],
    ),
    "v0.6-GH200-superbench-testdata.txt": dict(
        ok=True,
        format="text",
        version="v0.6",
        n_devices=1,
        device0=("NVIDIA GH200 480GB", "00000009:01:00"),
        statuses=dict.fromkeys(HOST_TESTS, "Passed"),
        sums={
            "host_to_device_memcpy_ce": 1985.60,
            "device_to_host_memcpy_ce": 607.26,
            "host_to_all_bidirectional_memcpy_sm": 247.56,
            "host_device_latency_sm": 772.58,
        },
        shapes={"host_to_device_memcpy_ce": (2, 3), "device_to_host_memcpy_ce": (1, 2)},
        cells=[
            ("host_to_device_memcpy_ce", 0, 2, 412.11),
            ("host_to_device_memcpy_ce", 1, 0, 323.36),
            ("device_to_host_memcpy_ce", 0, 1, 312.11),
            ("all_to_host_memcpy_sm", 0, 0, 352.98),
        ],
        units={"host_to_device_memcpy_ce": "GB/s", "host_device_latency_sm": "ns"},
        errors=[],
    ),
    "v0.7-8xA100-FAIL-assert-pattern-check.txt": dict(
        ok=False,
        format="text",
        version="v0.7",
        n_devices=8,
        device0=("NVIDIA A100-SXM4-80GB", "00000000:34:00"),
        statuses={D2D_READ: "Error"},
        sums={D2D_READ: None},
        shapes={D2D_READ: None},
        cells=[],
        units={},
        errors=[
            "Invalid value when checking the pattern at 0x70a640000000",
            "Current offset : 11136",
            "ASSERT in expression h_errorFlag == 0 in void memcmpPatternHelper(CUstream, "
            "CUdeviceptr, long long unsigned int, unsigned int, CompareKernelFunc, "
            "std::shared_ptr<NodeHelper>)() : /mnt/project/cuda_related/nvbandwidth/memcpy.cpp:165",
        ],
    ),
    "v0.7-multinode-mpi-2x4-GB200.txt": dict(
        ok=True,
        format="text",
        version="v0.7",
        n_devices=8,
        device0=("HGX GB200", "00000008:01:00"),
        statuses={"multinode_device_to_device_memcpy_read_ce": "Passed"},
        sums={"multinode_device_to_device_memcpy_read_ce": 44685.29},
        shapes={"multinode_device_to_device_memcpy_read_ce": (8, 8)},
        cells=[
            ("multinode_device_to_device_memcpy_read_ce", 0, 0, None),
            ("multinode_device_to_device_memcpy_read_ce", 0, 2, 798.25),
            ("multinode_device_to_device_memcpy_read_ce", 7, 6, 798.02),
            ("multinode_device_to_device_memcpy_read_ce", 2, 7, 797.65),
        ],
        units={"multinode_device_to_device_memcpy_read_ce": "GB/s"},
        errors=[],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = nvbandwidth.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is exp["ok"]
    assert out["format"] == exp["format"]
    assert out["version"] == exp["version"]
    assert len(out["devices"]) == exp["n_devices"]
    if "device0" in exp:
        assert (out["devices"][0]["name"], out["devices"][0]["bus_id"]) == exp["device0"]
    assert {k: v["status"] for k, v in out["tests"].items()} == exp["statuses"]
    for test, value in exp["sums"].items():
        assert out["tests"][test]["sum"] == (None if value is None else pytest.approx(value))
    for test, shape in exp["shapes"].items():
        matrix = out["tests"][test]["matrix"]
        assert (None if matrix is None else (len(matrix), len(matrix[0]))) == shape
    for test, i, j, value in exp["cells"]:
        cell = out["tests"][test]["matrix"][i][j]
        assert cell == (None if value is None else pytest.approx(value)), (test, i, j)
    for test, unit in exp["units"].items():
        assert out["tests"][test]["unit"] == unit
    assert out["errors"] == exp["errors"]


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new nvbandwidth fixtures need expected values here"


def test_text_header_fields(fixture_text):
    out = nvbandwidth.parse(fixture_text(f"{DIR}/v0.4-8xH100-d2d-read-ce-NA-diagonal.txt"))
    assert out["git_version"] == "v0.4.2-12-g8857188"
    assert (out["cuda_runtime_version"], out["cuda_driver_version"]) == (12020, 12080)
    assert out["driver_version"] == "570.133.20"


def test_unnamed_waived_lines_are_counted(fixture_text):
    out = nvbandwidth.parse(fixture_text(f"{DIR}/v0.6-GH200-superbench-testdata.txt"))
    assert out["unnamed_waived"] == 17


def test_json_header_fields(fixture_text):
    out = nvbandwidth.parse(fixture_text(f"{DIR}/v0.5-json-1gpu-driver565-with-waived.json.txt"))
    assert (out["driver_version"], out["cuda_runtime_version"]) == ("565.02", 12070)
    assert len(out["tests"]) == 32


def test_multinode_process_lines(fixture_text):
    out = nvbandwidth.parse(fixture_text(f"{DIR}/v0.7-multinode-mpi-2x4-GB200.txt"))
    assert out["devices"][4] == {
        "index": 4,
        "host": "nvbandwidth-test-worker-1",
        "device": 0,
        "name": "HGX GB200",
        "bus_id": "00000008:01:00",
    }
    assert out["mpi_version"].startswith("Open MPI v4.1.4")


# --- synthetic variants ------------------------------------------------------------------------

BIDIR = """Running device_to_device_bidirectional_memcpy_read_ce.
memcpy CE GPU(row) <-> GPU(column) Read1 bandwidth (GB/s)
          0         1
 0       N/A    100.00
 1    101.00       N/A

SUM device_to_device_bidirectional_memcpy_read_ce_read1 201.00

memcpy CE GPU(row) <-> GPU(column) Total bandwidth (GB/s)
          0         1
 0       N/A    200.00
 1    202.00       N/A

&&&& PERF device_to_device_bidirectional_memcpy_read_ce_total 402.00 +GB/s

Running device_to_device_memcpy_write_sm.
Error: CUDA_ERROR_OUT_OF_MEMORY
ERROR: Testcase bogus_test not found!
"""


def test_several_matrices_error_status_and_not_found():
    out = nvbandwidth.parse(BIDIR)
    bidir = out["tests"]["device_to_device_bidirectional_memcpy_read_ce"]
    assert bidir["status"] == "Passed"
    assert [m["sum"] for m in bidir["matrices"]] == [201.0, 402.0]
    assert (bidir["sum"], bidir["matrix"][1][0]) == (402.0, 202.0)  # the Total matrix
    assert out["tests"]["device_to_device_memcpy_write_sm"]["status"] == "Error"
    assert out["tests"]["bogus_test"]["status"] == "Not Found"
    assert out["ok"] is False
    assert len(out["errors"]) == 2


def test_run_cut_before_matrix_is_incomplete():
    out = nvbandwidth.parse("nvbandwidth Version: v0.8\nRunning host_to_device_memcpy_ce.\n")
    assert out["tests"]["host_to_device_memcpy_ce"]["status"] == "Incomplete"
    assert out["ok"] is False


def test_output_ending_inside_a_row_is_incomplete(fixture_text):
    text = fixture_text(f"{DIR}/v0.4-8xH100-d2d-read-ce-NA-diagonal.txt")
    cut = text[: text.index("370.51    371.67    371.67") + len("370.51    371.67")]
    out = nvbandwidth.parse(cut)
    test = out["tests"][D2D_READ]
    assert test["status"] == "Incomplete"
    assert test["matrix"][7] == [370.51, 371.67] + [None] * 6
    assert test["sum"] is None
    assert out["ok"] is False


# --- unparseable input ---------------------------------------------------------------------------


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        nvbandwidth.parse("Some other tool\n1 2 3\n")
    msg = str(info.value)
    assert msg.startswith("nvbandwidth: line 1: expected nvbandwidth output")


def test_broken_json_names_its_line(fixture_text):
    text = fixture_text(f"{DIR}/v0.5-json-1gpu-driver565-with-waived.json.txt")
    lines = text.split("\n")
    no = next(i for i, line in enumerate(lines) if '"status" : "Waived"' in line)
    lines[no] = lines[no].replace('"Waived"', "Waived")
    with pytest.raises(ParseError) as info:
        nvbandwidth.parse("\n".join(lines))
    assert info.value.line_no == no + 1
    assert f"line {no + 1}: expected valid JSON from 'nvbandwidth -j'" in str(info.value)


def test_json_of_another_tool_is_a_parse_error():
    with pytest.raises(ParseError, match=r"line 1: expected a JSON object with an 'nvbandwidth'"):
        nvbandwidth.parse('{"gpus": []}')


def test_bad_matrix_cell_names_its_line(fixture_text):
    lines = fixture_text(f"{DIR}/v0.4-8xH100-d2d-read-ce-NA-diagonal.txt").split("\n")
    no = next(i for i, line in enumerate(lines) if line.startswith("3 "))
    lines[no] = lines[no].replace("372.05", "372.o5", 1)
    with pytest.raises(ParseError) as info:
        nvbandwidth.parse("\n".join(lines))
    assert info.value.line_no == no + 1
    assert "expected a row label and 8 numbers or N/A" in str(info.value)
