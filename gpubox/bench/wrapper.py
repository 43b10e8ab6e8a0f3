"""Run one benchmark tool as a subprocess: stream its output, enforce a timeout, keep the raw log,
parse it and say what its exit code means.

>>> from gpubox.spec import NodeSpec
>>> spec = NodeSpec.from_data({"gpu_count": 1, "bench": {"tools_dir": "/nonexistent"}})
>>> result = run_bandwidth_test(spec, 0, log_dir=None, progress=None)
>>> result.ok, result.errors[0]                                  # doctest: +ELLIPSIS
(False, '/nonexistent/bandwidthTest not found: ... deploy task `bandwidth_tools` ...')

Every run returns a :class:`ToolResult` (never raises for a tool's failure): the parsed output,
the exit code and its meaning, whether it timed out, how long it took, where its raw log is and
gpubox's own ``errors`` (missing binary, timeout, non-zero exit, unparseable output). Output goes
line by line to the log file and, through ``progress``, to the user (stderr by default) while
the tool runs. The tool runs in its own process group, so a timeout kills it and its children.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpubox.bench import commands
from gpubox.bench.commands import Invocation
from gpubox.parsers import ParseError, parse
from gpubox.parsers import mpi as mpi_output
from gpubox.spec import NodeSpec

Progress = Callable[[str], None] | None
KILL_GRACE_S = 5.0


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class ToolResult:
    """What one tool run produced; ``as_dict()`` is its entry in ``gpubox bench run --json``."""

    invocation: Invocation
    exit_code: int | None = None  # None: never started; negative: killed by that signal
    exit_meaning: str = ""
    timed_out: bool = False
    duration_s: float = 0.0
    log: str | None = None
    parsed: dict | None = None
    errors: list[str] = field(default_factory=list)
    mpi: dict | None = None  # a launcher run's per-rank facts (gpubox.parsers.mpi.parse)

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and not self.errors
            and self.parsed is not None
            and bool(self.parsed.get("ok"))
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.invocation.as_dict(),
            "exit_code": self.exit_code,
            "exit_meaning": self.exit_meaning,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "log": self.log,
            "ok": self.ok,
            "errors": list(self.errors),
            "parsed": self.parsed,
            **({"mpi": self.mpi} if self.mpi is not None else {}),
        }


# ---- exit codes ------------------------------------------------------------------------------

_NCCL_DATA = (
    "wrong data (#wrong > 0, 'Out of bounds values' FAILED) or 'Avg bus bandwidth' below "
    "0.9 x NCCL_TESTS_MIN_BW"
)
# nccl-tests returns a testResult_t from main (src/common.h); data errors return
# testNumResults, whose value moved: 6 in 2.17.3-2.17.6, 7 from 2.17.7 (6 became
# testInvalidUsage); before 2.17.3 they exit(EXIT_FAILURE).
_NCCL_CODES = {
    2: "testCudaError: a CUDA call failed",
    3: "testNcclError: an NCCL call failed",
    4: "testTimeout: a collective did not complete in time (-T)",
    5: "testNotImplemented",
    255: "bad command-line arguments",
}
_SAMPLES_CODES = {  # cuda-samples: EXIT_SUCCESS / EXIT_FAILURE / EXIT_WAIVED
    1: "EXIT_FAILURE: a CUDA error or a failed result",
    2: "EXIT_WAIVED: the test did not run (too few or unsupported GPUs)",
}


def _version(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = re.findall(r"\d+", text)
    return tuple(int(p) for p in parts[:3]) if parts else None


def exit_meaning(tool: str, code: int | None, parsed: dict | None = None) -> str:
    """What ``code`` means for ``tool`` (nccl-tests: by the version it printed).

    >>> exit_meaning("nccl-tests", 7, {"version": "2.18.2"})              # doctest: +ELLIPSIS
    'testNumResults: wrong data (#wrong > 0, ...'
    >>> exit_meaning("nccl-tests", 6, {"version": "2.17.6"})[:14]
    'testNumResults'
    """
    if code is None:
        return "not started"
    if code == 0:
        return "success"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    if code == 126:
        return "not executable"
    if code == 127:
        return "command not found"
    if tool != "nccl-tests":
        return _SAMPLES_CODES.get(code, "failure")
    if code in _NCCL_CODES:
        return _NCCL_CODES[code]
    version = _version((parsed or {}).get("version"))
    if code == 7:
        return f"testNumResults: {_NCCL_DATA}"
    if code == 6:
        if version is None:
            return f"testNumResults: {_NCCL_DATA} (nccl-tests 2.17.3-2.17.6), or testInvalidUsage"
        return f"testNumResults: {_NCCL_DATA}" if version < (2, 17, 7) else "testInvalidUsage"
    if code == 1:
        if version is not None and version < (2, 17, 3):
            return f"EXIT_FAILURE: {_NCCL_DATA}"
        return "testInternalError"
    return "failure"


# ---- running ---------------------------------------------------------------------------------


def _missing(inv: Invocation) -> str | None:
    """Why ``inv`` cannot start (its binary or launcher is missing), or None."""
    if inv.launcher and shutil.which(inv.launcher) is None:
        return (
            f"{inv.launcher} not found: mpirun comes with Open MPI, which the deploy task "
            "`nccl_tests` installs with `software.mpi: true`; or turn bench.mpirun.enabled off"
        )
    if os.path.isfile(inv.binary) and os.access(inv.binary, os.X_OK):
        return None
    task = commands.DEPLOY_TASK[inv.tool]
    where = commands.DIR_FIELD[inv.tool]
    return (
        f"{inv.binary} not found: {os.path.basename(inv.binary)} is installed by the deploy task "
        f"`{task}` (tasks/{task}.py): run the deploy (`pyinfra INVENTORY deploy.py`), or point "
        f"{where} at the folder that holds it"
    )


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run(
    inv: Invocation,
    *,
    log_dir: str | os.PathLike | None = None,
    progress: Progress = stderr_progress,
    timeout_s: float | None = None,
) -> ToolResult:
    """Run ``inv``; its combined stdout/stderr goes to ``log_dir/<name>.log`` and ``progress``."""
    result = ToolResult(inv)
    problem = _missing(inv)
    if problem:
        result.errors.append(problem)
        result.exit_meaning = exit_meaning(inv.tool, None)
        return result
    log_path = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / inv.log_name
        result.log = str(log_path)
    limit = inv.timeout_s if timeout_s is None else timeout_s
    env = {**os.environ, **inv.env}
    chunks: list[bytes] = []
    say = progress or (lambda _line: None)
    start = time.monotonic()
    log = open(log_path, "wb") if log_path else None  # noqa: SIM115 (closed below)
    try:
        if log:
            header = " ".join(f"{k}={v}" for k, v in sorted(inv.env.items()))
            log.write(f"# gpubox bench: {header} {' '.join(inv.argv)}\n".encode())
            log.flush()
        say(f"[{inv.name}] $ {' '.join(inv.argv)}")
        try:
            proc = subprocess.Popen(
                list(inv.argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            result.errors.append(f"{inv.binary} could not be started: {exc.strerror or exc}")
            result.exit_meaning = exit_meaning(inv.tool, None)
            return result

        def pump() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                chunks.append(raw)
                if log:
                    log.write(raw)
                    log.flush()
                say(f"[{inv.name}] {raw.decode(errors='replace').rstrip()}")

        reader = threading.Thread(target=pump, name=f"gpubox-bench-{inv.name}", daemon=True)
        reader.start()
        # Wait on the output first (a blocking join, no polling), then on the exit.
        reader.join(timeout=limit)
        try:
            if reader.is_alive():
                raise subprocess.TimeoutExpired(inv.argv, limit)
            proc.wait(timeout=max(0.0, start + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            result.timed_out = True
            _kill_group(proc)
        reader.join(timeout=KILL_GRACE_S)
        result.exit_code = proc.returncode
    finally:
        result.duration_s = time.monotonic() - start
        if log:
            log.close()
    text = b"".join(chunks).decode(errors="replace")
    launch = None
    if inv.launcher:
        result.mpi = mpi_output.parse(text)
        launch = result.mpi["launch"]
    if result.timed_out:
        field_name = "bench.mpirun.timeout_s" if inv.launcher else "bench.timeout_s"
        silent = ""
        if inv.launcher and result.mpi is not None:
            missing = sorted(set(range(inv.ranks)) - set(result.mpi["printed"]))
            if missing:
                silent = f"; ranks that printed nothing: {', '.join(map(str, missing))}"
        result.errors.append(
            f"timed out after {limit:g} s ({field_name}) and was killed{silent}"
            + (f"; what it printed is in {result.log}" if result.log else "")
        )
    if launch is not None:
        result.errors.append(launch_error(inv, launch))
    if launch is not None and not _nccl_output(text):
        pass  # nothing of nccl-tests' to parse: the launch error says it all
    elif text.strip():
        try:
            result.parsed = parse(inv.tool, text)
        except ParseError as exc:
            result.errors.append(f"output not understood: {exc}")
            last = [line.strip() for line in text.splitlines() if line.strip()][-3:]
            result.errors.append("it last printed: " + " / ".join(last)[-400:])
    elif not result.timed_out:
        result.errors.append("printed nothing")
    result.exit_meaning = exit_meaning(inv.tool, result.exit_code, result.parsed)
    if launch is not None and result.exit_code:
        result.exit_meaning = "mpirun: the job did not start on every host"
    if result.exit_code and not result.timed_out:
        result.errors.append(f"exit {result.exit_code}: {result.exit_meaning}")
    if result.parsed is not None:
        result.errors.extend(result.parsed.get("errors", []))
    return result


def launch_error(inv: Invocation, launch: dict) -> str:
    """One line naming the host mpirun could not start ranks on (:func:`mpi_output.unreachable`)."""
    where = f"host {launch['host']}" if launch["host"] else "a remote host"
    hosts = f" (mpirun -H {','.join(inv.hosts)})" if inv.hosts else ""
    return (
        f"mpirun could not start the ranks on {where}{hosts}: {launch['reason']}: check that "
        f"this node reaches {launch['host'] or 'it'} by `ssh` without a password (key, "
        "ssh_config Host entry and port) and that Open MPI is installed there"
    )


def _nccl_output(text: str) -> bool:
    """Whether any rank printed nccl-tests' own header (a launch error may still let some)."""
    return "nThread" in text or "Avg bus bandwidth" in text


def run_bandwidth_test(spec: NodeSpec, gpu: int, **kwargs) -> ToolResult:
    """bandwidthTest on GPU ``gpu`` (host-to-device, device-to-host, device-to-device)."""
    return run(commands.bandwidth_test(spec, gpu), **kwargs)


def run_p2p(spec: NodeSpec, **kwargs) -> ToolResult:
    """p2pBandwidthLatencyTest over the spec's GPUs."""
    return run(commands.p2p(spec), **kwargs)


def run_nccl_tests(
    spec: NodeSpec, gpus: tuple[int, ...], size: int, min_bw: float | None = None, **kwargs
) -> ToolResult:
    """nccl-tests (``bench.nccl_binary``) on the GPU set ``gpus`` at one message size."""
    return run(commands.nccl_tests(spec, tuple(gpus), size, min_bw), **kwargs)
