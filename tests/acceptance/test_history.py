"""What history says changed between boots, from real snapshots of the simulated library."""

from __future__ import annotations

import pytest

from gpubox import history, records

HEALTHY = "pg199-quad-debian13"


def _texts(changes):
    return [c["text"] for c in changes]


@pytest.fixture
def two_boots(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    """``two_boots(after_results, before_results=healthy)`` -> the changes of the second boot."""

    def make(after, before=None, baseline=None):
        before = before or results_doc(spec, snap(HEALTHY))
        write_record(tmp_path, boot_ids[0], before, 1)
        write_record(tmp_path, boot_ids[1], after, 2, baseline=baseline)
        doc = history.local(str(tmp_path), spec_path="/nonexistent")
        return doc["boots"][1]

    return make


def test_a_healthy_boot_after_a_healthy_boot_changes_nothing(two_boots, spec, snap, results_doc):
    entry = two_boots(results_doc(spec, snap(HEALTHY)))
    assert entry["changes"] == [] and entry["baseline_changes"] == []
    assert entry["ok"] and entry["counts"] == {"passed": 53}  # no manifest check here


def test_an_x4_link_is_named(two_boots, spec, snap, results_doc):
    entry = two_boots(results_doc(spec, snap("fault-gpu0-x4")))
    assert _texts(entry["changes"]) == ["gpu0 link x16 -> x4", "now failing: test_pcie[gpu0]"]
    assert entry["changes"][0]["before"] == "Gen3 x16"


@pytest.mark.parametrize(
    ("fault", "changes"),
    [
        ("fault-pcie-uplink-x8", ["gpu0 uplink 02:00.0 x16 -> x8", "gpu1 uplink 02:00.0 x16 -> x8",
                                  "now failing: test_pcie_path[gpu0]", "now failing: test_pcie_path[gpu1]"]),
        ("fault-pcie-uplink-gen1", ["gpu0 uplink 02:00.0 Gen3 -> Gen1", "gpu1 uplink 02:00.0 Gen3 -> Gen1",
                                    "now failing: test_pcie_path[gpu0]", "now failing: test_pcie_path[gpu1]"]),
        ("fault-pcie-replays", ["gpu1 replays 0 -> 1200 since boot", "now failing: test_pcie_errors[gpu1]"]),
        ("fault-pcie-aer-correctable", [
            "gpu1 AER correctable at the GPU 05:00.0 0 -> 508 since boot",
            "gpu1 AER correctable at switch downstream port 03:10.0 0 -> 230 since boot",
            "now failing: test_pcie_errors[gpu1]",
        ]),
        ("fault-pcie-aer-fatal", [
            "gpu3 AER fatal at switch downstream port 0e:10.0 0 -> 1 since boot",
            "now failing: test_pcie_errors[gpu3]",
        ]),
        ("fault-pcie-acs-on", [
            "gpu2 ACS at switch downstream port 0e:08.0 off -> on (ReqRedir, CmpltRedir)",
            "gpu3 ACS at switch downstream port 0e:10.0 off -> on (ReqRedir, CmpltRedir)",
            "now failing: test_acs[gpu2]", "now failing: test_acs[gpu3]",
        ]),
    ],
)  # fmt: skip
def test_the_pcie_path_names_the_hop(two_boots, spec, snap, results_doc, fault, changes):
    entry = two_boots(results_doc(spec, snap(fault)))
    assert _texts(entry["changes"]) == changes


def test_a_gen1_link(two_boots, spec, snap, results_doc):
    entry = two_boots(results_doc(spec, snap("fault-gpu2-gen1")))
    assert "gpu2 link Gen3 -> Gen1" in _texts(entry["changes"])


def test_a_lost_clock_lock_reads_clock_lock_missing(two_boots, spec, snap, results_doc):
    entry = two_boots(results_doc(spec, snap(HEALTHY, locked=False), unit_ok=False))
    (clock,) = entry["changes"]
    assert clock["kind"] == "clock"
    assert clock["text"] == (
        "clock lock missing: gpubox-clocks.service not enabled and not active; "
        "gpu0, gpu1, gpu2, gpu3 at SM 210 MHz [GpuIdle]"
    )


def test_the_clock_lock_coming_back(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], results_doc(spec, snap(HEALTHY, locked=False)), 1)
    write_record(tmp_path, boot_ids[1], results_doc(spec, snap(HEALTHY)), 2)
    doc = history.local(str(tmp_path), spec_path="/nonexistent")
    assert _texts(doc["boots"][1]["changes"]) == ["clock lock back"]


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("fault-p2p-pair-cns", "P2P gpu2<->gpu3 READ OK -> CNS, WRITE OK -> CNS"),
        ("fault-gpu-missing", "gpu3 (10:00.0) missing (was present)"),
        ("fault-gpu-lost", "gpu1 (05:00.0) lost (GPU_IS_LOST)"),
        ("fault-wrong-driver", "driver 550.163.01 -> 535.183.01"),
        ("fault-hbm-95c", "gpu2 HBM"),
        ("fault-persistence-off", "gpu0 persistence mode on -> off"),
        ("fault-nvlink-active", "gpu1 NVLink not supported -> "),
    ],
)
def test_each_fault_shows_as_a_change(two_boots, spec, snap, results_doc, fault, words):
    entry = two_boots(results_doc(spec, snap(fault)))
    texts = _texts(entry["changes"])
    assert any(words in t for t in texts), texts
    assert any(t.startswith("now failing: ") for t in texts), texts


def test_the_gpu_count_change(two_boots, spec, snap, results_doc):
    texts = _texts(two_boots(results_doc(spec, snap("fault-gpu-missing")))["changes"])
    assert texts[0] == "GPU count 4 -> 3"


BENCH_BEFORE = {"h2d[gpu1]": 13.1, "d2h[gpu1]": 13.4, "p2p[gpu0-gpu1]": 12.9}
BENCH_AFTER = {"h2d[gpu1]": 9.8, "d2h[gpu1]": 13.3, "p2p[gpu0-gpu1]": 12.7}


@pytest.mark.parametrize(
    "shape",
    [
        lambda m: m,
        lambda m: {"measurements": {k: {"gbps": v, "floor": 1.0} for k, v in m.items()}},
        lambda m: [{"key": k, "gbps": v} for k, v in m.items()],
    ],
    ids=["plain", "measurements-objects", "list"],
)
def test_bandwidth_against_the_previous_boot_and_the_baseline(
    two_boots, spec, snap, results_doc, shape
):
    healthy = snap(HEALTHY)
    baseline = {
        "path": "/etc/gpubox/baseline.json",
        "medians": {"h2d[gpu1]": 13.1, "d2h[gpu1]": 13.5, "p2p[gpu0-gpu1]": 12.87},
        "floors": {"h2d[gpu1]": 11.1, "d2h[gpu1]": 11.5, "p2p[gpu0-gpu1]": 10.9},
    }
    entry = two_boots(
        results_doc(spec, healthy, bench=shape(BENCH_AFTER)),
        results_doc(spec, healthy, bench=shape(BENCH_BEFORE)),
        baseline=baseline,
    )
    assert _texts(entry["changes"]) == ["h2d[gpu1] 13.1 -> 9.8 GB/s (-25%)"]
    assert _texts(entry["baseline_changes"]) == [
        "h2d[gpu1] 13.1 -> 9.8 GB/s (-25% vs baseline, under the floor 11.1)"
    ]


def test_bandwidth_compares_with_the_last_boot_that_measured_it(
    tmp_path, spec, snap, results_doc, write_record, boot_ids
):
    healthy = snap(HEALTHY)
    write_record(tmp_path, boot_ids[0], results_doc(spec, healthy, bench=BENCH_BEFORE), 1)
    write_record(tmp_path, boot_ids[1], results_doc(spec, healthy), 2)  # quick tier only
    write_record(tmp_path, boot_ids[2], results_doc(spec, healthy, bench=BENCH_AFTER), 3)
    boots = history.local(str(tmp_path), spec_path="/nonexistent")["boots"]
    assert boots[1]["changes"] == []  # not measured at this boot: nothing to say
    assert _texts(boots[2]["changes"]) == ["h2d[gpu1] 13.1 -> 9.8 GB/s (-25%)"]


def test_a_record_without_results_is_said_so(tmp_path, spec, snap, results_doc, write_record):
    boots = [f"b{n}" for n in range(2)]
    write_record(tmp_path, boots[0], results_doc(spec, snap(HEALTHY)), 1)
    rec = write_record(tmp_path, boots[1], results_doc(spec, snap(HEALTHY)), 2)
    (rec.path / "results.json").unlink()
    doc = history.local(str(tmp_path), spec_path="/nonexistent")
    assert _texts(doc["boots"][1]["changes"]) == ["no check results in this record: cannot compare"]


def test_the_text_table(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], results_doc(spec, snap(HEALTHY)), 1)
    write_record(tmp_path, boot_ids[1], results_doc(spec, snap(HEALTHY)), 2)
    write_record(tmp_path, boot_ids[2], results_doc(spec, snap("fault-gpu0-x4")), 3)
    text = history.format_text(history.local(str(tmp_path), spec_path="/nonexistent"))
    lines = text.splitlines()
    assert lines[0] == f"node0: 3 boot record(s) in {tmp_path} (oldest first)"
    assert "PASS  53 passed" in lines[2] and "first record" in lines[3]
    assert "no change from the previous boot" in lines[5]
    assert "FAIL  52 passed, 1 failed" in lines[6]
    assert lines[7].strip() == "vs previous: gpu0 link x16 -> x4"


def test_no_records_folder_is_an_error(tmp_path):
    with pytest.raises(history.HistoryError, match="does not exist"):
        history.local(str(tmp_path / "nothing"), spec_path="/nonexistent")


def test_full_documents_rebuild_records(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], results_doc(spec, snap(HEALTHY)), 1)
    doc = history.local(str(tmp_path), full=True, spec_path="/nonexistent")
    (rec,) = history.records_of(doc)
    assert isinstance(rec, records.Record) and rec.results["counts"] == {"passed": 53}


@pytest.fixture
def boots_of(tmp_path, spec, snap, results_doc, write_record, boot_ids):
    """``boots_of([scenario, ...])`` -> the history document of those boots, in that order."""

    def make(scenarios):
        for n, name in enumerate(scenarios):
            write_record(tmp_path, boot_ids[n], results_doc(spec, snap(name)), n + 1)
        return history.local(str(tmp_path), spec_path="/nonexistent")

    return make


def test_a_gpu_lost_at_three_consecutive_boots_is_escalated(boots_of, boot_ids):
    doc = boots_of([HEALTHY, "fault-gpu-lost", "fault-gpu-lost", "fault-gpu-lost"])
    assert [b["escalated"] for b in doc["boots"][:3]] == [[], [], []]
    (e,) = doc["boots"][3]["escalated"]
    assert (e["check"], e["gpu"], e["boots"], e["since"]) == (
        "test_gpu_present[gpu1]",
        "gpu1",
        3,
        boot_ids[1],
    )
    assert e["text"].startswith(
        "gpu1 needs hardware attention, not another reboot: test_gpu_present[gpu1] failed at "
        "3 consecutive boots: node0 gpu1"
    ), e["text"]
    assert "GPU_IS_LOST" in e["text"]
    text = history.format_text(doc)
    assert f"!! {e['text']}" in text
    assert text.count("needs hardware attention") == 1
    recs = records.list_records(doc["runs_dir"])
    assert history.escalations(recs) == [e]


@pytest.mark.parametrize(
    "scenarios",
    [
        [HEALTHY, "fault-gpu-lost", "fault-gpu-lost"],  # two boots: may still be a bad boot
        ["fault-gpu-lost", "fault-gpu-lost", HEALTHY, "fault-gpu-lost"],  # a good boot between
        ["fault-gpu-lost", "fault-gpu-missing", "fault-gpu-lost"],  # other GPUs, other ways
    ],
    ids=["two-boots", "a-healthy-boot-between", "different-faults"],
)
def test_no_escalation_without_three_failures_in_a_row(boots_of, scenarios):
    doc = boots_of(scenarios)
    assert doc["boots"][-1]["escalated"] == []
    assert "hardware attention" not in history.format_text(doc)


def test_a_narrowed_link_at_four_boots_counts_four(boots_of):
    doc = boots_of(["fault-gpu0-x4"] * 4)
    (e,) = [e for e in doc["boots"][-1]["escalated"] if e["check"] == "test_pcie[gpu0]"]
    assert e["boots"] == 4 and "4 consecutive boots" in e["text"]
