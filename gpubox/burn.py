"""The stress tier's burn: gpu-burn on the node's GPUs, watched through NVML, stopped at a ceiling.

    >>> doc = run(spec, seconds=300)                      # doctest: +SKIP
    >>> doc["ok"], doc["safety_stop"], doc["results"][0]["gflops_sustained"]   # doctest: +SKIP
    (True, None, 14210.0)

What :func:`run` does:

* **Runs gpu-burn** (``stress.binary``) on ``stress.gpus`` (default: all) for ``seconds``, with
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``CUDA_VISIBLE_DEVICES`` listing the GPUs, so gpu-burn's
  GPU k is NVML GPU ``gpus[k]`` (CUDA's default order is "fastest first", not PCI order), plus
  ``-d`` / ``-tc`` from the spec and ``-stts 10`` (gpu-burn always waits that long for its
  workers at the end; its default is 30 s).
* **Streams progress**: gpu-burn repaints one line with ``\\r``; every repaint is read as it
  comes, time-stamped (per-GPU Gflop/s over time) and, every few seconds, summed up on stderr
  with the latest NVML readings.
* **Samples every GPU through NVML** about once a second (``stress.sample_interval_s``): SM
  clock, clock event reasons, GPU and HBM temperature, power; the sum of the cards' power.
* **Stops the burn at once** (SIGKILL to its whole process group) when a GPU or its HBM reaches
  its ceiling (``limits.gpu_temp_c``, ``limits.hbm_temp_c``), a card its power budget
  (``limits.power_w``), the cards together the supply's rating (``limits.supply_w``), or a GPU
  falls off the bus; ``safety_stop`` says which GPU, what it read and when.
* **Never leaves gpu-burn running**: gpu-burn forks one worker per GPU plus an ``nvidia-smi``
  poller, so killing gpu-burn alone is not enough. It runs under a small guard process
  (:mod:`gpubox.burn_guard`) that leads its own session and process group, holding
  gpu-burn and everything it forks. The guard gets SIGTERM from the kernel the moment the
  wrapper dies, however it dies (``prctl(PR_SET_PDEATHSIG)``, set before it starts, so even
  SIGKILL of the wrapper counts), and then SIGKILLs the group. The wrapper itself kills the
  group on every exit path (end, timeout, safety stop, an exception) and on SIGINT (Ctrl-C),
  SIGTERM and SIGHUP. A lost SSH session is noticed two ways: the wrapper's parent goes away
  (it is re-parented) or writing progress to the closed connection fails; either stops the
  burn.

Judging is :mod:`gpubox.judge_stress`; the document's layout is :func:`run`'s docstring.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gpubox import busid
from gpubox.burn_guard import GUARD_MODULE, PARENT_ENV, die_with_parent
from gpubox.parsers import ParseError, gpu_burn
from gpubox.spec import NodeSpec, gpu_id

SCHEMA = "gpubox.burn/1"
STTS_S = 10  # gpu-burn -stts: seconds its workers get to stop after the run before SIGKILL
START_GRACE_S = 120  # start-up (memory allocation, host matrices) beyond duration + STTS_S
PROGRESS_EVERY_S = 5.0
# Clock event reasons that mean the GPU slowed itself down (thermal or power), not idle/app.
SLOWDOWN_REASONS = (
    "SwPowerCap",
    "HwSlowdown",
    "SwThermalSlowdown",
    "HwThermalSlowdown",
    "HwPowerBrakeSlowdown",
)

Progress = Callable[[str], None] | None


class BurnError(RuntimeError):
    """The burn could not be started (no NVML, no gpu-burn, bad GPU list): nothing ran."""


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def binary(spec: NodeSpec) -> str:
    """The gpu-burn program: ``stress.binary``, else ``{install_dir}/bin/gpu_burn``."""
    return spec.stress.binary or f"{spec.software.install_dir}/bin/gpu_burn"


def burn_gpus(spec: NodeSpec, gpus: list[int] | None = None) -> list[int]:
    """NVML indices to burn: ``gpus``, else ``stress.gpus``, else every GPU of the spec."""
    chosen = list(gpus if gpus is not None else spec.stress.gpus or range(spec.gpu_count))
    bad = [g for g in chosen if not 0 <= g < spec.gpu_count]
    if not chosen or bad or len(set(chosen)) != len(chosen):
        raise BurnError(
            f"GPUs to burn {chosen}: expected different indices 0..{spec.gpu_count - 1}"
        )
    return chosen


def command(
    spec: NodeSpec,
    seconds: int,
    gpus: list[int],
    precision: str | None = None,
    tensor_cores: bool | None = None,
) -> tuple[list[str], dict[str, str]]:
    """gpu-burn's argv and the environment it needs (options first: gpu-burn reads the time last).

    >>> spec = NodeSpec.from_data({"gpu_count": 4, "stress": {"precision": "double"}})
    >>> command(spec, 60, [0, 2])
    (['/opt/gpubox/bin/gpu_burn', '-stts', '10', '-d', '60'], {'CUDA_DEVICE_ORDER': 'PCI_BUS_ID', 'CUDA_VISIBLE_DEVICES': '0,2'})
    """
    precision = precision or spec.stress.precision
    tc = spec.stress.tensor_cores if tensor_cores is None else tensor_cores
    argv = [binary(spec), "-stts", str(STTS_S)]
    argv += ["-d"] if precision == "double" else []
    argv += ["-tc"] if tc else []
    argv.append(str(int(seconds)))
    env = {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
    }
    return argv, env


# ---- process handling ----------------------------------------------------------------------------


def _kill_group(pgid: int | None) -> bool:
    """SIGKILL every process of the group; True when there was one to kill."""
    if pgid is None:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# ---- NVML sampling -----------------------------------------------------------------------------


class Sampler:
    """Reads every burned GPU through NVML each ``interval`` seconds; calls ``on_sample``."""

    def __init__(self, library: str | None, gpus: list[int], interval: float):
        import pynvml

        from gpubox import probe

        self.pynvml, self.probe = pynvml, probe
        self.gpus, self.interval = gpus, interval
        path = probe._load(library)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise BurnError(
                f"NVML failed to initialise from {path}: {probe._error_name(exc)}; without NVML "
                "nothing could stop an overheating burn, so gpu-burn was not started"
            ) from None
        self.handles, self.bus_ids = {}, {}
        for index in gpus:
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                bus = pynvml.nvmlDeviceGetPciInfo_v3(handle).busId
            except pynvml.NVMLError as exc:
                pynvml.nvmlShutdown()
                raise BurnError(
                    f"{gpu_id(index)}: NVML answers {probe._error_name(exc)}; not burning a GPU "
                    "that cannot be watched"
                ) from None
            self.handles[index] = handle
            self.bus_ids[index] = busid.normalise(bus.decode() if isinstance(bus, bytes) else bus)

    def read(self, index: int) -> dict[str, Any]:
        """One reading of one GPU; a value NVML refuses is None; ``lost`` when it fell off."""
        nv, handle = self.pynvml, self.handles[index]
        out: dict[str, Any] = {"lost": False}

        def ask(name, call, *args):
            try:
                return call(handle, *args)
            except nv.NVMLError as exc:
                if exc.value == nv.NVML_ERROR_GPU_IS_LOST:
                    out["lost"] = True
                return None

        out["sm_mhz"] = ask("sm", nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)
        out["event_reasons"] = ask("reasons", nv.nvmlDeviceGetCurrentClocksEventReasons)
        out["temp_c"] = ask("temp", nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU)
        values = ask("hbm", nv.nvmlDeviceGetFieldValues, [self.probe.NVML_FI_DEV_MEMORY_TEMP])
        out["hbm_temp_c"] = (
            values[0].value.uiVal if values and values[0].nvmlReturn == nv.NVML_SUCCESS else None
        )
        power = ask("power", nv.nvmlDeviceGetPowerUsage)
        out["power_w"] = round(power / 1000, 1) if power is not None else None
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pynvml.nvmlShutdown()


def reason_names(mask: int | None) -> list[str]:
    from gpubox.probe import CLOCK_EVENT_REASONS

    return [] if mask is None else [n for bit, n in CLOCK_EVENT_REASONS.items() if mask & bit]


# ---- the run -----------------------------------------------------------------------------------


class _Burn:
    """One burn in progress: the guard process, the output reader, the sampler, the verdicts."""

    def __init__(self, spec, gpus, seconds, sampler, progress):
        self.spec, self.gpus, self.seconds = spec, gpus, seconds
        self.sampler, self.say_to = sampler, progress
        self.t0 = time.monotonic()
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.output: list[str] = []  # raw text as read
        self.throughput: dict[int, dict[str, list]] = {g: {"t": [], "gflops": []} for g in gpus}
        self.percent: float | None = None
        self.telemetry = {
            g: {
                "bus_id": sampler.bus_ids[g],
                "t": [],
                "sm_mhz": [],
                "event_reasons": [],
                "temp_c": [],
                "hbm_temp_c": [],
                "power_w": [],
            }
            for g in gpus
        }
        self.supply = {"t": [], "power_w": []}
        self.rest: dict[int, dict] = {}  # one reading per GPU before gpu-burn starts
        self.read_error: str | None = None
        self.safety_stop: dict | None = None
        self.interrupted: str | None = None
        self.timed_out = False
        self.stop = threading.Event()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def say(self, line: str) -> None:
        if self.say_to is None:
            return
        try:
            self.say_to(line)
        except OSError:  # stderr went away with the SSH session that started us
            self.interrupt("lost session (writing progress failed)")

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc.pid)

    def interrupt(self, why: str) -> None:
        if self.interrupted is None and self.safety_stop is None:
            self.interrupted = why
        self.kill()

    # -- gpu-burn's output --
    def read_output(self, fd: int) -> None:
        """Read gpu-burn's output from ``fd`` (our own duplicate of the pipe) until EOF."""
        pending = ""
        os.set_blocking(fd, True)  # a pipe found non-blocking (EAGAIN) in long test sessions
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # made non-blocking again by someone else: wait for data
                select.select([fd], [], [], 1.0)
                continue
            except OSError as exc:
                self.read_error = str(exc)
                break
            if not chunk:
                break
            text = chunk.decode(errors="replace")
            self.output.append(text)
            pending += text
            *done, pending = re.split(r"[\r\n]", pending)
            for segment in done:
                self.on_segment(segment)
        if pending:
            self.on_segment(pending)

    def on_segment(self, segment: str) -> None:
        report = gpu_burn.progress_line(segment)
        if report is None or len(report["gpus"]) != len(self.gpus):
            return
        t = self.now()
        with self.lock:
            self.percent = report["percent"]
            for k, entry in enumerate(report["gpus"]):
                series = self.throughput[self.gpus[k]]
                series["t"].append(t)
                series["gflops"].append(entry["gflops"])

    # -- NVML --
    def sample_loop(self) -> None:
        while not self.stop.is_set():
            self.sample_once()
            self.stop.wait(self.spec.stress.sample_interval_s)

    def sample_once(self) -> None:
        t, total, complete = self.now(), 0.0, True
        for g in self.gpus:
            r = self.sampler.read(g)
            if self.proc is None:  # before the start: the GPUs at rest, kept apart
                self.rest[g] = r
                continue
            with self.lock:
                series = self.telemetry[g]
                series["t"].append(t)
                for key in ("sm_mhz", "event_reasons", "temp_c", "hbm_temp_c", "power_w"):
                    series[key].append(r[key])
            if r["power_w"] is None:
                complete = False
            else:
                total += r["power_w"]
            self.check_ceilings(g, r, t)
        if self.proc is None:
            return
        with self.lock:
            self.supply["t"].append(t)
            self.supply["power_w"].append(round(total, 1) if complete else None)
        rating = self.spec.limits.supply_w
        if complete and rating is not None and total >= rating:
            self.trip(None, "supply_w", round(total, 1), rating, t, "W")

    def check_ceilings(self, g: int, r: dict, t: float) -> None:
        limits = self.spec.limits
        if r["lost"]:
            self.trip(g, "lost", None, None, t, "")
        for key, limit, unit in (
            ("temp_c", limits.gpu_temp_c, "C"),
            ("hbm_temp_c", limits.hbm_temp_c, "C"),
            ("power_w", limits.power_w, "W"),
        ):
            value = r[key]
            if limit is not None and value is not None and value >= limit:
                self.trip(g, key, value, limit, t, unit)

    def trip(self, g, what, value, limit, t, unit) -> None:
        if self.safety_stop is not None or self.proc is None or self.proc.poll() is not None:
            return
        self.kill()  # first, then the bookkeeping
        host = self.spec.host
        if g is None:
            subject = f"{host}: the {len(self.gpus)} cards together"
        else:
            subject = f"{host} {gpu_id(g)} ({busid.short(self.sampler.bus_ids[g])})"
        names = {"temp_c": "GPU temperature", "hbm_temp_c": "HBM temperature", "power_w": "power"}
        names["supply_w"] = "power"
        if what == "lost":
            reading = "fell off the bus (NVML: GPU_IS_LOST)"
        else:
            ceiling = "the supply's rating" if what == "supply_w" else "the ceiling"
            reading = f"{names[what]} {value:g} {unit} reached {ceiling} {limit:g} {unit}"
        self.safety_stop = {
            "gpu": g,
            "bus_id": self.sampler.bus_ids[g] if g is not None else None,
            "what": what,
            "value": value,
            "limit": limit,
            "at_s": t,
            "message": f"{subject}: {reading} at {t:.1f} s into the burn: stopped it at once",
        }
        self.say(f"[burn] SAFETY STOP: {self.safety_stop['message']}")

    # -- progress line --
    def status_line(self) -> str:
        with self.lock:
            parts = []
            for g in self.gpus:
                tel, thr = self.telemetry[g], self.throughput[g]
                gf = f"{thr['gflops'][-1]:.0f} Gflop/s" if thr["gflops"] else "starting"
                last = {k: (tel[k][-1] if tel[k] else None) for k in tel if k != "bus_id"}
                parts.append(
                    f"{gpu_id(g)} {gf} {last['sm_mhz']} MHz {last['temp_c']}/{last['hbm_temp_c']}"
                    f" C {last['power_w']} W"
                )
            pct = f"{self.percent:.0f}%" if self.percent is not None else "--"
        return f"[burn {pct} {self.now():.0f}s] " + " | ".join(parts)


def run(
    spec: NodeSpec,
    *,
    seconds: int | None = None,
    gpus: list[int] | None = None,
    precision: str | None = None,
    tensor_cores: bool | None = None,
    library: str | None = None,
    progress: Progress = stderr_progress,
    handle_signals: bool = True,
) -> dict[str, Any]:
    """Burn, watch, judge nothing; return the burn document (``gpubox burn --json``).

    Keys: ``schema``, ``host``, ``hostname``, ``started``, ``seconds`` (asked), ``duration_s``
    (ran), ``gpus`` (NVML indices burned; gpu-burn's GPU k is ``gpus[k]``), ``bus_ids``,
    ``command``, ``env``, ``precision``, ``tensor_cores``, ``exit_code`` (gpu-burn's; negative:
    killed by that signal), ``timed_out``, ``interrupted`` (why the wrapper stopped it: a signal
    or a lost session), ``safety_stop`` ({gpu, bus_id, what, value, limit, at_s, message} or
    None), ``ok`` (gpu-burn's output says every GPU passed and nothing stopped the run),
    ``parsed`` (:func:`gpubox.parsers.gpu_burn.parse` of the output, or None), ``results``
    [per burned GPU: gpu, bus_id, gflops_last, gflops_sustained (median of the reports in the
    second half of the run), processed, errors, died, warning, verdict, max_temp_c,
    max_hbm_temp_c, max_power_w, min_sm_mhz, max_sm_mhz, slowdown_reasons], ``max_supply_w``,
    ``telemetry`` {interval_s, gpus {"N": {bus_id, t, sm_mhz, event_reasons, temp_c, hbm_temp_c,
    power_w}}, supply {t, power_w}}, ``throughput`` {"N": {t, gflops}}, ``output`` (gpu-burn's
    raw text), ``errors``.

    Raises :class:`BurnError` when nothing could be started (no NVML, a bad GPU list, no
    gpu-burn program).
    """
    seconds = int(seconds or spec.stress.duration_s)
    chosen = burn_gpus(spec, gpus)
    argv, env = command(spec, seconds, chosen, precision, tensor_cores)
    if not (os.path.isfile(argv[0]) and os.access(argv[0], os.X_OK)):
        raise BurnError(
            f"{argv[0]} not found: gpu-burn is installed by the deploy task `gpu_burn` "
            "(tasks/gpu_burn.py): run the deploy, or point stress.binary at it"
        )
    started = datetime.now(UTC).isoformat(timespec="seconds")
    sampler = Sampler(library or spec.software.nvml_library, chosen, spec.stress.sample_interval_s)
    burn = _Burn(spec, chosen, seconds, sampler, progress)
    parent = os.getppid()
    previous: dict[int, Any] = {}
    errors: list[str] = []
    sample_thread = threading.Thread(target=burn.sample_loop, name="gpubox-burn-nvml", daemon=True)
    reader = None
    try:
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(
                    sig, lambda s, _f: burn.interrupt(f"{signal.Signals(s).name} received")
                )
        burn.sample_once()  # the GPUs at rest: one already at a ceiling is not burned
        if _already_over(burn):
            raise BurnError(f"not starting: {_already_over(burn)}")
        burn.say(f"[burn] {' '.join(f'{k}={v}' for k, v in env.items())} {' '.join(argv)}")
        burn.t0 = time.monotonic()
        burn.proc = subprocess.Popen(
            [sys.executable, "-m", GUARD_MODULE, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, PARENT_ENV: str(os.getpid())},
            cwd=_workdir(argv[0]),
            start_new_session=True,  # the guard leads a new session and process group
            preexec_fn=die_with_parent(signal.SIGTERM, os.getpid()),
        )
        if burn.interrupted:  # a signal that came while the guard was starting
            burn.kill()
        # Our own descriptor of the pipe: nothing else in this process can close it under us.
        out_fd = os.dup(burn.proc.stdout.fileno())
        burn.proc.stdout.close()
        reader = threading.Thread(
            target=burn.read_output, args=(out_fd,), name="gpubox-burn-out", daemon=True
        )
        reader.start()
        sample_thread.start()
        deadline = burn.t0 + seconds + STTS_S + START_GRACE_S
        next_status = time.monotonic() + PROGRESS_EVERY_S
        while burn.proc.poll() is None:
            time.sleep(0.2)
            if time.monotonic() > deadline:
                burn.timed_out = True
                burn.kill()
            if os.getppid() != parent:
                burn.interrupt("lost session (the parent process went away)")
            if time.monotonic() >= next_status:
                next_status += PROGRESS_EVERY_S
                burn.say(burn.status_line())
    finally:
        burn.stop.set()
        burn.kill()  # stragglers of the group, on every way out (the group outlives its leader)
        if burn.proc is not None:
            with contextlib.suppress(Exception):
                burn.proc.wait(timeout=10)
        if reader is not None:
            reader.join(timeout=5)
            if not reader.is_alive():
                os.close(out_fd)
        if sample_thread.is_alive():
            sample_thread.join(timeout=5)
        sampler.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return _document(burn, spec, started, argv, env, errors)


def _workdir(program: str) -> str | None:
    """Upstream gpu-burn looks for compare.ptx in the working directory (Debian's has a path)."""
    folder = os.path.dirname(os.path.realpath(program))
    return folder if os.path.isfile(os.path.join(folder, "compare.ptx")) else None


def _already_over(burn: _Burn) -> str | None:
    limits = burn.spec.limits
    names = {"temp_c": "GPU", "hbm_temp_c": "HBM"}
    for g in burn.gpus:
        rest = burn.rest.get(g, {})
        for key, limit in (("temp_c", limits.gpu_temp_c), ("hbm_temp_c", limits.hbm_temp_c)):
            value = rest.get(key)
            if value is not None and value >= limit:
                return (
                    f"{burn.spec.host} {gpu_id(g)} ({busid.short(burn.sampler.bus_ids[g])}) "
                    f"reads {names[key]} {value} C at rest, at or over its ceiling {limit:g} C"
                )
    return None


def _max(values: list) -> Any:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _min(values: list) -> Any:
    values = [v for v in values if v is not None]
    return min(values) if values else None


def sustained(t: list[float], gflops: list[float], seconds: float) -> float | None:
    """Median Gflop/s of the reports in the second half of the run (warm-up left out).

    >>> sustained([1, 2, 6, 7, 8], [0, 9000, 14000, 14100, 13900], 10)
    14000.0
    """
    late = [g for ti, g in zip(t, gflops, strict=True) if ti >= seconds / 2]
    pool = late or gflops
    return float(statistics.median(pool)) if pool else None


def _document(burn: _Burn, spec, started, argv, env, errors) -> dict[str, Any]:
    text = "".join(burn.output)
    parsed = None
    if text.strip():
        try:
            parsed = gpu_burn.parse(text)
        except ParseError as exc:
            errors.append(f"gpu-burn's output not understood: {exc}")
    code = burn.proc.returncode if burn.proc is not None else None
    stopped = burn.safety_stop or burn.interrupted or burn.timed_out
    if not text.strip() and burn.proc is not None and not stopped:
        why = f"; reading it failed: {burn.read_error}" if burn.read_error else ""
        errors.append(f"gpu-burn printed nothing (exit code {code} after {burn.now():.1f} s){why}")
    if code is not None and code >= 128 and burn.safety_stop is None and not burn.interrupted:
        code = -(code - 128)  # the guard reports a signal as 128 + N
    results = []
    stamps = [t for g in burn.gpus for t in burn.throughput[g]["t"]]
    window = (min(stamps), max(stamps)) if stamps else None  # gpu-burn's first to last report
    for k, g in enumerate(burn.gpus):
        tel, thr = burn.telemetry[g], burn.throughput[g]
        entry = (parsed or {}).get("gpus", [])
        mine = entry[k] if k < len(entry) else {}
        loaded = [
            i for i, t in enumerate(tel["t"]) if window and window[0] <= t <= window[1]
        ]  # samples taken while gpu-burn reported: the clock is judged on these
        masks = [tel["event_reasons"][i] for i in loaded if tel["event_reasons"][i] is not None]
        clocks = [tel["sm_mhz"][i] for i in loaded]
        seen = sorted({n for m in masks for n in reason_names(m)})
        results.append(
            {
                "gpu": g,
                "bus_id": tel["bus_id"],
                "gflops_last": mine.get("gflops"),
                "gflops_sustained": sustained(thr["t"], thr["gflops"], burn.seconds),
                "processed": mine.get("processed"),
                "errors": mine.get("errors"),
                "died": mine.get("died", False),
                "warning": mine.get("warning", False),
                "verdict": mine.get("verdict"),
                "max_temp_c": _max(tel["temp_c"]),
                "max_hbm_temp_c": _max(tel["hbm_temp_c"]),
                "max_power_w": _max(tel["power_w"]),
                "min_sm_mhz": _min(clocks),
                "max_sm_mhz": _max(clocks),
                "loaded_samples": len(loaded),
                "slowdown_reasons": [n for n in seen if n in SLOWDOWN_REASONS],
            }
        )
    if burn.timed_out:
        errors.append(
            f"gpu-burn did not finish within {burn.seconds + STTS_S + START_GRACE_S} s and was killed"
        )
    if burn.interrupted:
        errors.append(f"stopped: {burn.interrupted}")
    if burn.safety_stop:
        errors.append(f"safety stop: {burn.safety_stop['message']}")
    if code not in (0, None) and not (burn.safety_stop or burn.interrupted or burn.timed_out):
        errors.append(f"gpu-burn exited {code}")
    if parsed:
        errors.extend(parsed["errors"])
    ok = bool(parsed and parsed["ok"]) and code == 0 and not errors
    return {
        "schema": SCHEMA,
        "host": spec.host,
        "hostname": socket.gethostname(),
        "started": started,
        "seconds": burn.seconds,
        "duration_s": burn.now(),
        "gpus": burn.gpus,
        "bus_ids": [burn.telemetry[g]["bus_id"] for g in burn.gpus],
        "command": argv,
        "env": env,
        "precision": "double" if "-d" in argv else "single",
        "tensor_cores": "-tc" in argv,
        "exit_code": code,
        "timed_out": burn.timed_out,
        "interrupted": burn.interrupted,
        "safety_stop": burn.safety_stop,
        "ok": ok,
        "limits": {
            "gpu_temp_c": spec.limits.gpu_temp_c,
            "hbm_temp_c": spec.limits.hbm_temp_c,
            "power_w": spec.limits.power_w,
            "supply_w": spec.limits.supply_w,
            "supply_headroom": spec.limits.supply_headroom,
        },
        "results": results,
        "max_supply_w": _max(burn.supply["power_w"]),
        "load_window_s": list(window) if window else None,
        "at_rest": {str(g): burn.rest.get(g) for g in burn.gpus},
        "telemetry": {
            "interval_s": spec.stress.sample_interval_s,
            "gpus": {str(g): burn.telemetry[g] for g in burn.gpus},
            "supply": burn.supply,
        },
        "throughput": {str(g): burn.throughput[g] for g in burn.gpus},
        "parsed": parsed,
        "output": text,
        "errors": errors,
    }
