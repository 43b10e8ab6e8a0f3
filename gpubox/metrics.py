"""The latest acceptance run as Prometheus metrics, for node_exporter's textfile collector.

Off by default; ``acceptance.metrics_dir`` (e.g. ``/var/lib/prometheus/node-exporter``, the
folder given to node_exporter's ``--collector.textfile.directory``) turns it on. Every run
rewrites ``gpubox.prom`` there atomically (a temp file renamed over it; node_exporter reads only
``*.prom`` files, so it never sees a partial one). The metrics::

    gpubox_acceptance_success 1                           1 when every check passed
    gpubox_acceptance_last_run_timestamp_seconds 1795679071   when the run finished
    gpubox_acceptance_checks{outcome="passed"} 54         checks by outcome
    gpubox_check_passed{check="test_pcie[gpu0]"} 1        one per check (0: failed)
    gpubox_gpu_present{gpu="gpu0",bus_id="0000:04:00.0"} 1
    gpubox_gpu_pcie_link_width{gpu="gpu0",...} 16         also _gen
    gpubox_gpu_sm_clock_mhz{...} 1140                      gpubox_gpu_temperature_celsius{...},
                                                          gpubox_gpu_hbm_temperature_celsius{...}
    gpubox_gpu_pcie_replays{gpu="gpu0",...} 0             NVML's replay counter since boot
    gpubox_pcie_link_width{bus_id="0000:02:00.0",role="switch_upstream"} 16    also _gen: every
                                                          hop of every GPU's path, once
    gpubox_pcie_aer_errors{bus_id=...,role=...,severity="correctable"} 0   since boot
    gpubox_bandwidth_gbps{measurement="h2d[gpu0]"} 13.1   when the bandwidth tier ran
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from gpubox import history
from gpubox.records import Record, write_file_atomic

FILENAME = "gpubox.prom"


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


def _number(value) -> str:
    """A sample value at full precision: an integral value as an integer (a Unix timestamp keeps
    every digit), any other float as ``repr`` (the shortest text that reads back as the same
    float); NaN and the infinities as the text format spells them."""
    if isinstance(value, bool | int):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(record: Record) -> str:
    """The text exposition of one record."""
    meta, results = record.meta, record.results
    host = meta.get("host")
    lines: list[str] = []

    def metric(name, help_text, kind, samples):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {_number(value)}")

    finished = meta.get("finished")
    stamp = datetime.fromisoformat(finished).timestamp() if finished else 0
    metric(
        "gpubox_acceptance_success",
        "1 when every check of the last acceptance run passed",
        "gauge",
        [("", 1 if meta.get("ok") else 0)],
    )
    metric(
        "gpubox_acceptance_last_run_timestamp_seconds",
        "when the last acceptance run finished",
        "gauge",
        [("", stamp)],
    )
    metric(
        "gpubox_acceptance_boot_info",
        "the boot the last acceptance run belongs to",
        "gauge",
        [(_labels(boot_id=record.boot_id, tiers=",".join(meta.get("tiers") or [])), 1)],
    )
    counts = meta.get("counts") or {}
    outcomes = ("passed", "failed", "skipped", "error")
    metric(
        "gpubox_acceptance_checks",
        "checks of the last acceptance run by outcome",
        "gauge",
        [(_labels(outcome=o), counts.get(o, 0)) for o in outcomes],
    )
    checks = history.outcomes(results)
    metric(
        "gpubox_check_passed",
        "1 when the check passed (or was skipped), 0 when it failed",
        "gauge",
        [(_labels(check=k), 0 if v == "failed" else 1) for k, v in sorted(checks.items())],
    )
    snap = history.snapshot(results, host)
    gpus = []
    for gpu in snap.get("gpus", []):
        labels = _labels(gpu=f"gpu{gpu.get('index')}", bus_id=gpu.get("bus_id") or "")
        gpus.append((labels, gpu))
    per_gpu = [
        ("gpubox_gpu_present", "1 when NVML answers for the GPU, 0 when it is lost", None),
        ("gpubox_gpu_pcie_link_gen", "current PCIe generation", ("pcie", "gen_current")),
        ("gpubox_gpu_pcie_link_width", "current PCIe link width, lanes", ("pcie", "width_current")),
        ("gpubox_gpu_pcie_replays", "PCIe replays since boot (NVML)", ("pcie", "replay_counter")),
        ("gpubox_gpu_sm_clock_mhz", "SM clock at the run, MHz", ("clocks", "sm_mhz")),
        ("gpubox_gpu_temperature_celsius", "GPU temperature, C", ("temperature_c",)),
        ("gpubox_gpu_hbm_temperature_celsius", "HBM temperature, C", ("hbm_temperature_c",)),
    ]
    for name, help_text, path in per_gpu:
        samples = []
        for labels, gpu in gpus:
            if path is None:
                samples.append((labels, 0 if gpu.get("lost") else 1))
                continue
            value = gpu
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                samples.append((labels, value))
        if samples:
            metric(name, help_text, "gauge", samples)
    _pcie_hops(metric, snap)
    bench = history.measurements(results, host)
    if bench:
        metric(
            "gpubox_bandwidth_gbps",
            "bandwidth measured by the last acceptance run, GB/s",
            "gauge",
            [(_labels(measurement=k), v) for k, v in sorted(bench.items())],
        )
    return "\n".join(lines) + "\n"


def _pcie_hops(metric, snap: dict) -> None:
    """Every device on a GPU's PCIe path once (a switch shared by two GPUs is one hop)."""
    hops: dict[str, dict] = {}
    for gpu in snap.get("gpus", []):
        path = gpu.get("pcie_path") or {}
        for hop in path.get("hops") or []:
            hops.setdefault(hop["bus_id"], hop)
    if not hops:
        return
    labelled = [
        (hop, _labels(bus_id=bus, role=hop.get("role") or "")) for bus, hop in sorted(hops.items())
    ]
    for key, name, what in (
        ("gen", "gpubox_pcie_link_gen", "current PCIe generation of the hop's link (sysfs)"),
        ("width", "gpubox_pcie_link_width", "current width of the hop's link, lanes (sysfs)"),
    ):
        samples = [(lb, (h.get("link") or {}).get(key)) for h, lb in labelled]
        samples = [(lb, v) for lb, v in samples if isinstance(v, int)]
        if samples:
            metric(name, what, "gauge", samples)
    samples = []
    for hop, _ in labelled:
        for severity in ("correctable", "nonfatal", "fatal"):
            total = ((hop.get("aer") or {}).get(severity) or {}).get("total")
            if isinstance(total, int):
                samples.append(
                    (
                        _labels(
                            bus_id=hop["bus_id"], role=hop.get("role") or "", severity=severity
                        ),
                        total,
                    )
                )
    if samples:
        metric(
            "gpubox_pcie_aer_errors",
            "AER errors the hop counted since boot (sysfs)",
            "gauge",
            samples,
        )


def write(metrics_dir: str, record: Record) -> Path:
    path = Path(metrics_dir) / FILENAME
    write_file_atomic(path, render(record))
    return path
