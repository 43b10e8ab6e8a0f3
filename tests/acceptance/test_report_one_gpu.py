"""The report of a one-GPU node whose boot ids are not UUIDs (issue 16, seen on a real H200): the
P2P panel's title fits its panel, the empty pair set reads as "no GPU pairs" (not
``test_p2p[NOTSET]``), boot ids are shown whole, and ``test_gpu_present`` shows what it expects.

Two records: one from the real H100 snapshot (tests/data/probe-h100-driver580.json) judged as
the checks judge it, and one written by the real ``gpubox accept`` on a one-GPU simulated node,
so the ``[NOTSET]`` entry is exactly what pytest and the checks plugin record."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox import history, records, report
from gpubox.sim import nvml, scenario
from gpubox.spec import NodeSpec
from tests import chromium

ROOT = Path(__file__).resolve().parents[2]
REAL = json.loads((ROOT / "tests" / "data" / "probe-h100-driver580.json").read_text())
H100 = {  # the machine the snapshot was taken on (as tests/spec/test_real_h100.py has it)
    "software": {"driver_version": "580.159.04"},
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "gpu_memory_mib": 81559,
    "gpus": [{"bus_id": "00:06.0"}],
    "pcie": {"min_gen": 5, "min_width": 16},
    "nvlink": "unsupported",
}
BOOTS = ["real-boot-1", "real-boot-2"]
NO_PAIRS = "skipped: no GPU pairs: the spec lists fewer than two GPUs"
needs_chromium = pytest.mark.skipif(
    chromium.find() is None, reason="no chromium (apt-get install chromium)"
)


@pytest.fixture
def h100_runs(tmp_path, results_doc, write_record):
    """Two boots of the H100 node; each results file also holds the empty-set entry the checks
    plugin writes for test_p2p on one GPU (its message is pytest's skip reason)."""
    spec = NodeSpec.from_data(H100, host="node0")
    folder = tmp_path / "runs"
    for n, boot in enumerate(BOOTS, 1):
        results = results_doc(spec, REAL)
        results["checks"].append(
            {
                "id": "checks/test_quick.py::test_p2p[NOTSET]",
                "outcome": "skipped",
                "duration_s": 0.0,
                "message": "got empty parameter set for (node, pair)",
                "verdict": None,
            }
        )
        results["counts"]["skipped"] = results["counts"].get("skipped", 0) + 1
        write_record(folder, boot, results, n)
    return folder


def _page(folder) -> str:
    return report.render_html(history.local(str(folder), full=True, spec_path="/nonexistent"))


def _svg(element) -> str:
    return base64.b64decode(element.attrs["src"].split(",", 1)[1]).decode()


def _row(dom, check):
    (row,) = dom.by_id("expected-vs-found").find_all("tr", data_check=check)
    return row


def test_boot_ids_that_are_not_uuids_are_shown_whole(h100_runs):
    dom = chromium.parse(_page(h100_runs))
    codes = [
        row.find_all("code")[0].text() for row in dom.by_id("boot-history").find_all("tr", "boot")
    ]
    assert codes == ["real-boot-2", "real-boot-1"]
    doc = history.local(str(h100_runs), full=True)
    terminal = report.render_terminal(doc)
    assert terminal.splitlines()[0].startswith("node0  ") and " boot real-boot-2 " in terminal
    listed = history.format_text(doc).splitlines()  # `gpubox history`
    assert [line.split()[1] for line in listed if line.split()[0] in ("1", "2")] == BOOTS


def test_uuid_boot_ids_are_still_shortened():
    uuid = "c5775118-3f0e-4b1c-9a51-0d6c1f2e7a44"
    assert records.short_boot_id(uuid) == "c5775118"
    assert records.short_boot_id("real-boot-0001") == "real-boot-0001"


def test_an_empty_pair_set_reads_as_no_gpu_pairs(h100_runs):
    page = _page(h100_runs)
    assert "NOTSET" not in page
    dom = chromium.parse(page)
    row = _row(dom, "test_p2p")
    assert row.attrs["data-outcome"] == "skipped"
    assert row.find_all("td", cls="id")[0].text() == "test_p2p"
    assert row.find_all("td", cls="message")[0].text() == NO_PAIRS
    assert row.find_all("span", cls="badge")[0].text() == "skip"


def test_gpu_present_shows_the_name_and_memory_it_expects(h100_runs):
    row = _row(chromium.parse(_page(h100_runs)), "test_gpu_present[gpu0]")
    assert row.attrs["data-outcome"] == "passed"
    expected = row.find_all("td", cls="expected")[0].text()
    assert expected == "name: NVIDIA H100 80GB HBM3, memory_mib: 81559"
    assert row.find_all("td", cls="found")[0].text() == expected


@needs_chromium
def test_the_p2p_panel_title_fits_its_panel_on_one_gpu(h100_runs):
    dom = chromium.parse(_page(h100_runs))
    assert dom.by_id("p2p-heatmap").attrs["data-kind"] == "status"
    laid_out = chromium.measure_svg(_svg(dom.by_id("p2p-heatmap-img")))
    title = laid_out["texts"][0]
    assert title["text"] == "NVML P2P status (READ / WRITE)"
    assert title["width"] > 100  # a font was found: the text has its real size
    assert title["x"] >= 0 and title["x"] + title["width"] <= laid_out["width"], laid_out
    for text in laid_out["texts"]:  # and every label of the one-GPU matrix
        assert text["x"] >= 0 and text["x"] + text["width"] <= laid_out["width"], text
        assert text["y"] >= 0 and text["y"] + text["height"] <= laid_out["height"], text


@needs_chromium
def test_every_heatmap_title_fits_whatever_the_gpu_count():
    for n in (1, 2, 4, 8):
        labels = [f"gpu{i}" for i in range(n)]
        for title in ("NVML P2P status (READ / WRITE)", "P2P bandwidth (GB/s)"):
            laid_out = chromium.measure_svg(report.heatmap(labels, {}, title))
            box = laid_out["texts"][0]
            assert box["x"] >= 0 and box["x"] + box["width"] <= laid_out["width"], (n, title)


# ---- the same through the real acceptance run ------------------------------------------------


@pytest.fixture
def accepted_one_gpu(tmp_path, spec):
    """A record written by `gpubox accept` on the simulated PG199 node with gpu1-3 taken off
    the bus, against a one-GPU spec, under a non-UUID boot id."""
    data = {"host": "node0", **spec.to_data()}
    data["software"]["nvml_library"] = str(nvml.library_path())
    data["gpus"], data["gpu_count"] = data["gpus"][:1], 1
    data["floors"] = {"h2d_gbps": 11.13, "d2h_gbps": 11.47}
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    one = tmp_path / "pg199-one-gpu.json"
    one.write_text(
        json.dumps(
            {
                "extends": "pg199-quad-debian13",
                "description": "The PG199 node with only gpu0 on the bus.",
                "set": {f"gpus[{i}].present": False for i in (1, 2, 3)},
            }
        )
    )
    env = nvml.environment(
        scenario.resolve_to_file(one, tmp_path / "scenario.json"), tmp_path / "state"
    )
    gpubox = [sys.executable, "-m", "gpubox"]
    subprocess.run(
        [*gpubox, "clocks", "lock", "--spec", str(spec_file)], env=env, capture_output=True
    )
    runs = tmp_path / "runs"
    subprocess.run(
        [*gpubox, "accept", "--no-notify", "--spec", str(spec_file)]
        + ["--checks", os.path.join(ROOT, "checks"), "--runs-dir", str(runs)]
        + ["--boot-id", "real-boot-0001"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return runs


def test_the_real_acceptance_record_of_one_gpu(accepted_one_gpu):
    (rec,) = records.list_records(accepted_one_gpu)
    ids = [c["id"].split("::")[-1] for c in rec.results["checks"]]
    assert "test_p2p[NOTSET]" in ids  # what pytest names the empty pair set
    page = _page(accepted_one_gpu)
    assert "NOTSET" not in page
    dom = chromium.parse(page)
    row = _row(dom, "test_p2p")
    assert row.attrs["data-outcome"] == "skipped"
    assert row.find_all("td", cls="message")[0].text() == NO_PAIRS
    (boot,) = dom.by_id("boot-history").find_all("tr", "boot")
    assert boot.find_all("code")[0].text() == "real-boot-0001"
    present = _row(dom, "test_gpu_present[gpu0]")
    assert present.find_all("td", cls="expected")[0].text() == (
        "name: NVIDIA DRIVE-PG199-PROD, memory_mib: 32768"
    )
