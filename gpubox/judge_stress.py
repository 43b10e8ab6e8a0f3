"""Judging the stress tier: a node spec against a burn document (:func:`gpubox.burn.run`). No I/O.

Every function returns a :class:`gpubox.judge.Verdict` whose message names the host, the GPU
(index and bus id), what was expected, what was found and the usual cause::

    >>> v = temperature(spec, doc, 2)                                   # doctest: +SKIP
    >>> v.message                                                       # doctest: +SKIP
    'home gpu2 (0f:00.0): HBM reached 85 C (ceiling 85 C) during the burn: the safety stop ...'

One fault reads as one failure: when the safety stop ended the burn early, only the check that
owns the ceiling that was crossed fails (GPU or HBM temperature: ``temperature`` of that GPU; a
card's power: ``power``; the cards together: ``supply_budget``; a GPU lost: ``errors``) and the
others are skipped with a pointer to it, since a cut-short burn proves nothing else. Likewise
when gpu-burn never got going, ``errors`` fails and the measurements of that GPU are skipped.
"""

from __future__ import annotations

from typing import Any

from gpubox.judge import FAIL, PASS, SKIP, Verdict, label
from gpubox.spec import NodeSpec, gpu_id

# Which check owns each kind of safety stop.
_STOP_OWNER = {
    "temp_c": "burn_temperature",
    "hbm_temp_c": "burn_temperature",
    "power_w": "burn_power",
    "supply_w": "burn_supply_budget",
    "lost": "burn_errors",
}
_THERMAL = {"SwThermalSlowdown", "HwThermalSlowdown"}
_POWER = {"SwPowerCap", "HwPowerBrakeSlowdown"}


def _result(doc: dict, index: int) -> dict | None:
    return next((r for r in doc.get("results", []) if r.get("gpu") == index), None)


def _gate(spec: NodeSpec, doc: dict, index: int, check: str) -> tuple[dict | None, Verdict | None]:
    """This GPU's result, or the SKIP verdict that stands in for the check."""
    host, who, subject = spec.host, label(spec, index), gpu_id(index)
    result = _result(doc, index)
    if result is None:
        burned = ", ".join(gpu_id(g) for g in doc.get("gpus", []))
        return None, Verdict(
            check, subject, SKIP, f"{host} {who}: not burned (stress.gpus: {burned})"
        )
    stop = doc.get("safety_stop")
    if stop and not (_STOP_OWNER[stop["what"]] == check and stop.get("gpu") == index):
        owner = _STOP_OWNER[stop["what"]]
        where = f"[{gpu_id(stop['gpu'])}]" if stop.get("gpu") is not None else ""
        return None, Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: not judged: the safety stop ended the burn at {stop['at_s']:.1f} s "
            f"({stop['message']}); see test_{owner}{where}",
        )
    if check != "burn_errors" and not doc.get("load_window_s"):
        return None, Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: not judged: gpu-burn never reported progress; see "
            f"test_burn_errors[{subject}]",
        )
    return result, None


def errors(spec: NodeSpec, doc: dict, index: int) -> Verdict:
    """gpu-burn's verdict is OK, it did real work on this GPU, counted no error and never died."""
    check, subject, host, who = "burn_errors", gpu_id(index), spec.host, label(spec, index)
    r, skip = _gate(spec, doc, index, check)
    if skip:
        return skip
    stop = doc.get("safety_stop")
    expected = {"verdict": "OK", "errors": 0, "work": "> 0 multiplications"}
    found = {k: r.get(k) for k in ("verdict", "errors", "processed", "died", "warning")}
    if stop and stop["what"] == "lost":
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: fell off the bus during the burn ({stop['message']}), expected it to "
            "run to the end: power, riser or cooling under load (often XID 79); see the kernel log",
            expected,
            found,
        )
    problems, hint = [], ""
    if r.get("died"):
        problems.append("its gpu-burn worker DIED (proc'd -1)")
        hint = "a CUDA error in the worker: see the output and the kernel log for XIDs"
    elif r.get("errors") or r.get("warning"):
        problems.append(f"{r.get('errors')} computation errors (faulty elements)")
        hint = (
            "the GPU returns wrong results under load: unstable core or HBM (heat, power, a "
            "failing card); check XIDs 48/94/95 and remapped rows, rerun, replace the card if it "
            "repeats"
        )
    if r.get("verdict") is None:
        why = "; ".join(doc.get("errors", [])[:3]) or f"exit code {doc.get('exit_code')}"
        problems.append(f"no verdict ({why})")
        hint = hint or "gpu-burn did not finish: see its output"
    elif r.get("verdict") != "OK":
        problems.append(f"verdict {r['verdict']}")
    if not r.get("died") and not r.get("processed"):
        problems.append(
            "no work done (0 matrix multiplications"
            + (f") although its verdict is {r['verdict']}" if r.get("verdict") else ")")
        )
        hint = hint or (
            "its worker never reported: a CUDA error at start-up (gpu-burn prints 'Couldn't init "
            "a GPU test'), another process holding the GPU, or a hung GPU: check XIDs, reset it"
        )
    if problems:
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {', '.join(problems)}, expected verdict OK with real work and no "
            f"errors: {hint}",
            expected,
            found,
        )
    return Verdict(
        check,
        subject,
        PASS,
        f"{host} {who}: gpu-burn verdict OK, {r['processed']} multiplications, no errors",
        expected,
        found,
    )


def throughput(spec: NodeSpec, doc: dict, index: int, baseline: Any = None) -> Verdict:
    """Sustained Gflop/s (median of the second half of the run) at least the floor."""
    check, subject, host, who = "burn_throughput", gpu_id(index), spec.host, label(spec, index)
    r, skip = _gate(spec, doc, index, check)
    if skip:
        return skip
    floor, source = spec.stress.gflops.get(index), "stress.gflops"
    entry = baseline.get(f"burn[{subject}]") if baseline is not None else None
    if floor is None and entry:
        floor, source = entry["floor"], f"baseline {baseline.path}"
    found = r.get("gflops_sustained") or 0.0
    if floor is None:
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: {found:.0f} Gflop/s sustained; no floor (stress.gflops) and no "
            "calibrated baseline",
            None,
            found,
        )
    if found >= floor:
        return Verdict(
            check,
            subject,
            PASS,
            f"{host} {who}: {found:.0f} Gflop/s sustained (floor {floor:g}, {source})",
            floor,
            found,
        )
    return Verdict(
        check,
        subject,
        FAIL,
        f"{host} {who}: {found:.0f} Gflop/s sustained, expected at least {floor:g} ({source}): "
        "a clock below the lock or a slowdown (see test_burn_clock_held), another process on the "
        "GPU, or a worker that stalled (see test_burn_errors)",
        floor,
        found,
    )


def clock_held(spec: NodeSpec, doc: dict, index: int) -> Verdict:
    """The SM clock stayed at the lock while gpu-burn ran, with no thermal or power slowdown."""
    check, subject, host, who = "burn_clock_held", gpu_id(index), spec.host, label(spec, index)
    r, skip = _gate(spec, doc, index, check)
    if skip:
        return skip
    if not r.get("loaded_samples"):
        return Verdict(
            check, subject, SKIP, f"{host} {who}: no NVML sample fell inside the burn (too short)"
        )
    lock, tolerance = spec.clocks.graphics_mhz, spec.clocks.tolerance_mhz
    low, high, reasons = r.get("min_sm_mhz"), r.get("max_sm_mhz"), r.get("slowdown_reasons", [])
    expected = {"sm_mhz": lock, "tolerance_mhz": tolerance, "slowdown": []}
    found = {"min_sm_mhz": low, "max_sm_mhz": high, "slowdown": reasons}
    off = lock is not None and (
        low is None or high is None or abs(low - lock) > tolerance or abs(high - lock) > tolerance
    )
    if not off and not reasons:
        held = f"held at {low} MHz" + (f" (lock {lock})" if lock else " (no lock in the spec)")
        return Verdict(
            check,
            subject,
            PASS,
            f"{host} {who}: SM clock {held} over {r['loaded_samples']} samples, no slowdown",
            expected,
            found,
        )
    hints = []
    if set(reasons) & _THERMAL:
        hints.append("thermal slowdown: cooling (heatsink contact, paste, airflow)")
    if set(reasons) & _POWER:
        hints.append("power capping or the power brake: the supply or its cabling")
    if "HwSlowdown" in reasons:
        hints.append("HW slowdown: the board asserted power brake or over-temperature")
    if off and not reasons:
        hints.append(
            "no slowdown reported: the lock is not in force (lost at a reboot or never applied; "
            "`systemctl status gpubox-clocks`)"
        )
    want = f"the lock {lock} MHz (+/-{tolerance})" if lock else "a steady clock"
    return Verdict(
        check,
        subject,
        FAIL,
        f"{host} {who}: SM clock {low}-{high} MHz during the burn with "
        f"[{', '.join(reasons) or 'no slowdown reason'}], expected {want} and no thermal or "
        f"power slowdown: {'; '.join(hints)}",
        expected,
        found,
    )


def temperature(spec: NodeSpec, doc: dict, index: int) -> Verdict:
    """The hottest GPU and HBM readings of the burn stayed under the ceilings."""
    check, subject, host, who = "burn_temperature", gpu_id(index), spec.host, label(spec, index)
    r, skip = _gate(spec, doc, index, check)
    if skip:
        return skip
    limits = spec.limits
    t, hbm = r.get("max_temp_c"), r.get("max_hbm_temp_c")
    expected = {"gpu_c": limits.gpu_temp_c, "hbm_c": limits.hbm_temp_c}
    found = {"max_gpu_c": t, "max_hbm_c": hbm}
    problems = []
    if t is None or t >= limits.gpu_temp_c:
        problems.append(f"GPU reached {t} C (ceiling {limits.gpu_temp_c:g} C)")
    if hbm is not None and hbm >= limits.hbm_temp_c:
        problems.append(f"HBM reached {hbm} C (ceiling {limits.hbm_temp_c:g} C)")
    stop = doc.get("safety_stop")
    if stop and stop.get("gpu") == index and stop["what"] in ("temp_c", "hbm_temp_c"):
        problems.append(f"the safety stop ended the burn at {stop['at_s']:.1f} s")
    if problems:
        return Verdict(
            check,
            subject,
            FAIL,
            f"{host} {who}: {', '.join(problems)}, expected below the ceilings under full load: "
            "heatsink mounting and paste, fans and airflow, or a lower clock lock; HBM is the "
            "first part to die",
            expected,
            found,
        )
    hbm_text = f"HBM {hbm} C" if hbm is not None else "HBM not readable"
    return Verdict(
        check,
        subject,
        PASS,
        f"{host} {who}: at most GPU {t} C, {hbm_text} under load",
        expected,
        found,
    )


def power(spec: NodeSpec, doc: dict, index: int) -> Verdict:
    """The card's highest power reading stayed under ``limits.power_w``."""
    check, subject, host, who = "burn_power", gpu_id(index), spec.host, label(spec, index)
    r, skip = _gate(spec, doc, index, check)
    if skip:
        return skip
    limit, found = spec.limits.power_w, r.get("max_power_w")
    if limit is None:
        return Verdict(
            check,
            subject,
            SKIP,
            f"{host} {who}: at most {found} W; no per-card budget (limits.power_w)",
            None,
            found,
        )
    if found is not None and found < limit:
        return Verdict(
            check,
            subject,
            PASS,
            f"{host} {who}: at most {found} W (budget {limit:g} W)",
            limit,
            found,
        )
    return Verdict(
        check,
        subject,
        FAIL,
        f"{host} {who}: drew {found} W under load, expected below {limit:g} W "
        "(limits.power_w): lower the clock lock (cards without a power limit, like the PG199, "
        "have no other cap) or raise the budget if the supply and cabling allow it",
        limit,
        found,
    )


def supply_budget(spec: NodeSpec, doc: dict) -> Verdict:
    """The cards' summed power stayed under ``supply_w`` x ``supply_headroom`` at every sample."""
    check, host = "burn_supply_budget", spec.host
    limits = spec.limits
    found = doc.get("max_supply_w")
    if limits.supply_w is None:
        return Verdict(
            check,
            "node",
            SKIP,
            f"{host}: at most {found} W together; no limits.supply_w",
            None,
            found,
        )
    budget = limits.supply_w * limits.supply_headroom
    stop = doc.get("safety_stop")
    if stop and stop["what"] != "supply_w":
        where = f"[{gpu_id(stop['gpu'])}]" if stop.get("gpu") is not None else ""
        return Verdict(
            check,
            "node",
            SKIP,
            f"{host}: not judged: the safety stop ended the burn at {stop['at_s']:.1f} s "
            f"({stop['message']}); see test_{_STOP_OWNER[stop['what']]}{where}",
        )
    if not doc.get("load_window_s"):
        return Verdict(check, "node", SKIP, f"{host}: not judged: gpu-burn never reported progress")
    cards = len(doc.get("gpus", []))
    if found is not None and found < budget:
        return Verdict(
            check,
            "node",
            PASS,
            f"{host}: {cards} cards drew at most {found} W together (budget {budget:g} W)",
            budget,
            found,
        )
    return Verdict(
        check,
        "node",
        FAIL,
        f"{host}: {cards} cards drew {found} W together, expected below {budget:g} W "
        f"({limits.supply_w:g} W supply x {limits.supply_headroom:g} headroom): lower the clock "
        "lock (the only power cap on cards without a power limit) or use a bigger supply",
        budget,
        found,
    )


PER_GPU = {
    "burn_errors": errors,
    "burn_throughput": throughput,
    "burn_clock_held": clock_held,
    "burn_temperature": temperature,
    "burn_power": power,
}


def all_verdicts(spec: NodeSpec, doc: dict, baseline: Any = None) -> list[Verdict]:
    """Every stress-tier verdict for one burn document."""
    out = []
    for index in range(spec.gpu_count):
        for name, fn in PER_GPU.items():
            out.append(
                fn(spec, doc, index, baseline)
                if name == "burn_throughput"
                else fn(spec, doc, index)
            )
    out.append(supply_budget(spec, doc))
    return out
