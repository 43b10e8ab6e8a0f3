"""p2pBandwidthLatencyTest parser: every shared sample (cells read off the files), error paths."""

from __future__ import annotations

import pytest

from gpubox.parsers import p2p_bandwidth
from gpubox.parsers.common import ParseError

DIR = "p2pBandwidthLatencyTest"

UNI_OFF = "Unidirectional P2P=Disabled Bandwidth Matrix (GB/s)"
UNI_ON = "Unidirectional P2P=Enabled Bandwidth (P2P Writes) Matrix (GB/s)"
BI_OFF = "Bidirectional P2P=Disabled Bandwidth Matrix (GB/s)"
BI_ON = "Bidirectional P2P=Enabled Bandwidth Matrix (GB/s)"
LAT_OFF = "P2P=Disabled Latency Matrix (us)"
LAT_ON = "P2P=Enabled Latency (P2P Writes) Matrix (us)"
FULL_RUN = [UNI_OFF, UNI_ON, BI_OFF, BI_ON, LAT_OFF, LAT_ON]


def all_pairs(n: int, value: bool) -> dict:
    return {f"{i}-{j}": value for i in range(n) for j in range(n) if i != j}


# file -> expected: n_gpus, device names/bus ids, can_access, titles, and a few cells
# (title, row, column, value) for the GPU ("matrices") and CPU ("cpu_matrices") tables.
EXPECTED = {
    "2x2080Ti-pcie-switch-no-p2p.txt": dict(
        n_gpus=2,
        names=["NVIDIA GeForce RTX 2080 Ti"] * 2,
        bus_ids=["0000:b4:00", "0000:b5:00"],
        can_access=all_pairs(2, False),
        connectivity=[[1, 0], [0, 1]],
        titles=FULL_RUN,
        cells=[
            (UNI_OFF, 0, 1, 5.71),
            (UNI_OFF, 1, 0, 5.70),
            (UNI_ON, 1, 1, 532.54),
            (BI_ON, 1, 1, 534.01),
            (LAT_OFF, 0, 1, 14.76),
            (LAT_ON, 1, 0, 13.63),
        ],
        cpu_cells=[(LAT_OFF, 1, 0, 10.48), (LAT_ON, 1, 1, 3.27)],
    ),
    "2xRTX5090-pcie-no-p2p-cannot-access-peer.txt": dict(
        n_gpus=2,
        names=["NVIDIA Graphics Device"] * 2,
        bus_ids=["0000:21:00", "0000:61:00"],
        can_access=all_pairs(2, False),
        connectivity=[[1, 0], [0, 1]],
        titles=FULL_RUN,
        cells=[
            (UNI_OFF, 0, 0, 1516.99),
            (UNI_OFF, 1, 1, 1537.94),
            (BI_OFF, 1, 0, 42.78),
            (BI_ON, 0, 1, 43.19),
            (LAT_ON, 0, 1, 12.76),
        ],
        cpu_cells=[(LAT_OFF, 0, 1, 5.91), (LAT_ON, 1, 0, 5.64)],
    ),
    "8xA100-SXM4-80GB-nvlink-full-prompt.txt": dict(
        n_gpus=8,
        names=["NVIDIA A100-SXM4-80GB"] * 8,
        bus_ids=[
            "0000:07:00",
            "0000:0a:00",
            "0000:44:00",
            "0000:4a:00",
            "0000:84:00",
            "0000:8a:00",
            "0000:c1:00",
            "0000:c4:00",
        ],
        can_access=all_pairs(8, True),
        connectivity=[[1] * 8 for _ in range(8)],
        titles=FULL_RUN,
        cells=[
            (UNI_OFF, 0, 0, 1521.42),
            (UNI_ON, 0, 1, 268.94),
            (UNI_ON, 7, 6, 275.23),
            (BI_OFF, 7, 6, 11.25),
            (BI_ON, 4, 5, 517.80),
            (LAT_OFF, 7, 7, 2.48),
            (LAT_ON, 0, 3, 3.42),
        ],
        cpu_cells=[(LAT_OFF, 4, 5, 9.56), (LAT_ON, 7, 6, 2.80)],
    ),
    "bidir-p2p-enabled-only-6xRTX4090-pcie.txt": dict(
        n_gpus=6,
        names=[],
        bus_ids=[],
        can_access={},
        connectivity=None,
        titles=[BI_ON],
        cells=[
            (BI_ON, 0, 0, 919.39),
            (BI_ON, 0, 1, 50.11),
            (BI_ON, 4, 5, 51.23),
            (BI_ON, 5, 5, 921.29),
        ],
        cpu_cells=[],
    ),
    "latency-writes-6gpu-RTX6000ProWS-RTX5090-pcie5.txt": dict(
        n_gpus=6,
        names=[],
        bus_ids=[],
        can_access={},
        connectivity=None,
        titles=[LAT_ON],
        cells=[
            (LAT_ON, 0, 0, 2.07),
            (LAT_ON, 0, 4, 0.44),
            (LAT_ON, 3, 5, 0.38),
            (LAT_ON, 5, 4, 0.36),
        ],
        cpu_cells=[],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = p2p_bandwidth.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is True
    assert out["errors"] == []
    assert out["n_gpus"] == exp["n_gpus"]
    assert [d["name"] for d in out["devices"]] == exp["names"]
    assert [d["bus_id"] for d in out["devices"]] == exp["bus_ids"]
    assert out["can_access"] == exp["can_access"]
    assert out["connectivity"] == exp["connectivity"]
    assert list(out["matrices"]) == exp["titles"]
    for title in exp["titles"]:
        matrix = out["matrices"][title]
        assert len(matrix) == exp["n_gpus"] and {len(row) for row in matrix} == {exp["n_gpus"]}
    for title, i, j, value in exp["cells"]:
        assert out["matrices"][title][i][j] == pytest.approx(value), (title, i, j)
    for title, i, j, value in exp["cpu_cells"]:
        assert out["cpu_matrices"][title][i][j] == pytest.approx(value), (title, i, j)
    assert sorted(out["cpu_matrices"]) == sorted({c[0] for c in exp["cpu_cells"]})


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new p2p fixtures need expected values here"


def test_device_pci_fields(fixture_text):
    out = p2p_bandwidth.parse(fixture_text(f"{DIR}/8xA100-SXM4-80GB-nvlink-full-prompt.txt"))
    assert out["devices"][1] == {
        "index": 1,
        "name": "NVIDIA A100-SXM4-80GB",
        "bus_id": "0000:0a:00",
        "pci_bus_id": "a",
        "pci_device_id": "0",
        "pci_domain_id": "0",
    }


# --- truncated and damaged output ----------------------------------------------------------------


def test_file_ending_inside_a_row_keeps_a_partial_matrix(fixture_text):
    text = fixture_text(f"{DIR}/bidir-p2p-enabled-only-6xRTX4090-pcie.txt").rstrip("\n")
    cut = text[: text.rindex("50.44")]  # last row now: "5  50.12  50.09"
    out = p2p_bandwidth.parse(cut)
    assert out["ok"] is False
    assert out["matrices"][BI_ON][5] == [50.12, 50.09, None, None, None, None]
    assert out["matrices"][BI_ON][4][5] == 51.23
    assert any("incomplete" in w for w in out["warnings"])


def test_missing_rows_are_null(fixture_text):
    lines = fixture_text(f"{DIR}/latency-writes-6gpu-RTX6000ProWS-RTX5090-pcie5.txt").split("\n")
    out = p2p_bandwidth.parse("\n".join(lines[:6]))  # title, header, rows 0..3
    assert out["ok"] is False
    assert out["matrices"][LAT_ON][4] == [None] * 6
    assert out["matrices"][LAT_ON][3][3] == 2.07


def test_short_row_followed_by_more_output_is_a_parse_error(fixture_text):
    lines = fixture_text(f"{DIR}/2x2080Ti-pcie-switch-no-p2p.txt").split("\n")
    no = next(i for i, line in enumerate(lines) if line.strip() == "0 541.84   5.71")
    lines[no] = "     0 541.84"
    with pytest.raises(ParseError) as info:
        p2p_bandwidth.parse("\n".join(lines))
    assert info.value.line_no == no + 1
    assert f"line {no + 1}: expected a complete matrix row under '{UNI_OFF}'" in str(info.value)


def test_bad_cell_is_a_parse_error():
    text = f"{BI_ON}\n   D\\D     0      1\n     0 533.34   x.10\n"
    with pytest.raises(ParseError, match=r"line 3: expected row label 0\.\.1 and 2 numbers"):
        p2p_bandwidth.parse(text)


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        p2p_bandwidth.parse("Device list:\n  none\n")
    assert "p2pBandwidthLatencyTest: line 1: expected p2pBandwidthLatencyTest output" in str(
        info.value
    )


def test_cuda_failure_is_an_error_not_an_exception():
    text = (
        "[P2P (Peer-to-Peer) GPU Bandwidth Latency Test]\n"
        "Cuda failure p2pBandwidthLatencyTest.cu:642: 'system not yet initialized'\n"
    )
    out = p2p_bandwidth.parse(text)
    assert out["ok"] is False
    assert out["errors"] == [
        "Cuda failure p2pBandwidthLatencyTest.cu:642: 'system not yet initialized'"
    ]
