"""``gpubox clocks lock|reset|show``: GPU clock locks through NVML, as the boot unit applies them.

``gpubox clocks lock`` is ``nvidia-smi -lgc MHZ,MHZ`` (``nvmlDeviceSetGpuLockedClocks``) for every
GPU, plus ``-lmc`` when the spec locks the memory clock; then it reads each GPU back and exits 1,
naming the GPU, when a lock did not take. ``reset`` is ``nvidia-smi -rgc`` (and ``-rmc``).
"""

from __future__ import annotations

import json
import logging
import os
import time

from gpubox.cli import CliError
from gpubox.commands.probe_cmd import NODE_SPEC, node_library

log = logging.getLogger(__name__)  # the clock unit's failures: `journalctl -p err -u gpubox-clocks`


def configure(parser):
    parser.add_argument("action", choices=["lock", "reset", "show"])
    parser.add_argument("--mhz", type=int, help="graphics clock lock (default: the node spec's)")
    parser.add_argument("--memory-mhz", type=int, help="memory clock lock (default: the spec's)")
    parser.add_argument("--tolerance", type=int, help="read-back tolerance, MHz (default: spec's)")
    parser.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")
    parser.add_argument("--library", help="path of libnvidia-ml.so.1 (see gpubox probe --help)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait for a lock")


def _spec_clocks(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f).get("clocks", {})
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read node spec {path}: {exc}") from None


def run(args) -> int:
    import pynvml

    from gpubox import probe

    clocks = _spec_clocks(args.spec)
    mhz = args.mhz or clocks.get("graphics_mhz")
    memory_mhz = args.memory_mhz or clocks.get("memory_mhz")
    tolerance = args.tolerance if args.tolerance is not None else clocks.get("tolerance_mhz", 15)
    library = args.library or os.environ.get(probe.LIBRARY_ENV) or node_library(args.spec)
    probe._load(library)
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise CliError(f"NVML failed to initialise: {exc}") from None
    try:
        count = _call("count GPUs", pynvml.nvmlDeviceGetCount)
        handles = [_handle(i) for i in range(count)]
        if args.action == "lock":
            if not mhz:
                raise CliError(
                    f"no clock to lock: give --mhz or set clocks.graphics_mhz ({args.spec})"
                )
            return _lock(handles, mhz, memory_mhz, tolerance, args.settle)
        if args.action == "reset":
            for i, h in enumerate(handles):
                if isinstance(h, Exception):
                    log.error("gpu%d: cannot reset: %s", i, h)
                    continue
                _call(
                    f"gpu{i}: reset graphics clock lock", pynvml.nvmlDeviceResetGpuLockedClocks, h
                )
                if memory_mhz:
                    _call(
                        f"gpu{i}: reset memory clock lock",
                        pynvml.nvmlDeviceResetMemoryLockedClocks,
                        h,
                    )
            print(f"clock locks reset on {len(handles)} GPU(s)")
            return 0
        for i, (sm, reasons) in enumerate(_read(handles)):
            print(f"gpu{i}: SM {sm} MHz, event reasons [{', '.join(reasons)}]")
        return 0
    finally:
        pynvml.nvmlShutdown()


def _handle(index):
    """The GPU's handle, or the NVML error (a lost GPU) that the callers report per GPU."""
    import pynvml

    try:
        return pynvml.nvmlDeviceGetHandleByIndex(index)
    except pynvml.NVMLError as exc:
        return exc


def _call(what, fn, *args):
    import pynvml

    try:
        return fn(*args)
    except pynvml.NVMLError as exc:
        raise CliError(f"{what}: NVML refused: {exc}") from None


def _read(handles):
    """``(sm_mhz, reason names)`` per GPU, or ``(None, [error])`` for one NVML refuses."""
    import pynvml

    from gpubox.probe import CLOCK_EVENT_REASONS

    out = []
    for h in handles:
        if isinstance(h, Exception):
            out.append((None, [f"NVML error: {h}"]))
            continue
        try:
            sm = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
            mask = pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
        except pynvml.NVMLError as exc:
            out.append((None, [f"NVML error: {exc}"]))
            continue
        out.append((sm, [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]))
    return out


def _lock(handles, mhz, memory_mhz, tolerance, settle) -> int:
    """Lock every GPU it can (one bad GPU must not leave the others unlocked), then verify."""
    import pynvml

    refused = {}
    for i, h in enumerate(handles):
        if isinstance(h, Exception):
            refused[i] = str(h)
            continue
        try:
            pynvml.nvmlDeviceSetGpuLockedClocks(h, mhz, mhz)
            if memory_mhz:
                pynvml.nvmlDeviceSetMemoryLockedClocks(h, memory_mhz, memory_mhz)
        except pynvml.NVMLError as exc:
            refused[i] = str(exc)
    # A lock shows in the SM clock once the GPU has settled; poll briefly before judging.
    deadline = time.monotonic() + settle
    while True:
        readings = _read(handles)
        bad = [
            (i, sm, reasons)
            for i, (sm, reasons) in enumerate(readings)
            if i in refused or sm is None or abs(sm - mhz) > tolerance or "GpuIdle" in reasons
        ]
        if not bad or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for i, (sm, reasons) in enumerate(readings):
        print(f"gpu{i}: SM {sm} MHz [{', '.join(reasons) or 'no event reasons'}]")
    for i, sm, reasons in bad:
        why = (
            f"NVML refused the lock: {refused[i]}"
            if i in refused
            else (f"SM {sm} MHz, event reasons [{', '.join(reasons)}]")
        )
        log.error(
            "gpu%d: clock lock did not take: %s; expected %d MHz (+/-%d) and no GpuIdle",
            i,
            why,
            mhz,
            tolerance,
        )
    if bad:
        return 1
    extra = f", memory {memory_mhz} MHz" if memory_mhz else ""
    print(f"locked {len(handles)} GPU(s) at {mhz} MHz{extra}")
    return 0
