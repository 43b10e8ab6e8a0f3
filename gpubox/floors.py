"""Bandwidth floors: what each bandwidth measurement must reach, and why that number.

A floor comes from the first of these that exists:

1. **the spec**: ``floors.h2d_gbps`` / ``d2h_gbps`` (per GPU or a default), ``floors.p2p_gbps``
   (per pair or a default), ``floors.allreduce[]`` (always explicit);
2. **the calibrated baseline** (``gpubox calibrate``; file named by ``bench.baseline``): the
   measurement's median on the known-good node times ``1 - margin``;
3. **the PCIe link** NVML reports for the GPU (its *current* generation and width): the
   theoretical per-direction bandwidth of that link (:data:`PCIE_GBPS_PER_LANE` x lanes) times
   ``floors.link_factor``. For P2P it is the slower of the two GPUs' links, per direction: PCIe
   P2P through a switch or a root complex seldom beats one direction's bandwidth even when both
   directions run (the first user's node: 12.87 GB/s bidirectional on Gen3 x16 links, 82 % of
   one direction's 15.76 GB/s).

NVML reports the link between a GPU and its PCIe switch, not the switch's uplink to the host, so
a link-derived floor cannot see a slow uplink (x4 slot, bifurcation): give explicit floors or
calibrate on such a node.

Judging (:func:`level`, Azure HPC health checks' rule): ``pass`` at >= 1.05 x floor, ``warn``
between the floor and 1.05 x floor, ``fail`` below the floor::

    >>> link_gbps(3, 16), level(13.1, 11.14), level(11.5, 11.14), level(3.3, 11.14)
    (15.76, 'pass', 'warn', 'fail')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpubox.spec import AllReduceFloor, NodeSpec, gpu_id, pair_id

# Theoretical bandwidth per lane and direction, GB/s, after line encoding (8b/10b for Gen1-2,
# 128b/130b for Gen3-5, FLIT/PAM4 for Gen6): Gen3 x16 = 15.76, Gen4 x16 = 31.5, Gen5 x16 = 63.
PCIE_GBPS_PER_LANE = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.877}
# Share of the theoretical figure a healthy host<->device copy reaches (pg199.md: 13.1 / 15.76 =
# 83 % on the first user's node; ~88 % measured on Gen5). Used only to name the link a measured
# figure corresponds to, never as a floor.
TYPICAL_EFFICIENCY = 0.83
WARN_BAND = 0.05  # warn within 5 % above the floor
PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"


@dataclass(frozen=True)
class Floor:
    """One floor: GB/s (None: no floor known), where it came from, and in words."""

    gbps: float | None
    source: str  # "spec", "baseline", "link" or "none"
    detail: str  # e.g. "spec floors.h2d_gbps.gpu0", "Gen3 x16 link: 15.76 GB/s x 0.75"

    def as_dict(self) -> dict[str, Any]:
        return {"gbps": self.gbps, "source": self.source, "detail": self.detail}


# ---- measurement keys: the names baselines and messages use ----------------------------------


def format_size(size: int) -> str:
    """``33554432`` -> ``32M`` (K/M/G are powers of 1024, as nccl-tests reads them).

    >>> format_size(33554432), format_size(1000)
    ('32M', '1000')
    """
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def host_key(direction: str, gpu: int) -> str:
    """``h2d[gpu0]`` / ``d2h[gpu0]``."""
    return f"{direction}[{gpu_id(gpu)}]"


def p2p_key(a: int, b: int) -> str:
    """``p2p[gpu0-gpu1]``."""
    return f"p2p[{pair_id(a, b)}]"


def allreduce_key(floor: AllReduceFloor) -> str:
    """``allreduce[gpu0+gpu1]@32M``."""
    return f"allreduce[{floor.id}]@{format_size(floor.size)}"


# ---- arithmetic ------------------------------------------------------------------------------


def link_gbps(gen: int | None, width: int | None) -> float | None:
    """Theoretical per-direction GB/s of a PCIe link, or None when gen/width are unknown."""
    if not gen or not width or gen not in PCIE_GBPS_PER_LANE:
        return None
    return round(PCIE_GBPS_PER_LANE[gen] * width, 2)


def equivalent_width(gbps: float, gen: int) -> int | None:
    """The standard link width a measured host copy corresponds to at ``gen`` (x1..x16).

    >>> equivalent_width(3.3, 3), equivalent_width(13.1, 3)
    (4, 16)
    """
    per_lane = PCIE_GBPS_PER_LANE.get(gen)
    if not per_lane or gbps <= 0:
        return None
    lanes = gbps / (per_lane * TYPICAL_EFFICIENCY)
    return min((1, 2, 4, 8, 16), key=lambda w: abs(w - lanes))


def level(measured: float, floor: float) -> str:
    """``pass`` (>= 1.05 x floor), ``warn`` (floor .. 1.05 x floor) or ``fail`` (below)."""
    if measured < floor:
        return FAIL
    if measured < floor * (1 + WARN_BAND):
        return WARN
    return PASS


def drift(measured: float, median: float) -> float:
    """Percent difference from a calibrated median (negative: slower)."""
    return (measured - median) / median * 100.0


# ---- resolving a floor -----------------------------------------------------------------------


def _link_of(snap: dict | None, spec: NodeSpec, index: int) -> tuple[int | None, int | None]:
    from gpubox.judge import find_gpu

    gpu = find_gpu(spec, snap or {}, index) if snap else None
    link = (gpu or {}).get("pcie") or {}
    return link.get("gen_current"), link.get("width_current")


def _baseline_floor(baseline, key: str) -> Floor | None:
    entry = baseline.get(key) if baseline is not None else None
    if entry is None:
        return None
    return Floor(
        entry["floor"],
        "baseline",
        f"baseline {baseline.path} (median {entry['median']:g} GB/s - {baseline.margin:.0%})",
    )


def host_floor(
    spec: NodeSpec, snap: dict | None, direction: str, index: int, baseline=None
) -> Floor:
    """Floor of a host-to-device (``h2d``) or device-to-host (``d2h``) copy for GPU ``index``."""
    per = spec.floors.h2d_gbps if direction == "h2d" else spec.floors.d2h_gbps
    field = f"floors.{direction}_gbps"
    explicit = per.get(index)
    if explicit is not None:
        where = f"{field}.{gpu_id(index)}" if index in dict(per.by_gpu) else field
        return Floor(explicit, "spec", f"spec {where}")
    from_baseline = _baseline_floor(baseline, host_key(direction, index))
    if from_baseline is not None:
        return from_baseline
    gen, width = _link_of(snap, spec, index)
    theoretical = link_gbps(gen, width)
    if theoretical is None:
        return Floor(None, "none", f"no {field}, no baseline and the PCIe link is unreadable")
    factor = spec.floors.link_factor
    return Floor(
        round(theoretical * factor, 2),
        "link",
        f"Gen{gen} x{width} link: {theoretical:g} GB/s x link_factor {factor:g}",
    )


def p2p_floor(spec: NodeSpec, snap: dict | None, a: int, b: int, baseline=None) -> Floor:
    """Floor of the bidirectional P2P bandwidth between GPUs ``a`` and ``b``."""
    per = spec.floors.p2p_gbps
    explicit = per.get(a, b)
    if explicit is not None:
        key = pair_id(a, b)
        where = f"floors.p2p_gbps.{key}" if key in dict(per.by_pair) else "floors.p2p_gbps"
        return Floor(explicit, "spec", f"spec {where}")
    from_baseline = _baseline_floor(baseline, p2p_key(a, b))
    if from_baseline is not None:
        return from_baseline
    links = [(_link_of(snap, spec, i), i) for i in (a, b)]
    rated = [(link_gbps(*link), link, i) for link, i in links]
    if any(r[0] is None for r in rated):
        return Floor(None, "none", "no floors.p2p_gbps, no baseline and a PCIe link is unreadable")
    theoretical, (gen, width), slower = min(rated, key=lambda r: r[0])
    factor = spec.floors.link_factor
    return Floor(
        round(theoretical * factor, 2),
        "link",
        f"the slower link ({gpu_id(slower)} Gen{gen} x{width}): {theoretical:g} GB/s per "
        f"direction x link_factor {factor:g}",
    )


def allreduce_floor(spec: NodeSpec, floor: AllReduceFloor) -> Floor:
    """all_reduce floors are always explicit (``floors.allreduce[]``)."""
    index = spec.floors.allreduce.index(floor)
    return Floor(floor.busbw_gbps, "spec", f"spec floors.allreduce[{index}]")
