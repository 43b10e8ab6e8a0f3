"""Boot history: what changed between two boot records, and against the calibrated baseline.

A change is a small dict ``{kind, subject, text, before, after}`` whose ``text`` reads as one
line a person can act on::

    gpu2 link x16 -> x4                        (kind link: NVML's current PCIe gen/width)
    h2d[gpu1] 13.1 -> 9.8 GB/s (-25%)          (kind bandwidth: the bandwidth tier's figures)
    clock lock missing: ...                    (kind clock: the clock checks flipped to failed)

What is compared, per host (the record's own host in the results file):

* the NVML snapshots: GPU count, GPUs missing / lost / back (by bus id), each GPU's current PCIe
  link, the driver version, P2P READ/WRITE status per pair, NVLink, persistence mode, a
  temperature step of :data:`TEMP_STEP_C` or more; each GPU's PCIe path (``gpu2 uplink 0d:00.0
  x4 -> x2``, ``gpu1 replays 0 -> 1200 since boot``, AER counts per hop, ACS on a switch port);
* the bandwidth measurements (``results.hosts[host].bench``, when the bandwidth tier ran): a
  change of :data:`BANDWIDTH_STEP` or more;
* the checks: the clock checks flipping (``clock lock missing`` / ``clock lock back``), every
  other check that went from passed to failed or back.

Across boots, :func:`escalations`: a check on a GPU (or a GPU pair) that failed at each of the
last :data:`ESCALATE_AFTER` or more consecutive boots: the same GPU failing the same way
(``test_gpu_present[gpu2]``: lost; ``test_xid[gpu1]``; ``test_pcie_path[gpu3]``: a narrowed
link) is a hardware problem a reboot did not fix, and history, the report, the webhook and the
Slurm drain reason say so.

Against the calibrated baseline (``gpubox calibrate``; the record keeps the medians in force at
the time): every measurement :data:`BANDWIDTH_STEP` or more away from its median, or under the
baseline's floor.

:func:`document` is what ``gpubox history --json`` prints; :func:`collect` gathers it from this
node or, over SSH, from inventory hosts; :func:`format_text` is the terminal table.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from typing import Any

from gpubox import records as records_mod

SCHEMA = "gpubox.history/1"
TEMP_STEP_C = 10
BANDWIDTH_STEP = 0.10
CLOCK_CHECKS = ("test_clock_unit", "test_clock_locked")
LOCAL_SPEC = "/etc/gpubox/spec.json"
HISTORY_TIMEOUT_S = 120.0  # `gpubox history --json --full` over SSH
# Three boots: one failure may be a bad boot, two a coincidence; at three the reboot that users
# try first has failed twice (gpud's users asked for this line between "reboot" and "replace").
ESCALATE_AFTER = 3
_ON_A_GPU = re.compile(r"\[(gpu\d+(?:-gpu\d+)?)\]$")  # test_xid[gpu1], test_p2p[gpu0-gpu1]


class HistoryError(RuntimeError):
    """History cannot be read (no records folder, a host unreachable): says where and why."""


def change(kind: str, subject: str, text: str, before: Any = None, after: Any = None) -> dict:
    return {"kind": kind, "subject": subject, "text": text, "before": before, "after": after}


# ---- reading one record's results ---------------------------------------------------------------


def host_entry(results: dict | None, host: str | None) -> dict:
    """``results.hosts[host]`` (the only host when ``host`` is not in it)."""
    hosts = (results or {}).get("hosts") or {}
    if host in hosts:
        return hosts[host] or {}
    return next(iter(hosts.values()), {}) if len(hosts) == 1 else {}


def snapshot(results: dict | None, host: str | None) -> dict:
    return host_entry(results, host).get("snapshot") or {}


def outcomes(results: dict | None) -> dict[str, str]:
    """Check outcome by short id (``test_pcie[gpu0]``)."""
    return {c["id"].split("::")[-1]: c.get("outcome") for c in (results or {}).get("checks", [])}


_VALUE_KEYS = ("gbps", "value", "measured", "busbw_gbps", "bandwidth_gbps", "median")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        for key in _VALUE_KEYS:
            if isinstance(value.get(key), int | float) and not isinstance(value.get(key), bool):
                return float(value[key])
    return None


def measurements(results: dict | None, host: str | None) -> dict[str, float]:
    """The bandwidth tier's figures, GB/s by measurement key (``h2d[gpu0]``, ``p2p[gpu0-gpu1]``,
    ``allreduce[gpu0+gpu1]@32M``); empty when the tier did not run.

    Read defensively: ``bench`` may hold them directly or under ``measurements``, as numbers or
    as objects with a ``gbps``-like value, or as a list of ``{key, gbps}`` objects.
    """
    entry = host_entry(results, host)
    bench = entry.get("bench")
    if isinstance(bench, dict) and str(bench.get("schema", "")).startswith("gpubox.bench/"):
        return _bench_document(bench, entry.get("spec"), host)
    if isinstance(bench, dict) and "measurements" in bench:
        bench = bench["measurements"]
    out: dict[str, float] = {}
    if isinstance(bench, dict):
        items = bench.items()
    elif isinstance(bench, list):
        items = [
            (next((e[k] for k in ("key", "id", "name", "measurement") if k in e), None), e)
            for e in bench
            if isinstance(e, dict)
        ]
    else:
        items = []
    for key, value in items:
        number = _number(value)
        if isinstance(key, str) and "[" in key and number is not None:
            out[key] = number
    return out


def _bench_document(doc: dict, spec_data: dict | None, host: str | None) -> dict[str, float]:
    """The figures of a ``gpubox bench run`` document (clean runs only), as calibrate reads
    them; empty when this gpubox or the recorded spec cannot read it."""
    try:
        from gpubox.bench.results import measurements as bench_measurements
        from gpubox.spec import NodeSpec

        spec = NodeSpec.from_data(spec_data or {}, host=host or "node")
        return dict(bench_measurements(doc, spec))
    except Exception:  # a record from another gpubox version
        return {}


def _gpu_names(results: dict | None, host: str | None, snap: dict) -> dict[str, str]:
    """bus id -> ``gpuN`` as the spec numbers GPUs (NVML index when the spec lists no bus ids)."""
    spec = host_entry(results, host).get("spec") or {}
    names = {}
    for index, gpu in enumerate(spec.get("gpus") or []):
        bus = gpu.get("bus_id") if isinstance(gpu, dict) else None
        if bus:
            names[bus] = f"gpu{index}"
    for gpu in snap.get("gpus", []):
        if gpu.get("bus_id") and gpu["bus_id"] not in names:
            names[gpu["bus_id"]] = f"gpu{gpu.get('index')}"
    return names


def _short_bus(bus: str) -> str:
    return bus[5:] if bus.startswith("0000:") else bus


# ---- diffs ---------------------------------------------------------------------------------------


def diff(
    before: records_mod.Record | None,
    after: records_mod.Record,
    measured: records_mod.Record | None = None,
) -> list[dict]:
    """What changed from the record ``before`` to ``after`` (empty: nothing noteworthy).

    Bandwidth is compared with ``measured``, the latest earlier record that has measurements
    (default ``before``): the bandwidth tier need not run at every boot.
    """
    if before is None:
        return []
    host = after.meta.get("host")
    old, new = before.results, after.results
    out: list[dict] = []
    if old is None or new is None:
        which = "this" if new is None else "the previous"
        return [change("record", "node", f"no check results in {which} record: cannot compare")]
    out += diff_snapshots(old, new, host)
    now = measurements(new, host)
    if now:
        reference = measured if measured is not None else before
        out += diff_measurements(measurements(reference.results, host), now)
    out += diff_checks(old, new, host)
    return out


def diff_snapshots(old_results: dict, new_results: dict, host: str | None) -> list[dict]:
    a, b = snapshot(old_results, host), snapshot(new_results, host)
    if not a or not b:
        return []
    names = {**_gpu_names(old_results, host, a), **_gpu_names(new_results, host, b)}

    def who(bus):
        return f"{names.get(bus, '?')} ({_short_bus(bus)})"

    out = []
    if a.get("gpu_count") != b.get("gpu_count"):
        out.append(
            change(
                "gpu_count",
                "node",
                f"GPU count {a.get('gpu_count')} -> {b.get('gpu_count')}",
                a.get("gpu_count"),
                b.get("gpu_count"),
            )
        )
    if a.get("driver_version") != b.get("driver_version"):
        out.append(
            change(
                "driver",
                "node",
                f"driver {a.get('driver_version')} -> {b.get('driver_version')}",
                a.get("driver_version"),
                b.get("driver_version"),
            )
        )
    ga, gb = _by_bus(a, b), _by_bus(b, a)
    for bus in sorted(set(ga) | set(gb), key=lambda x: names.get(x, x)):
        x, y = ga.get(bus), gb.get(bus)
        name = names.get(bus, "?")
        if y is None:
            out.append(change("gpu", name, f"{who(bus)} missing (was present)", "present", None))
            continue
        if x is None:
            out.append(change("gpu", name, f"{who(bus)} appeared", None, "present"))
            continue
        if x.get("lost") != y.get("lost"):
            state = "lost (GPU_IS_LOST)" if y.get("lost") else "back (no longer lost)"
            out.append(change("gpu", name, f"{who(bus)} {state}", x.get("lost"), y.get("lost")))
            continue
        if y.get("lost"):
            continue
        out += _gpu_diff(name, x, y)
    out += _p2p_diff(a, b, names)
    return out


def _by_bus(snap: dict, other: dict) -> dict[str, dict]:
    """GPUs by bus id; a GPU lost before NVML gave its bus id takes the bus id that its NVML
    index has in the other snapshot."""
    other_bus = {g.get("index"): g.get("bus_id") for g in other.get("gpus", [])}
    out = {}
    for gpu in snap.get("gpus", []):
        bus = gpu.get("bus_id") or (other_bus.get(gpu.get("index")) if gpu.get("lost") else None)
        if bus:
            out[bus] = gpu
    return out


def _gpu_diff(name: str, x: dict, y: dict) -> list[dict]:
    out = []
    la, lb = x.get("pcie") or {}, y.get("pcie") or {}
    gen = (la.get("gen_current"), lb.get("gen_current"))
    width = (la.get("width_current"), lb.get("width_current"))
    if gen[0] != gen[1] or width[0] != width[1]:
        parts_a, parts_b = [], []
        if gen[0] != gen[1]:
            parts_a.append(f"Gen{gen[0]}")
            parts_b.append(f"Gen{gen[1]}")
        if width[0] != width[1]:
            parts_a.append(f"x{width[0]}")
            parts_b.append(f"x{width[1]}")
        out.append(
            change(
                "link",
                name,
                f"{name} link {' '.join(parts_a)} -> {' '.join(parts_b)}",
                f"Gen{gen[0]} x{width[0]}",
                f"Gen{gen[1]} x{width[1]}",
            )
        )
    if x.get("name") != y.get("name"):
        out.append(change("gpu", name, f"{name} is now {y.get('name')} (was {x.get('name')})"))
    nva, nvb = _nvlink_words(x.get("nvlink")), _nvlink_words(y.get("nvlink"))
    if nva != nvb:
        out.append(change("nvlink", name, f"{name} NVLink {nva} -> {nvb}", nva, nvb))
    pa, pb = x.get("persistence_mode"), y.get("persistence_mode")
    if pa != pb and pa is not None and pb is not None:
        out.append(
            change("persistence", name, f"{name} persistence mode {_onoff(pa)} -> {_onoff(pb)}")
        )
    for key, what in (("temperature_c", "GPU"), ("hbm_temperature_c", "HBM")):
        ta, tb = x.get(key), y.get(key)
        numbers = isinstance(ta, int | float) and isinstance(tb, int | float)
        if numbers and abs(tb - ta) >= TEMP_STEP_C:
            out.append(change("temperature", name, f"{name} {what} {ta:g} -> {tb:g} C", ta, tb))
    ra, rb = x.get("remapped_rows") or {}, y.get("remapped_rows") or {}
    for key in ("pending", "failure"):
        if ra.get(key) != rb.get(key) and rb.get(key):
            out.append(change("remapped_rows", name, f"{name} row remap {key}", ra, rb))
    return out + _path_diff(name, x, y)


def _hops(gpu: dict) -> dict[str, dict]:
    path = gpu.get("pcie_path") or {}
    return {h["bus_id"]: h for h in path.get("hops") or [] if path.get("available")}


def _path_diff(name: str, x: dict, y: dict) -> list[dict]:
    """The GPU's PCIe path: each link above its own (gen/width), the replay counter, every hop's
    AER counts and ACS. Counters start again at every boot, so a change is this boot's count
    against the last one's."""
    from gpubox.judge_pcie import hop_name, uplink_name
    from gpubox.pcie_path import ACS_P2P_BITS

    out = []
    ha, hb = _hops(x), _hops(y)
    for bus, low in hb.items():
        old = ha.get(bus)
        if old is None:
            continue
        if low.get("role") in ("switch_upstream", "bridge"):
            la, lb = old.get("link") or {}, low.get("link") or {}
            parts = [
                (f"{pre}{la.get(k)}", f"{pre}{lb.get(k)}")
                for k, pre in (("gen", "Gen"), ("width", "x"))
                if la.get(k) != lb.get(k)
            ]
            if parts:
                before, after = " ".join(a for a, _ in parts), " ".join(b for _, b in parts)
                where = uplink_name(low).replace("switch uplink", "uplink")
                out.append(
                    change("pcie_path", name, f"{name} {where} {before} -> {after}", before, after)
                )
        aa, ab = old.get("aer") or {}, low.get("aer") or {}
        for kind in ("correctable", "nonfatal", "fatal"):
            was, now = (aa.get(kind) or {}).get("total"), (ab.get(kind) or {}).get("total")
            if was is not None and now is not None and was != now:
                text = f"{name} AER {kind} at {hop_name(low)} {was} -> {now} since boot"
                out.append(change("pcie_errors", name, text, was, now))
        acs_a = [b for b in (old.get("acs") or {}).get("enabled") or [] if b in ACS_P2P_BITS]
        acs_b = [b for b in (low.get("acs") or {}).get("enabled") or [] if b in ACS_P2P_BITS]
        if old.get("acs") and low.get("acs") and acs_a != acs_b:
            words = (
                f"off -> on ({', '.join(acs_b)})" if not acs_a else "on -> off" if not acs_b
                else f"{', '.join(acs_a)} -> {', '.join(acs_b)}"
            )  # fmt: skip
            out.append(change("acs", name, f"{name} ACS at {hop_name(low)} {words}", acs_a, acs_b))
    ra, rb = (
        (x.get("pcie") or {}).get("replay_counter"),
        (y.get("pcie") or {}).get("replay_counter"),
    )
    if ra is not None and rb is not None and ra != rb:
        out.append(change("pcie_errors", name, f"{name} replays {ra} -> {rb} since boot", ra, rb))
    return out


def _onoff(value) -> str:
    return "on" if value else "off"


def _nvlink_words(state) -> str:
    if state == "not_supported":
        return "not supported"
    if isinstance(state, list):
        active = sum(1 for link in state if link.get("state") == "active")
        return f"{active}/{len(state)} links active"
    return "unknown"


def _p2p_diff(a: dict, b: dict, names: dict[str, str]) -> list[dict]:
    """Per unordered pair: which capability went from what to what (either direction)."""
    index_a = {g.get("index"): g.get("bus_id") for g in a.get("gpus", [])}
    index_b = {g.get("index"): g.get("bus_id") for g in b.get("gpus", [])}
    pa, pb = a.get("p2p") or {}, b.get("p2p") or {}
    pairs: dict[tuple[str, str], list[str]] = {}
    for key in sorted(set(pa) | set(pb)):
        try:
            i, j = (int(n) for n in key.split("-"))
        except ValueError:
            continue
        bus = (index_b.get(i) or index_a.get(i), index_b.get(j) or index_a.get(j))
        if not all(bus):
            continue
        ends = tuple(sorted((names.get(bus[0], f"gpu{i}"), names.get(bus[1], f"gpu{j}"))))
        for cap in ("read", "write"):
            was, now = (pa.get(key) or {}).get(cap), (pb.get(key) or {}).get(cap)
            if was != now and now is not None and was is not None:
                words = f"{cap.upper()} {was} -> {now}"
                if words not in pairs.setdefault(ends, []):
                    pairs[ends].append(words)
    return [
        change("p2p", f"{x}-{y}", f"P2P {x}<->{y} {', '.join(words)}", None, words)
        for (x, y), words in sorted(pairs.items())
    ]


def diff_measurements(old: dict[str, float], new: dict[str, float]) -> list[dict]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            if a is not None:
                out.append(change("bandwidth", key, f"{key} not measured (was {a:.1f} GB/s)", a))
            continue
        if a > 0 and abs(b - a) / a >= BANDWIDTH_STEP:
            pct = (b - a) / a * 100
            out.append(
                change("bandwidth", key, f"{key} {a:.1f} -> {b:.1f} GB/s ({pct:+.0f}%)", a, b)
            )
    return out


def diff_checks(old_results: dict, new_results: dict, host: str | None = None) -> list[dict]:
    a, b = outcomes(old_results), outcomes(new_results)
    flips = [(k, a[k], b[k]) for k in b if k in a and a[k] != b[k] and "failed" in (a[k], b[k])]
    out = []
    clock = [f for f in flips if f[0].startswith(CLOCK_CHECKS)]
    if any(now == "failed" for _, _, now in clock):
        out.append(change("clock", "node", _clock_missing(new_results), "locked", "missing"))
    elif clock:
        out.append(change("clock", "node", "clock lock back", "missing", "locked"))
    for key, was, now in flips:
        if key.startswith(CLOCK_CHECKS):
            continue
        verb = "now failing" if now == "failed" else "now passing"
        out.append(change("check", key, f"{verb}: {key}", was, now))
    for key, now in b.items():  # e.g. the bandwidth tier ran at this boot only
        if key not in a and now == "failed":
            out.append(change("check", key, f"failing: {key} (not run at the previous boot)"))
    return out


def _clock_missing(results: dict) -> str:
    """``clock lock missing: <unit state>; gpu0, gpu1 SM 210 MHz [GpuIdle]`` from the verdicts."""
    details, gpus, seen = [], [], set()
    for c in results.get("checks", []):
        v = c.get("verdict") or {}
        if c.get("outcome") != "failed":
            continue
        if v.get("check") == "clock_unit":
            found = v.get("found") or {}
            bad = [
                w
                for w, ok in (("enabled", found.get("enabled")), ("active", found.get("active")))
                if not ok
            ]
            details.append(f"gpubox-clocks.service not {' and not '.join(bad)}")
        elif v.get("check") == "clock_locked":
            found = v.get("found") or {}
            reading = f"SM {found.get('sm_mhz')} MHz"
            reasons = found.get("reasons") or []
            if reasons:
                reading += f" [{', '.join(reasons)}]"
            gpus.append(v.get("subject"))
            seen.add(reading)
    if gpus:
        details.append(f"{', '.join(gpus)} at {' / '.join(sorted(seen))}")
    return "clock lock missing" + (f": {'; '.join(details)}" if details else "")


def baseline_changes(record: records_mod.Record) -> list[dict]:
    """This record's bandwidth against the calibrated medians the record was made with."""
    baseline = record.meta.get("baseline") or {}
    medians = baseline.get("medians") or {}
    floors = baseline.get("floors") or {}
    measured = measurements(record.results, record.meta.get("host"))
    out = []
    for key in sorted(measured):
        median = medians.get(key)
        if not median:
            continue
        value = measured[key]
        pct = (value - median) / median * 100
        below = floors.get(key) is not None and value < floors[key]
        if abs(pct) >= BANDWIDTH_STEP * 100 or below:
            extra = f", under the floor {floors[key]:.1f}" if below else ""
            out.append(
                change(
                    "baseline",
                    key,
                    f"{key} {median:.1f} -> {value:.1f} GB/s ({pct:+.0f}% vs baseline{extra})",
                    median,
                    value,
                )
            )
    return out


# ---- escalation across boots -------------------------------------------------------------------


def _failed_on_gpus(results: dict | None) -> dict[str, dict]:
    """The failed checks of one record that name a GPU or a pair: short id -> check."""
    out = {}
    for c in (results or {}).get("checks", []):
        short = c["id"].split("::")[-1]
        if c.get("outcome") == "failed" and _ON_A_GPU.search(short):
            out[short] = c
    return out


def escalation_streaks(found: list[records_mod.Record]) -> list[list[dict]]:
    """Per record (oldest first), its escalations as of that boot (see :func:`escalations`).

    A streak counts consecutive records in which the check failed; a boot where it passed, or
    whose checks did not run, ends it (nothing is escalated on a guess).
    """
    streaks: dict[str, dict] = {}
    out = []
    for record in found:
        now = {}
        for short, check in _failed_on_gpus(record.results).items():
            before = streaks.get(short)
            now[short] = {
                "check": short,
                "gpu": _ON_A_GPU.search(short).group(1),
                "boots": (before["boots"] if before else 0) + 1,
                "since": before["since"] if before else record.boot_id,
                "message": check.get("message") or "",
            }
        streaks = now
        out.append(
            [
                {**e, "text": escalation_text(e)}
                for e in sorted(now.values(), key=lambda e: e["check"])
                if e["boots"] >= ESCALATE_AFTER
            ]
        )
    return out


def escalations(found: list[records_mod.Record]) -> list[dict]:
    """What needs hardware attention at the latest boot: each check on a GPU that failed at each
    of the last :data:`ESCALATE_AFTER` or more consecutive boots, as
    ``{check, gpu, boots, since, message, text}``.

    >>> [e["text"] for e in escalations(records)]  # doctest: +SKIP
    ['gpu2 needs hardware attention, not another reboot: test_gpu_present[gpu2] failed at 3 consecutive boots: ...']
    """
    per_boot = escalation_streaks(found)
    return per_boot[-1] if per_boot else []


def escalation_text(e: dict) -> str:
    why = f": {e['message']}" if e.get("message") else ""
    return (
        f"{e['gpu']} needs hardware attention, not another reboot: {e['check']} failed at "
        f"{e['boots']} consecutive boots{why}"
    )


# ---- the history document -----------------------------------------------------------------------


def summary(record: records_mod.Record) -> dict:
    m = record.meta
    return {
        "boot_id": record.boot_id,
        "seq": m.get("seq"),
        "host": m.get("host"),
        "started": m.get("started"),
        "finished": m.get("finished"),
        "tiers": m.get("tiers"),
        "counts": m.get("counts") or {},
        "ok": m.get("ok"),
        "exit_status": m.get("exit_status"),
        "failed": m.get("failed") or [],
        "error": m.get("error"),
        "has_baseline": bool((m.get("baseline") or {}).get("medians")),
    }


def document(
    host: str | None, runs_dir: str, found: list[records_mod.Record], full: bool = False
) -> dict:
    """``gpubox history --json``: every boot (oldest first) with its changes; ``full`` adds each
    record's ``record.json`` and results (what ``gpubox report`` renders)."""
    boots, previous, measured = [], None, None
    for record, escalated in zip(found, escalation_streaks(found), strict=True):
        entry = summary(record)
        entry["escalated"] = escalated
        entry["changes"] = diff(previous, record, measured)
        entry["measured"] = bool(measurements(record.results, record.meta.get("host")))
        if entry["measured"]:
            measured = record
        entry["baseline_changes"] = baseline_changes(record)
        entry["first"] = previous is None
        if full:
            entry["record"] = record.meta
            entry["results"] = record.results
        boots.append(entry)
        previous = record
    return {"schema": SCHEMA, "host": host, "runs_dir": runs_dir, "boots": boots}


def local_runs_dir(spec_path: str = LOCAL_SPEC) -> tuple[str | None, str]:
    """(host name, runs folder) from this node's deployed spec; the defaults without one."""
    try:
        with open(spec_path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None, records_mod.DEFAULT_RUNS_DIR
    runs = (data.get("acceptance") or {}).get("runs_dir") or records_mod.DEFAULT_RUNS_DIR
    return data.get("host"), runs


def local(runs_dir: str | None = None, full: bool = False, spec_path: str = LOCAL_SPEC) -> dict:
    host, default_dir = local_runs_dir(spec_path)
    runs = runs_dir or default_dir
    found = records_mod.list_records(runs)
    if not found and not os.path.isdir(runs):
        raise HistoryError(
            f"no boot records: {runs} does not exist (is gpubox-acceptance.service deployed? "
            "`systemctl status gpubox-acceptance`)"
        )
    host = host or (found[-1].meta.get("host") if found else None)
    return document(host, runs, found, full)


def collect(
    inventory: str | None,
    hosts: list[str] | None = None,
    full: bool = False,
    runs_dir: str | None = None,
) -> list[dict]:
    """History documents: this node's (no inventory), or each inventory host's over SSH, where
    ``{install_dir}/venv/bin/gpubox history --json`` runs on the node."""
    if not inventory:
        doc = local(runs_dir, full)
        if hosts and doc["host"] not in hosts:
            raise HistoryError(
                f"this node is {doc['host']!r}, not {', '.join(hosts)}: give --inventory to "
                "read another host's history over SSH"
            )
        return [doc]
    import shlex

    from gpubox import remote
    from gpubox.inventory import load
    from gpubox.layout import venv_gpubox

    try:
        found = load(inventory, limit=hosts or None)
    except (FileNotFoundError, KeyError) as exc:
        raise HistoryError(str(exc)) from None
    docs = []
    for h in found:
        cmd = f"{venv_gpubox(h.spec.software.install_dir)} history --json" + (
            " --full" if full else ""
        )
        if runs_dir:
            cmd += f" --runs-dir {shlex.quote(runs_dir)}"
        try:  # OpenSSH, host keys verified as the deploy does (gpubox.remote)
            result = remote.connect(h.name, h.data).run(cmd, timeout=HISTORY_TIMEOUT_S)
        except remote.RemoteError as exc:
            raise HistoryError(str(exc)) from None
        if result.rc != 0:
            raise HistoryError(
                f"{h.name}: `{cmd}` exited {result.rc}: {result.stderr.strip()[-500:]}"
            )
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            raise HistoryError(f"{h.name}: `{cmd}` printed no JSON") from None
        doc["host"] = doc.get("host") or h.name
        doc["inventory_host"] = h.name
        docs.append(doc)
    return docs


def records_of(doc: dict) -> list[records_mod.Record]:
    """Records rebuilt from a ``--full`` history document (to render without the node)."""
    out = []
    for boot in doc.get("boots", []):
        if "record" in boot:
            out.append(
                records_mod.Record(
                    path=records_mod.Path(doc.get("runs_dir") or "") / boot["boot_id"],
                    meta=boot["record"],
                    _results=boot.get("results"),
                )
            )
    return out


# ---- terminal ------------------------------------------------------------------------------------


def counts_text(counts: dict) -> str:
    order = ("passed", "failed", "skipped", "error")
    parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
    parts += [f"{v} {k}" for k, v in counts.items() if k not in order and v]
    return ", ".join(parts) or "no checks ran"


def when(stamp: str | None) -> str:
    if not stamp:
        return "?"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def format_text(doc: dict) -> str:
    boots = doc.get("boots", [])
    lines = [
        f"{doc.get('host') or '?'}: {len(boots)} boot record(s) in {doc.get('runs_dir')} "
        "(oldest first)"
    ]
    if not boots:
        lines.append("  no boot has been recorded yet")
        return "\n".join(lines) + "\n"
    lines.append(f"  {'#':>3}  {'boot':8}  {'finished (UTC)':19}  {'result':4}  checks")
    for n, b in enumerate(boots, 1):
        result = "PASS" if b.get("ok") else "FAIL"
        lines.append(
            f"  {n:>3}  {records_mod.short_boot_id(b['boot_id']):8}  {when(b.get('finished')):19}  "
            f"{result:4}  "
            f"{counts_text(b.get('counts') or {})}"
        )
        if b.get("error"):
            lines.append(f"         ! {b['error']}")
        for e in b.get("escalated", []):  # before the changes: the line to act on
            lines.append(f"         !! {e['text']}")
        if b.get("first"):
            lines.append("         first record")
        elif not b.get("changes"):
            lines.append("         no change from the previous boot")
        for c in b.get("changes", []):
            lines.append(f"         vs previous: {c['text']}")
        for c in b.get("baseline_changes", []):
            lines.append(f"         vs baseline: {c['text']}")
    return "\n".join(lines) + "\n"
