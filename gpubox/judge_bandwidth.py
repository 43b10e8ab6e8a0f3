"""Judging the bandwidth tier: a bench document (``gpubox bench run --json``) against the spec's
floors. No I/O here.

Each function returns a :class:`gpubox.judge.Verdict` whose level is ``pass`` (>= 1.05 x floor),
``warn`` (between the floor and 1.05 x floor), ``fail`` (below the floor, or the run failed) or
``skip`` (the GPU is missing or lost: see ``gpu_present``; or no floor can be known). Messages
name the host, the GPU(s) with bus id, measured vs floor and where the floor comes from, what
usually causes a shortfall, the drift from the calibrated baseline when there is one, and the
raw log::

    home gpu0 (04:00.0): host-to-device 3.3 GB/s, expected at least 11.13 GB/s (spec
    floors.h2d_gbps.gpu0): 70 % below the floor: NVML reads Gen3 x16 for this GPU, yet 3.3 GB/s
    is what a Gen3 x4 link carries: ... [log: /var/log/gpubox/bench/.../bandwidthTest-gpu0.log]
"""

from __future__ import annotations

import re
from dataclasses import replace

from gpubox import busid, floors, judge_pcie
from gpubox.bench import results
from gpubox.floors import Floor, format_size
from gpubox.judge import FAIL, PASS, SKIP, WARN, Verdict, _usable, find_gpu, label
from gpubox.spec import AllReduceFloor, MultinodeFloor, NodeSpec, gpu_id, pair_id

_DIRECTIONS = {"h2d": "host-to-device", "d2h": "device-to-host"}
_HOST_CAUSES = (
    "other usual causes: ACS or an IOMMU in translated mode on the path (iommu=pt), the "
    "benchmark on the far NUMA node, thermal throttling"
)
_P2P_CAUSES = (
    "usual causes: a slot or PCIe switch uplink at x4 or a low gen on the path (pairs across "
    "switches go through the host), ACS redirecting P2P through the root complex "
    "(tuning.disable_acs), an IOMMU in translated mode (tuning.iommu_passthrough), thermal "
    "throttling"
)
_ALLREDUCE_CAUSES = (
    "the slowest link in the ring sets the pace: a slot or PCIe switch uplink at x4, P2P "
    "unavailable (NCCL falls back to copies through host memory), ACS/IOMMU, thermal throttling"
)


def _size(size: int | None) -> str:
    """``33554432`` -> ``32 MiB``."""
    if not size:
        return "? bytes"
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _drift(baseline, key: str, measured: float) -> str:
    median = baseline.median(key) if baseline is not None else None
    if median is None:
        return ""
    return f"; baseline median {median:g} GB/s ({floors.drift(measured, median):+.1f} %)"


def _log(entry: dict | None) -> str:
    return f" [log: {entry['log']}]" if entry and entry.get("log") else ""


# nccl-tests' TESTCHECK trace (" .. host pid N: Test failure common.cu:1100") says where a
# failure was relayed, not what failed: it goes after the cause, whichever the tool's stdout
# and stderr interleaving printed first.
_TRACE = re.compile(r"^\.\.\s+\S+(?:\s+pid\s+\d+)?:\s+Test failure ")


def _errors(entry: dict) -> str:
    errors = entry.get("errors") or []
    if not errors:
        return f"exit {entry.get('exit_code')}"
    return "; ".join(sorted(errors, key=lambda e: bool(_TRACE.match(e))))


def _exit_note(entry: dict) -> str:
    code = entry.get("exit_code")
    if not code:
        return ""
    return f" (exit {code}: {str(entry.get('exit_meaning', '')).split(':')[0]})"


def _expected(floor: Floor) -> dict:
    return {"floor_gbps": floor.gbps, "source": floor.source, "detail": floor.detail}


def _missing_run(check: str, subject: str, host: str, who: str, what: str) -> Verdict:
    return Verdict(
        check,
        subject,
        FAIL,
        f"{host} {who}: no {what} run in the bench results: `gpubox bench run` did not run it "
        "(filtered with --tools?)",
        "a run",
        None,
    )


def _judged(
    check: str,
    subject: str,
    head: str,
    value: float,
    floor: Floor,
    cause: str,
    tail: str,
    found: dict,
) -> Verdict:
    """pass / warn / fail of ``value`` against ``floor`` (skip when no floor is known)."""
    expected = _expected(floor)
    if floor.gbps is None:
        return Verdict(check, subject, SKIP, f"{head} {value:g} GB/s, no floor: {floor.detail}")
    level = floors.level(value, floor.gbps)
    where = f"{floor.gbps:g} GB/s ({floor.detail})"
    if level == PASS:
        message = f"{head} {value:g} GB/s, floor {where}{tail}"
    elif level == WARN:
        message = (
            f"{head} {value:g} GB/s, within 5 % above the floor {where}: close to failing; "
            f"{cause}{tail}"
        )
    else:
        short = (1 - value / floor.gbps) * 100
        message = (
            f"{head} {value:g} GB/s, expected at least {where}: {short:.0f} % below the floor: "
            f"{cause}{tail}"
        )
    return Verdict(check, subject, level, message, expected, found)


# ---- host <-> device -------------------------------------------------------------------------


def _host_cause(spec: NodeSpec, snap: dict | None, index: int, value: float) -> str:
    gpu = find_gpu(spec, snap or {}, index) if snap else None
    link = (gpu or {}).get("pcie") or {}
    gen, width = link.get("gen_current"), link.get("width_current")
    gen_max, width_max = link.get("gen_max"), link.get("width_max")
    if gen and width and ((width_max and width < width_max) or (gen_max and gen < gen_max)):
        return (
            f"NVML shows the GPU's own link trained at Gen{gen} x{width} (capable of "
            f"Gen{gen_max} x{width_max}): reseat the GPU or riser cable, check the slot's "
            f"link settings in the BIOS; {_HOST_CAUSES}"
        )
    narrow = judge_pcie.narrow_hop(gpu)  # the slowest link above the GPU's own, from sysfs
    if gen and width:
        eq = floors.equivalent_width(value, gen)
        if eq is not None and eq < width:
            where = (
                f": the PCIe path shows {narrow}"
                if narrow
                else f", a slot or PCIe switch uplink at x{eq}"
            )
            return (
                f"NVML reads Gen{gen} x{width} for this GPU, yet {value:g} GB/s is what a "
                f"Gen{gen} x{eq} link carries: the bottleneck is upstream of the GPU{where} "
                f"(reseat the uplink cable, check the slot's width and bifurcation in the "
                f"BIOS); {_HOST_CAUSES}"
            )
    if narrow:
        return f"the PCIe path shows {narrow}, slower than the GPU's own link; {_HOST_CAUSES}"
    return (
        "usual causes: a slot or PCIe switch uplink at x4/x8 (NVML sees only the GPU's own "
        "link), a riser trained at a lower gen, ACS or an IOMMU in translated mode (iommu=pt), "
        "the benchmark on the far NUMA node, thermal throttling"
    )


def host_copy(
    spec: NodeSpec, snap: dict | None, bench: dict, direction: str, index: int, baseline=None
) -> Verdict:
    """bandwidthTest's pinned host-to-device (``h2d``) or device-to-host (``d2h``) copy."""
    check, subject, host, who = direction, gpu_id(index), spec.host, label(spec, index)
    words = _DIRECTIONS[direction]
    if snap is not None:
        _, skip = _usable(spec, snap, index, check, host)
        if skip:
            return skip
    entry = results.find_run(bench, "bandwidthTest", (index,))
    if entry is None:
        return _missing_run(check, subject, host, who, "bandwidthTest")
    value = results.host_copy(entry, direction, entry.get("size"))
    floor = floors.host_floor(spec, snap, direction, index, baseline)
    found = {"gbps": value, "log": entry.get("log"), "errors": entry.get("errors")}
    if value is None or entry.get("errors"):
        got = f"{value:g} GB/s, but " if value is not None else "no figure: "
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {words} copy: {got}bandwidthTest failed: {_errors(entry)}{_log(entry)}",
            _expected(floor),
            found,
        )
    size = entry.get("size")
    head = f"{host} {who}: {words} ({_size(size)}, {spec.bench.memory})"
    tail = _drift(baseline, floors.host_key(direction, index), value)
    cause = _host_cause(spec, snap, index, value)
    verdict = _judged(check, subject, head, value, floor, cause, tail, found)
    if verdict.level == FAIL:
        verdict = replace(verdict, message=verdict.message + _log(entry))
    return verdict


def h2d(spec: NodeSpec, snap: dict | None, bench: dict, index: int, baseline=None) -> Verdict:
    return host_copy(spec, snap, bench, "h2d", index, baseline)


def d2h(spec: NodeSpec, snap: dict | None, bench: dict, index: int, baseline=None) -> Verdict:
    return host_copy(spec, snap, bench, "d2h", index, baseline)


# ---- GPU <-> GPU -----------------------------------------------------------------------------


def _nvml_p2p(snap: dict | None, a: int, b: int, spec: NodeSpec) -> str | None:
    ga, gb = (find_gpu(spec, snap or {}, i) for i in (a, b))
    if not snap or not ga or not gb:
        return None
    entry = (snap.get("p2p") or {}).get(f"{ga['index']}-{gb['index']}") or {}
    if not entry:
        return None
    return f"READ {entry.get('read')}, WRITE {entry.get('write')}"


def p2p_bandwidth(
    spec: NodeSpec, snap: dict | None, bench: dict, a: int, b: int, baseline=None
) -> Verdict:
    """p2pBandwidthLatencyTest's bidirectional P2P bandwidth for one pair, P2P really used."""
    a, b = min(a, b), max(a, b)
    check, subject, host = "p2p_bandwidth", pair_id(a, b), spec.host
    who = f"{label(spec, a)} <-> {label(spec, b)}"
    if snap is not None:
        for index in (a, b):
            _, skip = _usable(spec, snap, index, check, host)
            if skip:
                return Verdict(check, subject, SKIP, skip.message)
    entry = results.find_run(bench, "p2pBandwidthLatencyTest")
    if entry is None:
        return _missing_run(check, subject, host, who, "p2pBandwidthLatencyTest")
    pair = results.p2p_pair(entry, spec, a, b)
    floor = floors.p2p_floor(spec, snap, a, b, baseline)
    found = {**pair, "log": entry.get("log"), "errors": entry.get("errors")}
    if pair["gbps"] is None or entry.get("errors"):
        got = f"{pair['gbps']:g} GB/s, but " if pair["gbps"] is not None else "no figure: "
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: bidirectional P2P: {got}p2pBandwidthLatencyTest failed: "
            f"{_errors(entry)}{_log(entry)}",
            _expected(floor),
            found,
        )
    denied = [way for way, can in pair["can_access"].items() if can is False]
    if denied:
        nvml = _nvml_p2p(snap, a, b, spec)
        if nvml and "READ OK" in nvml and "WRITE OK" in nvml:
            why = (
                f"NVML reports P2P {nvml}, so the path refuses what the GPUs allow: ACS "
                "redirect on the PCIe switch ports (tuning.disable_acs) or an IOMMU in "
                "translated mode (tuning.iommu_passthrough, iommu=pt)"
            )
        else:
            why = f"NVML reports P2P {nvml or 'unknown'}: see test_p2p[{subject}]"
        ways = ", ".join(f"gpu{w.replace('->', ' -> gpu')}" for w in denied)
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: CUDA cannot access peer ({ways}: 'CANNOT Access Peer'), so its "
            f"{pair['gbps']:g} GB/s went through host memory, not P2P: {why}{_log(entry)}",
            {**_expected(floor), "can_access": True},
            found,
        )
    head = f"{host} {who}: bidirectional P2P"
    tail = _drift(baseline, floors.p2p_key(a, b), pair["gbps"])
    verdict = _judged(check, subject, head, pair["gbps"], floor, _P2P_CAUSES, tail, found)
    if verdict.level == FAIL:
        verdict = replace(verdict, message=verdict.message + _log(entry))
    return verdict


# ---- collectives -----------------------------------------------------------------------------


def _set_label(spec: NodeSpec, gpus) -> str:
    buses = [spec.gpus[g].bus_id for g in gpus if g < len(spec.gpus)]
    where = f" ({', '.join(busid.short(b) for b in buses)})" if len(buses) == len(gpus) else ""
    return "+".join(gpu_id(g) for g in gpus) + where


def allreduce(spec: NodeSpec, bench: dict, floor_spec: AllReduceFloor, baseline=None) -> Verdict:
    """nccl-tests busbw of one GPU set at one size, with its data check clean (``#wrong`` 0)."""
    check, subject, host = "allreduce", floor_spec.id, spec.host
    who = _set_label(spec, floor_spec.gpus)
    size = _size(floor_spec.size)
    binary = spec.bench.nccl_binary
    floor = floors.allreduce_floor(spec, floor_spec)
    entry = results.find_run(bench, "nccl-tests", floor_spec.gpus, floor_spec.size)
    if entry is None:
        return _missing_run(check, subject, host, who, f"{binary} at {size}")
    row = results.allreduce_row(entry, floor_spec.size)
    found = {"row": row, "log": entry.get("log"), "errors": entry.get("errors")}
    if row is None or row["busbw"] is None:
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {binary} printed no result at {size}: {_errors(entry)}: usual "
            "causes: a GPU off the bus or hung, NCCL cannot set up a path between the GPUs "
            "(P2P/ACS, /dev/shm too small in a container), a driver/NCCL mismatch; rerun with "
            f"NCCL_DEBUG=INFO{_log(entry)}",
            _expected(floor),
            found,
        )
    wrong = row["wrong"]
    if any(wrong.values()):
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {binary} at {size} returned wrong data (#wrong {wrong['oop']} "
            f"out-of-place, {wrong['ip']} in-place; expected 0){_exit_note(entry)}, busbw "
            f"{row['busbw']:g} GB/s: "
            "a GPU, its memory or a PCIe link corrupts transfers: check `dmesg` for AER and XID "
            f"errors and the ECC counters{_log(entry)}",
            {**_expected(floor), "wrong": 0},
            found,
        )
    if entry.get("errors"):
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {binary} at {size}: busbw {row['busbw']:g} GB/s, but the run "
            f"failed: {_errors(entry)}{_log(entry)}",
            _expected(floor),
            found,
        )
    head = f"{host} {who}: {binary} busbw at {size}"
    tail = _drift(baseline, floors.allreduce_key(floor_spec), row["busbw"])
    verdict = _judged(check, subject, head, row["busbw"], floor, _ALLREDUCE_CAUSES, tail, found)
    if verdict.level == FAIL:
        verdict = replace(verdict, message=verdict.message + _log(entry))
    return verdict


def bandwidth(spec: NodeSpec, snap: dict | None, bench: dict, baseline=None) -> list[Verdict]:
    """Every bandwidth-tier verdict, in the order ``checks/test_bandwidth.py`` runs them."""
    out = [h2d(spec, snap, bench, i, baseline) for i in range(spec.gpu_count)]
    out += [d2h(spec, snap, bench, i, baseline) for i in range(spec.gpu_count)]
    out += [p2p_bandwidth(spec, snap, bench, a, b, baseline) for a, b in spec.pairs()]
    out += [allreduce(spec, bench, f, baseline) for f in spec.floors.allreduce]
    out += [multinode(spec, bench, f, baseline) for f in spec.floors.multinode]
    return out


# ---- across nodes (mpirun) -------------------------------------------------------------------

_MULTINODE_CAUSES = (
    "usual causes: the network between the nodes (link speed, MTU, NCCL on TCP sockets instead "
    "of RDMA: check NCCL_SOCKET_IFNAME / NCCL_IB_HCA and the NIC's negotiated speed), then the "
    "slowest PCIe link in a node's ring"
)


def expected_ranks(floor: MultinodeFloor) -> dict[int, tuple[str, int]]:
    """Rank -> (host, GPU) as mpirun maps ``-H a:N,b:N`` by slot: a's GPUs first, in order."""
    n = len(floor.gpus)
    return {r: (floor.hosts[r // n], floor.gpus[r % n]) for r in range(floor.ranks)}


def _rank_gpu(floor: MultinodeFloor, rank: dict) -> str:
    """``gpu1 (0000:05:00)`` for a rank line (its device is a CUDA number in the GPU subset)."""
    device = rank.get("device")
    gpus = floor.gpus
    gpu = gpu_id(gpus[device]) if device is not None and 0 <= device < len(gpus) else "gpu?"
    return f"{gpu} ({rank['bus_id']})" if rank.get("bus_id") else gpu


def _whose(floor: MultinodeFloor, ranks: dict[int, dict], failure: dict) -> str:
    """``rank 3 on host b, gpu1 (0000:05:00)`` for a failure line (by tag, else host and pid)."""
    rank = failure.get("rank")
    if rank is None:
        rank = next(
            (
                r
                for r, line in ranks.items()
                if line["host"] == failure["host"]
                and (failure.get("pid") is None or line.get("pid") == failure["pid"])
            ),
            None,
        )
    if rank is None:
        return f"a rank on host {failure['host']}"
    if rank in ranks:
        return f"rank {rank} on host {failure['host']}, {_rank_gpu(floor, ranks[rank])}"
    host, gpu = expected_ranks(floor).get(rank, (failure["host"], None))
    where = f", {gpu_id(gpu)}" if gpu is not None else ""
    return f"rank {rank} on host {failure['host'] or host}{where}"


def multinode(spec: NodeSpec, bench: dict, floor: MultinodeFloor, baseline=None) -> Verdict:
    """nccl-tests across several nodes under mpirun, judged from every rank's tagged lines:
    every expected rank on its host and GPU (rank 0's ``#  Rank`` lines), no rank failed, the
    data check clean, busbw at the floor's size at least ``busbw_gbps``."""
    check, subject, host = "multinode", floor.id, spec.host
    size = _size(floor.size)
    binary = spec.bench.nccl_binary
    who = f"{host} {binary} across {', '.join(floor.hosts)} ({floor.ranks} ranks)"
    floor_value = Floor(floor.busbw_gbps, "spec", f"spec floors.multinode[{floor.id}]")
    expected = {**_expected(floor_value), "ranks": floor.ranks, "hosts": list(floor.hosts)}
    entry = results.find_run(bench, "nccl-tests", floor.gpus, floor.size, floor.hosts)
    if entry is None:
        return _missing_run(
            check, subject, host, floor.id, f"{binary} (mpirun across nodes) at {size}"
        )
    parsed = entry.get("parsed") or {}
    mpi = entry.get("mpi") or {}
    ranks = {r["rank"]: r for r in parsed.get("ranks", [])}
    found = {"ranks": list(ranks.values()), "log": entry.get("log"), "errors": entry.get("errors")}

    def fail(message: str) -> Verdict:
        return Verdict(check, subject, FAIL, f"{who}: {message}{_log(entry)}", expected, found)

    launch = mpi.get("launch")
    if launch:
        return fail(_errors(entry))
    if entry.get("timed_out"):
        return fail(_errors(entry))
    failures = [f for f in mpi.get("failures") or [] if not _TRACE.match(f["line"])] or list(
        mpi.get("failures") or []
    )
    if failures:
        first = failures[0]
        others = len({(f.get("rank"), f["host"]) for f in failures}) - 1
        more = f" (and {others} more rank(s))" if others > 0 else ""
        return fail(
            f"{_whose(floor, ranks, first)} failed: {first['line']}{more}{_exit_note(entry)}: "
            "that rank's node: its GPU, driver or NCCL (rerun with NCCL_DEBUG=INFO), or the "
            "network between the nodes"
        )
    want = expected_ranks(floor)
    problems = []
    missing = [r for r in want if r not in ranks]
    if ranks and missing:
        problems.append(
            "missing from rank 0's report: "
            + ", ".join(f"rank {r} (host {want[r][0]}, {gpu_id(want[r][1])})" for r in missing)
        )
    extra = sorted(r for r in ranks if r not in want)
    if extra:
        problems.append(f"unexpected rank(s) {', '.join(map(str, extra))}")
    strangers = sorted({r["host"] for r in ranks.values()} - set(floor.hosts))
    if strangers:
        problems.append(f"rank(s) on host(s) not in the floor: {', '.join(strangers)}")
    for name in floor.hosts:
        on_host = [r for r in ranks.values() if r["host"] == name]
        if ranks and len(on_host) != len(floor.gpus) and not strangers:
            gpus = ", ".join(_rank_gpu(floor, r) for r in on_host) or "none"
            problems.append(
                f"host {name} ran {len(on_host)} rank(s) (GPUs: {gpus}), expected "
                f"{len(floor.gpus)} ({'+'.join(gpu_id(g) for g in floor.gpus)})"
            )
    if problems:
        return fail(
            f"expected {floor.ranks} ranks, {len(floor.gpus)} per host on "
            f"{', '.join(floor.hosts)}; found {len(ranks)}: " + "; ".join(problems)
        )
    row = results.allreduce_row(entry, floor.size)
    if not ranks or row is None or row["busbw"] is None:
        return fail(
            f"printed no result at {size}: {_errors(entry)}: usual causes: a rank's GPU off the "
            "bus or hung, NCCL cannot connect the nodes (firewall, NCCL_SOCKET_IFNAME); rerun "
            "with NCCL_DEBUG=INFO"
        )
    wrong = row["wrong"]
    if any(wrong.values()):
        return fail(
            f"returned wrong data at {size} (#wrong {wrong['oop']} out-of-place, {wrong['ip']} "
            f"in-place; expected 0){_exit_note(entry)}: a GPU, its memory, a PCIe link or the "
            "network corrupts transfers: check each node's `dmesg` for AER and XID errors"
        )
    if entry.get("errors"):
        return fail(f"busbw {row['busbw']:g} GB/s, but the run failed: {_errors(entry)}")
    layout = "; ".join(
        f"{name}: {', '.join(_rank_gpu(floor, r) for r in ranks.values() if r['host'] == name)}"
        for name in floor.hosts
    )
    head = f"{who} [{layout}]: busbw at {size}"
    key = f"multinode[{floor.id}]@{format_size(floor.size)}"
    tail = _drift(baseline, key, row["busbw"])
    found = {**found, "row": row}
    verdict = _judged(
        check, subject, head, row["busbw"], floor_value, _MULTINODE_CAUSES, tail, found
    )
    verdict = replace(verdict, expected={**(verdict.expected or {}), **expected})
    if verdict.level == FAIL:
        verdict = replace(verdict, message=verdict.message + _log(entry))
    return verdict
