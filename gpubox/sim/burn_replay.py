#!/usr/bin/env python3
"""gpu-burn for the simulated node: prints what gpu-burn prints, paced, from the scenario's burn.

A simulation input, never used outside a simulated node. ``gpubox sim up`` copies this file into
the target as ``/usr/lib/gpubox-sim/burn_replay.py`` and links ``gpu_burn`` and ``gpu-burn`` in
``/usr/lib/gpubox-sim/bin/`` to it; the sim inventory points ``stress.binary`` there.

It takes gpu-burn's arguments (``[-d] [-tc] [-stts T] [-i N] [-m X] [-c FILE] TIME``) and burns
the GPUs ``CUDA_VISIBLE_DEVICES`` lists (PCI order, as ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes
CUDA number them; ``-i N`` picks one; default: all) for TIME seconds:

* it writes ``<bus_id>.burn`` (``start_ms duration_ms pid``) for each burned GPU under the
  simulated NVML's state folder (``$GPUBOX_SIM_STATE_DIR``, default ``/run/gpubox-sim``), so
  ``nvml_sim.c`` answers from the GPU's ``burn`` timeline (SM clock, clock event reasons, GPU and
  HBM temperature, power) for as long as this process lives, and removes them at the end;
* it forks one worker per GPU, as gpu-burn does (they only sleep), so that killing gpu-burn's
  parent alone leaves processes behind, exactly as with the real tool;
* it prints gpu-burn's own lines (the 9aefd7c formats: ``Using compare file``, ``Burning for``,
  the ``nvidia-smi -L`` list, ``Initialized device``, ``\\r``-repainted progress every half
  second with ``Summary at:`` every 10 %, ``Killing processes``, ``Tested N GPUs:`` and the
  verdicts) with each GPU's Gflop/s and error counts taken from the same timeline.

The timeline (``gpus[i].burn`` in the resolved scenario, documented in ``SCENARIOS.md``) is a
list of points at fractions ``at`` of the run; numbers are interpolated linearly between points,
``event_reasons`` and ``errors`` (faulty elements per report) hold from their point on. A GPU
counts FAULTY once it reported an error, as in gpu-burn. Standard library only: it runs with the
target's own ``python3``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

SCENARIO = "/etc/gpubox-sim/scenario.json"
STATE_DIR = "/run/gpubox-sim"
COMPARE = "/usr/share/gpu-burn/compare.ptx"
OPS_PER_MUL = 1100048498688  # gpu-burn's flops per 8192x8192 multiplication
REPORT_S = 0.5
NUMBERS = ("sm_mhz", "temperature_c", "memory_temperature_c", "power_mw", "gflops")


def at(points: list[dict], fraction: float) -> dict:
    """The timeline's values at ``fraction`` of the run (see the module docstring)."""
    before = points[0]
    for point in points[1:]:
        if point["at"] > fraction:
            span = point["at"] - before["at"]
            w = (fraction - before["at"]) / span if span > 0 else 1.0
            out = dict(before)
            for key in NUMBERS:
                a, b = before[key], point[key]
                if key == "sm_mhz" and (a == 0 or b == 0):
                    out[key] = a if w < 1 else b  # 0 means "follow the lock": no blending
                else:
                    out[key] = a + (b - a) * w
            return out
        before = point
    return dict(before)


def options(argv: list[str]) -> dict:
    """gpu-burn's options; TIME is the last word that is not an option's value."""
    opts = {"doubles": False, "tensor": False, "device": None, "seconds": 10}
    words, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-d":
            opts["doubles"] = True
        elif arg == "-tc":
            opts["tensor"] = True
        elif arg in ("-stts", "-m", "-c", "-i"):
            i += 1
            if arg == "-i" and i < len(argv):
                opts["device"] = int(argv[i])
        elif arg.startswith("-i") and arg[2:].isdigit():
            opts["device"] = int(arg[2:])
        elif not arg.startswith("-"):
            words.append(arg)
        i += 1
    if words:
        opts["seconds"] = int(words[-1])
    else:
        print("Run length not specified in the command line. ", end="")
    return opts


def visible(n: int) -> list[int]:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return list(range(n))
    return [int(v) for v in value.split(",") if v.strip() and int(v) < n]


def worker(seconds: float) -> None:
    """A forked 'GPU worker': sleeps until told to stop (or the run is long over)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    time.sleep(seconds + 60)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts = options(argv)
    path = os.environ.get("GPUBOX_SIM_SCENARIO") or SCENARIO
    state = os.environ.get("GPUBOX_SIM_STATE_DIR") or STATE_DIR
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"Couldn't init CUDA: Error (gpubox sim: cannot read {path}: {exc})", file=sys.stderr)
        print("No CUDA devices", file=sys.stderr)
        return 19  # ENODEV, as gpu-burn
    gpus = doc["gpus"]
    chosen = visible(len(gpus))
    if opts["device"] is not None:
        chosen = [chosen[opts["device"]]] if opts["device"] < len(chosen) else []
    seconds = opts["seconds"]
    kind = "using DOUBLES" if opts["doubles"] else "using FLOATS"
    kind += ", using Tensor Cores" if opts["tensor"] else ""
    print(f"Using compare file: {COMPARE}")
    print(f"Burning for {seconds} seconds.")
    for i, g in enumerate(gpus):
        print(f"GPU {i}: {g['name']} (UUID: {g['uuid']})")
    sys.stdout.flush()
    if not chosen:
        print("No CUDA devices", file=sys.stderr)
        return 19

    start = time.time()
    os.makedirs(state, exist_ok=True)
    files = []
    for n in chosen:
        file = os.path.join(state, f"{gpus[n]['bus_id']}.burn")
        with open(file + ".tmp", "w") as f:
            f.write(f"{int(start * 1000)} {int(seconds * 1000)} {os.getpid()}\n")
        os.replace(file + ".tmp", file)
        files.append(file)
    workers = []
    for _ in chosen:
        pid = os.fork()
        if pid == 0:
            worker(seconds)
        workers.append(pid)
    for k, n in enumerate(chosen):
        mib = gpus[n]["memory"]["total_mib"]
        free = mib - 512
        print(
            f"Initialized device {k} with {mib} MB of memory ({free} MB available, using "
            f"{int(free * 0.9)} MB of it), {kind}"
        )
        print("Results are 268435456 bytes each, thus performing 103 iterations")
    sys.stdout.flush()

    processed = [0.0] * len(chosen)
    errors = [0] * len(chosen)
    faulty = [False] * len(chosen)
    next_summary, last = 10.0, start
    while True:
        time.sleep(REPORT_S)
        now = time.time()
        fraction = min((now - start) / seconds, 1.0)
        values = [at(gpus[n]["burn"], fraction) for n in chosen]
        for k, v in enumerate(values):
            processed[k] += v["gflops"] * 1e9 * (now - last) / OPS_PER_MUL
            errors[k] += v["errors"]
            faulty[k] = faulty[k] or errors[k] != 0
        last = now
        procs = "- ".join(
            f"{int(p)} ({v['gflops']:.0f} Gflop/s) " for p, v in zip(processed, values, strict=True)
        )
        errs = "- ".join(f"{e} " + (" (WARNING!)" if e else "") for e in errors)
        temps = "- ".join(f"{v['temperature_c']:.0f} C " for v in values)
        print(f"\r{fraction * 100:.1f}%  proc'd: {procs}  errors: {errs}  temps: {temps}", end="")
        sys.stdout.flush()
        if fraction * 100 > next_summary:
            next_summary = fraction * 100 + 10.0
            print("\n\tSummary at:   " + time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()))
            print()
            errors = [0] * len(chosen)
        if fraction >= 1.0:
            break

    print("\nKilling processes with SIGTERM (soft kill)")
    sys.stdout.flush()
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    for pid in workers:
        os.waitpid(pid, 0)
    for file in files:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(file)
    print("done")
    print(f"\nTested {len(chosen)} GPUs:")
    for k in range(len(chosen)):
        print(f"\tGPU {k}: {'FAULTY' if faulty[k] else 'OK'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
