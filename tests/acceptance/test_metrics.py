"""gpubox.prom as Prometheus reads it: every file is parsed by prometheus_client's own text parser,
and the values that come out are the values gpubox meant (full precision, labels escaped)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from gpubox import metrics


def parsed(text: str) -> dict[str, dict[tuple, float]]:
    """``{metric: {sorted label items: value}}`` as Prometheus' text parser reads ``text``."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type == "gauge", family.name
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_the_timestamp_keeps_every_digit(tmp_path, spec, snap, results_doc, write_record):
    # 2026-11-26 07:44:31 UTC = 1795679071 s: `{:g}` printed 1.79568e+09, 29 s off here and up
    # to ~5000 s off in general.
    record = write_record(tmp_path, "boot-a", results_doc(spec, snap("pg199-quad-debian13")), 1)
    record.meta["finished"] = "2026-11-26T07:44:31+00:00"
    text = metrics.render(record)
    stamp = parsed(text)["gpubox_acceptance_last_run_timestamp_seconds"][()]
    expected = datetime.fromisoformat("2026-11-26T07:44:31+00:00").timestamp()
    assert stamp == expected == 1795679071
    assert "gpubox_acceptance_last_run_timestamp_seconds 1795679071\n" in text


def test_a_whole_record_parses_and_reads_back(tmp_path, spec, snap, results_doc, write_record):
    snapshot = snap("fault-gpu0-x4")
    record = write_record(tmp_path, "boot-b", results_doc(spec, snapshot), 2)
    values = parsed(metrics.render(record))
    assert values["gpubox_acceptance_success"][()] == 0
    assert values["gpubox_acceptance_checks"][(("outcome", "failed"),)] == 1
    gpu0 = (("bus_id", snapshot["gpus"][0]["bus_id"]), ("gpu", "gpu0"))
    assert values["gpubox_gpu_pcie_link_width"][gpu0] == 4
    assert values["gpubox_gpu_present"][gpu0] == 1
    assert values["gpubox_check_passed"][(("check", "test_pcie[gpu0]"),)] == 0
    assert len(values["gpubox_check_passed"]) == len(results_doc(spec, snapshot)["checks"])


def test_large_and_fractional_values_are_exact(tmp_path, spec, snap, results_doc, write_record):
    results = results_doc(spec, snap("pg199-quad-debian13"))
    results["hosts"][spec.host]["bench"] = {"measurements": {"h2d[gpu0]": 13.123456789}}
    results["hosts"][spec.host]["snapshot"]["gpus"][0]["clocks"]["sm_mhz"] = 1234567
    record = write_record(tmp_path, "boot-c", results, 3)
    values = parsed(metrics.render(record))
    assert values["gpubox_bandwidth_gbps"][(("measurement", "h2d[gpu0]"),)] == 13.123456789
    assert max(values["gpubox_gpu_sm_clock_mhz"].values()) == 1234567


def test_label_values_are_escaped_as_the_format_says(
    tmp_path, spec, snap, results_doc, write_record
):
    results = results_doc(spec, snap("pg199-quad-debian13"))
    results["checks"][0]["id"] = 'checks/test_x.py::test_odd[a"b\\c\nd]'
    record = write_record(tmp_path, "boot-d", results, 4)
    values = parsed(metrics.render(record))
    assert (("check", 'test_odd[a"b\\c\nd]'),) in values["gpubox_check_passed"]


def test_every_hop_of_the_pcie_paths_once(tmp_path, spec, snap, results_doc, write_record):
    for n, fault in enumerate(
        ["fault-pcie-uplink-x8", "fault-pcie-aer-fatal", "fault-pcie-replays"]
    ):
        record = write_record(tmp_path, f"boot-p{n}", results_doc(spec, snap(fault)), n + 1)
        values = parsed(metrics.render(record))
        width = values["gpubox_pcie_link_width"]
        # 4 GPUs, 4 switch downstream ports, 2 switch upstream ports, 2 root ports.
        assert len(width) == 12
        up = (("bus_id", "0000:02:00.0"), ("role", "switch_upstream"))
        assert width[up] == (8 if fault == "fault-pcie-uplink-x8" else 16)
        assert values["gpubox_pcie_link_gen"][up] == 3
        port = (("bus_id", "0000:0e:10.0"), ("role", "switch_downstream"), ("severity", "fatal"))
        assert values["gpubox_pcie_aer_errors"][port] == (fault == "fault-pcie-aer-fatal")
        assert len(values["gpubox_pcie_aer_errors"]) == 36
        gpu1 = (("bus_id", "0000:05:00.0"), ("gpu", "gpu1"))
        assert values["gpubox_gpu_pcie_replays"][gpu1] == (
            1200 if fault == "fault-pcie-replays" else 0
        )
