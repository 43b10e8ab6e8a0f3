"""The report: sections and ids a script can rely on, plots embedded, and what Chromium shows."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

from gpubox import history, report
from tests import chromium

HEALTHY = "pg199-quad-debian13"
BENCH = {
    "h2d[gpu0]": 13.1,
    "d2h[gpu0]": 13.4,
    "h2d[gpu1]": 13.1,
    "d2h[gpu1]": 13.5,
    "h2d[gpu2]": 2.8,
    "d2h[gpu2]": 2.7,
    "h2d[gpu3]": 2.8,
    "d2h[gpu3]": 2.8,
    "p2p[gpu0-gpu1]": 12.87,
    "p2p[gpu0-gpu2]": 4.06,
    "p2p[gpu0-gpu3]": 4.05,
    "p2p[gpu1-gpu2]": 4.0,
    "p2p[gpu1-gpu3]": 4.1,
    "p2p[gpu2-gpu3]": 1.98,
    "allreduce[gpu0+gpu1]@32M": 11.2,
}


@pytest.fixture
def runs(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    """``runs(bench_last)``: five boots: healthy x2, lock lost, P2P CNS, gpu0 at x4 (with the
    bandwidth tier, h2d[gpu1] slow, when ``bench_last``)."""

    def make(bench_last: bool):
        folder = tmp_path / "runs"
        sequence = [
            results_doc(spec, snap(HEALTHY)),
            results_doc(spec, snap(HEALTHY), bench=BENCH),
            results_doc(spec, snap(HEALTHY, locked=False), unit_ok=False),
            results_doc(spec, snap("fault-p2p-pair-cns")),
            results_doc(
                spec,
                snap("fault-gpu0-x4"),
                bench={**BENCH, "h2d[gpu1]": 9.8} if bench_last else None,
            ),
        ]
        baseline = {"path": "/etc/gpubox/baseline.json", "medians": {"h2d[gpu1]": 13.1}}
        for n, results in enumerate(sequence, 1):
            write_record(folder, boot_ids[n - 1], results, n, baseline=baseline)
        return folder

    return make


def _doc(folder):
    return history.local(str(folder), full=True, spec_path="/nonexistent")


def _svg(element) -> str:
    src = element.attrs["src"]
    assert src.startswith("data:image/svg+xml;base64,")
    return base64.b64decode(src.split(",", 1)[1]).decode()


def test_sections_and_ids(runs, boot_ids):
    dom = chromium.parse(report.render_html(_doc(runs(bench_last=True))))
    summary = dom.by_id("summary")
    assert summary.attrs["data-ok"] == "false" and summary.attrs["data-host"] == "node0"
    assert summary.attrs["data-boot-id"] == boot_ids[4]
    previous = [li.text() for li in dom.by_id("changes-previous").find_all("li")]
    assert previous[:3] == [
        "gpu0 link x16 -> x4",
        "P2P gpu2<->gpu3 READ CNS -> OK, WRITE CNS -> OK",
        "h2d[gpu1] 13.1 -> 9.8 GB/s (-25%)",
    ]
    assert [li.text() for li in dom.by_id("changes-baseline").find_all("li")] == [
        "h2d[gpu1] 13.1 -> 9.8 GB/s (-25% vs baseline)"
    ]
    rows = dom.by_id("expected-vs-found").find_all("tr", cls="check")
    assert len(rows) == 53
    (failed,) = [r for r in rows if r.attrs["data-outcome"] == "failed"]
    assert rows[0] is failed and failed.attrs["data-check"] == "test_pcie[gpu0]"
    assert failed.find_all("td", cls="found")[0].text() == "gen: 3, width: 4"
    assert len(dom.by_id("gpus").find_all("tr", cls="gpu")) == 4
    heat = dom.by_id("p2p-heatmap")
    assert heat.attrs["data-kind"] == "bandwidth"
    assert "12.9" in _svg(dom.by_id("p2p-heatmap-img"))
    slow = dom.by_id("host-bandwidth-table").find_all("tr", data_measurement="h2d[gpu1]")[0]
    assert "failed" in slow.classes  # 9.8 under the spec's 11.13
    assert dom.by_id("allreduce-table").find_all("tr", data_measurement="allreduce[gpu0+gpu1]@32M")
    for plot in (
        "trend-checks",
        "trend-clocks",
        "trend-temperature",
        "trend-bandwidth",
        "trend-p2p",
    ):
        assert _svg(dom.by_id(plot)).startswith("<svg")
    boots = dom.by_id("boot-history").find_all("tr", cls="boot")
    assert [b.attrs["data-boot-id"] for b in boots] == boot_ids[:5][::-1]
    assert "clock lock missing" in boots[2].text()


def test_without_bandwidth_the_heatmap_shows_nvml_status(runs):
    dom = chromium.parse(report.render_html(_doc(runs(bench_last=False))))
    heat = dom.by_id("p2p-heatmap")
    assert heat.attrs["data-kind"] == "status"
    assert "NVML P2P READ/WRITE status" in heat.find_all("figcaption")[0].text()
    svg = _svg(dom.by_id("p2p-heatmap-img"))
    assert svg.count("R OK") == 12 and "#c62828" not in svg  # healthy P2P at the last boot
    assert "did not run" in dom.by_id("host-bandwidth").text()
    assert dom.find_all(id="host-bandwidth-img") == []


def test_the_page_needs_no_network(runs):
    page = report.render_html(_doc(runs(bench_last=True)))
    for needle in ("http://", "https://", "<script", "<link"):
        outside_svg_namespace = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert needle not in outside_svg_namespace


def test_the_terminal_summary_fits_a_screen(runs):
    text = report.render_terminal(_doc(runs(bench_last=True)))
    lines = text.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 100
    assert lines[0].startswith("node0  FAIL  boot ")
    assert "  gpu0 link x16 -> x4" in lines
    assert any(
        line.startswith("gpu1  05:00.0       Gen3 x16") and "9.8/13.5" in line for line in lines
    )


def test_the_commands(tmp_path, runs):
    folder = runs(bench_last=True)
    out = tmp_path / "r" / "node0.html"
    gpubox = [sys.executable, "-m", "gpubox"]
    proc = subprocess.run(
        [*gpubox, "report", "--runs-dir", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == f"report: {out}\n" and out.read_text().startswith("<!DOCTYPE html>")
    term = subprocess.run(
        [*gpubox, "report", "--runs-dir", str(folder), "--terminal"], capture_output=True, text=True
    )
    assert term.stdout.startswith("node0  FAIL")
    text = subprocess.run(
        [*gpubox, "history", "--runs-dir", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    assert "vs previous: clock lock missing" in text
    doc = json.loads(
        subprocess.run(
            [*gpubox, "history", "--runs-dir", str(folder), "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert doc["schema"] == "gpubox.history/1" and len(doc["boots"]) == 5
    assert "results" not in doc["boots"][0]
    missing = subprocess.run(
        [*gpubox, "history", "--runs-dir", str(tmp_path / "none")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


@pytest.mark.skipif(chromium.find() is None, reason="no chromium (apt-get install chromium)")
def test_chromium_renders_the_table_and_the_heatmap(tmp_path, runs):
    page = tmp_path / "report.html"
    page.write_text(report.render_html(_doc(runs(bench_last=False))))
    png = chromium.screenshot(page, tmp_path / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    dom = chromium.parse(chromium.dump_dom(page, measure_images=True))
    assert dom.find_all("body")[0].attrs.get("data-loaded") == "yes"
    assert len(dom.by_id("expected-vs-found").find_all("tr", cls="check")) == 53
    assert dom.by_id("p2p-heatmap").attrs["data-kind"] == "status"
    heat = dom.by_id("p2p-heatmap-img")
    assert heat.attrs["src"].startswith("data:image/svg+xml;base64,")
    # Every plot decoded and rendered (an invalid SVG has natural width 0).
    widths = {i.id: int(i.attrs["data-natural-width"]) for i in dom.find_all("img")}
    assert widths["p2p-heatmap-img"] > 300 and widths["trend-checks"] == 820
    assert all(w > 0 for w in widths.values()), widths


def _burn(stop: bool) -> dict:
    """A burn document in `gpubox burn --json`'s shape: 2 GPUs, 4 samples a second apart."""
    t = [0.0, 1.0, 2.0, 3.0]
    gpu = {
        "bus_id": "0000:04:00.0",
        "t": t,
        "sm_mhz": [1140] * 4,
        "event_reasons": [[]] * 4,
        "temp_c": [55, 62, 68, 73],
        "hbm_temp_c": [58, 66, 79, 96 if stop else 81],
        "power_w": [120.0, 240.5, 248.0, 251.0],
    }
    return {
        "ok": not stop,
        "limits": {"gpu_temp_c": 85, "hbm_temp_c": 85, "power_w": 300, "supply_w": 1400},
        "safety_stop": {"message": "gpu1 (05:00.0): HBM 96 C crossed the 85 C ceiling"}
        if stop
        else None,
        "telemetry": {"interval_s": 1.0, "gpus": {"0": gpu, "1": {**gpu, "temp_c": [50] * 4}}},
        "throughput": {
            "0": {"t": t, "gflops": [0, 12500, 12510, 12490]},
            "1": {"t": t, "gflops": [0, 12400, 12380, 12395]},
        },
    }


@pytest.mark.parametrize("stop", [False, True], ids=["healthy-burn", "safety-stop"])
def test_the_burn_shows_as_time_series_per_gpu(runs, stop):
    dom = chromium.parse(report.render_html(_doc(runs(bench_last=False)), _burn(stop)))
    section = dom.by_id("burn")
    assert section.attrs["data-ok"] == str(not stop).lower()
    for plot in ("burn-sm-mhz", "burn-temp-c", "burn-hbm-temp-c", "burn-power-w", "burn-gflops"):
        svg = _svg(dom.by_id(plot))
        assert "gpu0" in svg and "gpu1" in svg, plot
    assert "ceiling" in _svg(dom.by_id("burn-hbm-temp-c"))  # the limit drawn as a reference line
    stops = dom.find_all(id="burn-safety-stop")
    assert (len(stops) == 1 and "HBM 96 C" in stops[0].text()) if stop else stops == []


def test_no_burn_no_burn_section(runs):
    assert (
        chromium.parse(report.render_html(_doc(runs(bench_last=False)))).find_all(id="burn") == []
    )


def test_the_pcie_tree_colours_each_link_against_its_floor(
    tmp_path, spec, snap, results_doc, write_record, boot_ids
):
    write_record(tmp_path / "runs", boot_ids[0], results_doc(spec, snap(HEALTHY)), 1)
    write_record(tmp_path / "runs", boot_ids[1], results_doc(spec, snap("fault-pcie-uplink-x8")), 2)
    page = tmp_path / "report.html"
    page.write_text(report.render_html(_doc(tmp_path / "runs")))
    dom = chromium.parse(chromium.dump_dom(page, measure_images=True))
    links = {r.attrs["data-link"]: r for r in dom.by_id("pcie-links").find_all("tr", cls="link")}
    # Two switch uplinks and four GPU links, each once.
    assert len(links) == 6
    assert links["0000:02:00.0"].attrs["data-level"] == "fail"
    cells = [td.text() for td in links["0000:02:00.0"].find_all("td")]
    assert cells == ["switch uplink 02:00.0", "Gen3 x8", "gpu0, gpu1", "fail"]
    assert links["0000:0d:00.0"].attrs["data-level"] == "pass"  # x4, as the spec says
    assert {links[b].attrs["data-level"] for b in ("0000:04:00.0", "0000:0f:00.0")} == {"pass"}
    svg = _svg(dom.by_id("pcie-tree-img"))
    assert svg.count("<line ") == 6 and svg.count(report.FAIL_C) == 2  # the line and its label
    assert "root port" in svg and "PCIe switch" in svg and ">02:00.0<" in svg
    image = dom.by_id("pcie-tree-img")
    assert int(image.attrs["data-natural-width"]) >= 600  # drawn, not a broken image
    png = chromium.screenshot(page, tmp_path / "pcie.png")
    assert png.stat().st_size > 50_000


def test_a_gpu_lost_at_three_boots_heads_the_page(
    tmp_path, spec, snap, results_doc, write_record, boot_ids
):
    for n, name in enumerate([HEALTHY, "fault-gpu-lost", "fault-gpu-lost", "fault-gpu-lost"]):
        write_record(tmp_path, boot_ids[n], results_doc(spec, snap(name)), n + 1)
    doc = history.local(str(tmp_path), full=True, spec_path="/nonexistent")
    page = report.render_html(doc)
    section = page[page.index('<section id="escalated"') :]
    assert page.index('id="escalated"') < page.index('id="changes"')
    assert 'data-gpu="gpu1" data-check="test_gpu_present[gpu1]" data-boots="3"' in section
    assert "Needs hardware attention" in section
    assert "gpu1 needs hardware attention, not another reboot" in report.render_terminal(doc)
    doc["boots"] = doc["boots"][:3]  # two lost boots: no section yet
    assert 'id="escalated"' not in report.render_html(doc)
