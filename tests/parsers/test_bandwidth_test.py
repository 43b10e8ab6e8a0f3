"""bandwidthTest parser: every shared sample (figures read off the files) and the error paths."""

from __future__ import annotations

import pytest

from gpubox.parsers import bandwidth_test
from gpubox.parsers.common import ParseError

DIR = "bandwidthTest"


def r(direction, memory, size, gbps, device=0):
    return {
        "device": device,
        "direction": direction,
        "memory": memory,
        "size_bytes": size,
        "gbps": gbps,
    }


# file -> expected: ok, result, devices, n_results and the results to compare (all, or
# first/last for the long shmoo files), errors.
EXPECTED = {
    "FAIL-802-system-not-yet-initialized-A100-no-fabricmanager.txt": dict(
        ok=False,
        result=None,
        devices=[],
        n_results=0,
        results=[],
        errors=[
            "cudaGetDeviceProperties returned 802",
            "-> system not yet initialized",
            "CUDA error at bandwidthTest.cu:256 code=802(cudaErrorSystemNotReady) "
            '"cudaSetDevice(currentDevice)"',
        ],
    ),
    "d2d-shmoo-csv-V100-PCIE.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "Tesla V100-PCIE-32GB"}],
        n_results=81,
        first=r("d2d", None, 1000, 0.4),
        last=r("d2d", None, 68000000, 762.8),
        errors=[],
    ),
    "h2d-pinned-shmoo-csv-V100-PCIE.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "Tesla V100-PCIE-32GB"}],
        n_results=81,
        first=r("h2d", "pinned", 1000, 0.4),
        last=r("h2d", "pinned", 68000000, 12.4),
        errors=[],
    ),
    "quick-2080Ti-flag-g2-spaces.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "NVIDIA GeForce RTX 2080 Ti"}],
        n_results=3,
        results=[
            r("h2d", "pinned", 32000000, 12.2),
            r("d2h", "pinned", 32000000, 13.2),
            r("d2d", None, 32000000, 518.9),
        ],
        errors=[],
    ),
    "quick-V100-SXM2-prompt-line.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "Tesla V100-SXM2-16GB"}],
        n_results=3,
        results=[
            r("h2d", "pinned", 32000000, 9.6),
            r("d2h", "pinned", 32000000, 11.4),
            r("d2d", None, 32000000, 739.8),
        ],
        errors=[],
    ),
    "quick-cuda7.0-QuadroK1100M-MBps-old-format-docker.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "Quadro K1100M"}],
        n_results=3,
        # printed in MB/s: 9680.4 / 9615.7 / 31407.7, divided by 1000
        results=[
            r("h2d", "pinned", 33554432, 9.6804),
            r("d2h", "pinned", 33554432, 9.6157),
            r("d2d", None, 33554432, 31.4077),
        ],
        errors=[],
    ),
    "quick-pinned-then-pageable-A100-80GB-PCIe-two-runs.txt": dict(
        ok=True,
        result="PASS",
        devices=[{"index": 0, "name": "NVIDIA A100 80GB PCIe"}],
        n_results=4,
        results=[
            r("h2d", "pinned", 32000000, 17.3),
            r("d2h", "pinned", 32000000, 24.6),
            r("h2d", "pageable", 32000000, 3.3),
            r("d2h", "pageable", 32000000, 8.5),
        ],
        errors=[],
    ),
}


def _pick(result: dict) -> dict:
    return {k: result[k] for k in ("device", "direction", "memory", "size_bytes", "gbps")}


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = bandwidth_test.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is exp["ok"]
    assert out["result"] == exp["result"]
    assert out["devices"] == exp["devices"]
    assert len(out["results"]) == exp["n_results"]
    got = [_pick(x) for x in out["results"]]
    if "results" in exp:
        assert got == [pytest.approx(x) for x in exp["results"]]
    else:
        assert got[0] == pytest.approx(exp["first"])
        assert got[-1] == pytest.approx(exp["last"])
    assert out["errors"] == exp["errors"]


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new bandwidthTest fixtures need expected values here"


def test_shmoo_peak_and_devices_used(fixture_text):
    out = bandwidth_test.parse(fixture_text(f"{DIR}/d2d-shmoo-csv-V100-PCIE.txt"))
    peak = max(out["results"], key=lambda x: x["gbps"])
    assert (peak["size_bytes"], peak["gbps"]) == (64000000, 772.0)
    assert {x["num_devices"] for x in out["results"]} == {1}


def test_old_mb_per_s_keeps_printed_value(fixture_text):
    out = bandwidth_test.parse(
        fixture_text(f"{DIR}/quick-cuda7.0-QuadroK1100M-MBps-old-format-docker.txt")
    )
    assert out["results"][0]["printed"] == {"value": 9680.4, "unit": "MB/s"}


# --- synthetic variants ------------------------------------------------------------------------

RUN = """[CUDA Bandwidth Test] - Starting...
Running on...

 Device 0: GPU A
 Device 1: GPU B
 Quick Mode

 Host to Device Bandwidth, 2 Device(s)
 PINNED Memory Transfers
 Write-Combined Memory Writes are Enabled   Transfer Size (Bytes)\tBandwidth(GB/s)
   32000000\t\t\t24.5

Result = FAIL
"""


def test_device_all_write_combined_and_fail():
    out = bandwidth_test.parse(RUN)
    assert out["ok"] is False and out["result"] == "FAIL"
    (res,) = out["results"]
    assert res["device"] is None  # a sum over devices 0 and 1
    assert (res["num_devices"], res["write_combined"], res["gbps"]) == (2, True, 24.5)
    assert [d["name"] for d in out["devices"]] == ["GPU A", "GPU B"]


def test_csv_pageable_and_mb():
    line = (
        "bandwidthTest-D2H-Paged, Bandwidth = 3200.0 MB/s, Time = 0.01 s, "
        "Size = 32000000 bytes, NumDevsUsed = 1"
    )
    out = bandwidth_test.parse(line + "\nResult = PASS\n")
    assert _pick(out["results"][0]) == r("d2h", "pageable", 32000000, 3.2, device=None)


# --- unparseable input ---------------------------------------------------------------------------


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        bandwidth_test.parse("\nlorem ipsum\n")
    assert str(info.value).startswith("bandwidthTest: line 2: expected bandwidthTest output")


def test_truncated_table_row_names_its_line(fixture_text):
    lines = fixture_text(f"{DIR}/quick-V100-SXM2-prompt-line.txt").split("\n")
    no = next(i for i, line in enumerate(lines) if line.strip().endswith("11.4"))
    lines[no] = "   32000000   11."
    with pytest.raises(ParseError) as info:
        bandwidth_test.parse("\n".join(lines))
    assert info.value.line_no == no + 1
    assert f"line {no + 1}: expected a '<size in bytes>  <bandwidth>' table row" in str(info.value)


def test_damaged_csv_line_is_a_parse_error():
    with pytest.raises(ParseError, match=r"line 1: expected 'bandwidthTest-<kind>, Bandwidth"):
        bandwidth_test.parse("bandwidthTest-H2D-Pinned, Bandwidth = fast\n")
