"""Reading a bench document (``gpubox bench run --json``): find runs, pull out the figures.

Pure functions shared by the judge (:mod:`gpubox.judge_bandwidth`) and ``gpubox calibrate``.
GPUs are the spec's indices; CUDA's device numbers are mapped to them by PCI bus id where the
tool prints one (p2pBandwidthLatencyTest, nccl-tests), else taken as equal (every tool runs
with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``).
"""

from __future__ import annotations

from gpubox import floors
from gpubox.spec import NodeSpec

BIDIRECTIONAL_P2P = "Bidirectional P2P=Enabled Bandwidth Matrix (GB/s)"


def find_run(
    doc: dict | None, tool: str, gpus=None, size: int | None = None, hosts=()
) -> dict | None:
    """The run of ``tool`` on ``gpus`` (any when None) at ``size`` (any when None), on this node
    alone (``hosts`` empty) or across ``hosts`` (a ``floors.multinode`` run)."""
    for entry in (doc or {}).get("runs", []):
        if entry.get("tool") != tool:
            continue
        if tuple(entry.get("hosts") or ()) != tuple(hosts):
            continue
        if gpus is not None and tuple(entry.get("gpus") or ()) != tuple(gpus):
            continue
        if size is not None and entry.get("size") != size:
            continue
        return entry
    return None


def host_copy(entry: dict, direction: str, size: int | None = None) -> float | None:
    """bandwidthTest's GB/s for ``direction`` (h2d, d2h, d2d) in a one-GPU run."""
    parsed = entry.get("parsed") or {}
    values = [
        r["gbps"]
        for r in parsed.get("results", [])
        if r.get("direction") == direction and (size is None or r.get("size_bytes") == size)
    ]
    return values[-1] if values else None


def _cuda_index(parsed: dict, spec: NodeSpec, gpu: int) -> int:
    """CUDA's device number of the spec's GPU ``gpu``, by bus id when the output lists them."""
    if gpu < len(spec.gpus):
        want = spec.gpus[gpu].bus_id.rsplit(".", 1)[0].lower()  # 0000:04:00.0 -> 0000:04:00
        for device in parsed.get("devices", []):
            if str(device.get("bus_id", "")).lower() == want:
                return device["index"]
    return gpu


def p2p_pair(entry: dict, spec: NodeSpec, a: int, b: int) -> dict:
    """Bidirectional P2P GB/s both ways (the lower is the pair's figure) and CUDA's peer access."""
    parsed = entry.get("parsed") or {}
    i, j = _cuda_index(parsed, spec, a), _cuda_index(parsed, spec, b)
    matrix = (parsed.get("matrices") or {}).get(BIDIRECTIONAL_P2P)
    ab = ba = None
    if matrix and max(i, j) < len(matrix):
        ab, ba = matrix[i][j], matrix[j][i]
    access = parsed.get("can_access") or {}
    values = [v for v in (ab, ba) if v is not None]
    return {
        "gbps": min(values) if values else None,
        "ab": ab,
        "ba": ba,
        "can_access": {f"{a}->{b}": access.get(f"{i}-{j}"), f"{b}->{a}": access.get(f"{j}-{i}")},
    }


def allreduce_row(entry: dict, size: int) -> dict | None:
    """The result row at ``size``: busbw (mean of out-of-place and in-place, what nccl-tests'
    "Avg bus bandwidth" is for a one-size run) and the ``#wrong`` counts."""
    parsed = entry.get("parsed") or {}
    for row in parsed.get("rows", []):
        if row.get("size") == size:
            busbw = [row[g].get("busbw") for g in ("oop", "ip") if row[g].get("busbw") is not None]
            return {
                "busbw": round(sum(busbw) / len(busbw), 4) if busbw else None,
                "oop": row["oop"],
                "ip": row["ip"],
                "wrong": {g: row[g].get("wrong") for g in ("oop", "ip")},
            }
    return None


def measurements(doc: dict, spec: NodeSpec) -> dict[str, float]:
    """Every figure of a bench document that a floor judges, keyed like ``h2d[gpu0]``.

    Only clean runs count (exit 0, parsed, no error, no wrong data): what calibration may use.
    """
    out: dict[str, float] = {}
    for gpu in range(spec.gpu_count):
        entry = find_run(doc, "bandwidthTest", (gpu,))
        if entry and entry.get("ok"):
            for direction in ("h2d", "d2h"):
                value = host_copy(entry, direction, entry.get("size"))
                if value is not None:
                    out[floors.host_key(direction, gpu)] = value
    entry = find_run(doc, "p2pBandwidthLatencyTest")
    if entry and entry.get("ok"):
        for a, b in spec.pairs():
            pair = p2p_pair(entry, spec, a, b)
            if pair["gbps"] is not None and all(pair["can_access"].values()):
                out[floors.p2p_key(a, b)] = pair["gbps"]
    for floor in spec.floors.allreduce:
        entry = find_run(doc, "nccl-tests", floor.gpus, floor.size)
        row = allreduce_row(entry, floor.size) if entry and entry.get("ok") else None
        if row and row["busbw"] is not None and not any(row["wrong"].values()):
            out[floors.allreduce_key(floor)] = row["busbw"]
    return out
