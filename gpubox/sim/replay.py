#!/usr/bin/env python3
"""Benchmark replay for the simulated node: prints a scenario's recorded tool output.

A simulation input, never used outside a simulated node. ``gpubox sim up`` copies this file into
the target as ``/usr/lib/gpubox-sim/replay.py`` and links the benchmark tools' names to it in
``/usr/lib/gpubox-sim/bin/`` (``bandwidthTest``, ``p2pBandwidthLatencyTest``, ``all_reduce_perf``
and the other nccl-tests ``*_perf`` names); the sim inventory points the spec's ``bench`` folders
there. Run under one of those names, it reads the resolved scenario (``$GPUBOX_SIM_SCENARIO``,
default ``/etc/gpubox-sim/scenario.json``), picks the first entry of its ``benchmarks`` section
that matches this invocation, prints the entry's ``output`` (the first line at once, the rest
after ``seconds``), its ``stderr`` to stderr, and exits with its ``exit`` code.

What an invocation is matched on (an entry without a key matches any value):

* ``tool``: the name this program was run as;
* ``gpus``: the GPUs it uses, as NVML/PCI indices: bandwidthTest's ``--device=N`` (through
  ``CUDA_VISIBLE_DEVICES`` when that is set), else ``CUDA_VISIBLE_DEVICES`` (nccl-tests,
  p2pBandwidthLatencyTest); none when neither is given;
* ``size``: bytes: bandwidthTest's ``--start`` in range mode (32000000 in quick mode),
  nccl-tests' ``-b``/``--minbytes`` (``32M`` style sizes allowed).

Under ``mpirun`` (``OMPI_COMM_WORLD_SIZE``/``OMPI_COMM_WORLD_RANK`` set, an nccl-tests name) it
behaves like nccl-tests built with MPI=1, one process per rank: entries with ``mpi_ranks`` equal
to the world size are tried first; every rank reports its host (the node's hostname), pid and
GPU (its local rank's entry of ``CUDA_VISIBLE_DEVICES``) to rank 0, which prints the entry's
``output`` with ``{rank_lines}`` replaced by one ``#  Rank  N Group  0 Pid P on HOST device D
[BUS] NAME`` line per rank. nccl-tests exchanges these with MPI_Allgather; the simulated nodes
share the host's network namespace, so the replay exchanges them over loopback TCP instead (the
port comes from the job's ``PMIX_NAMESPACE``). An entry's ``mpi_fail`` (``{"output", "exit",
"ranks"}``, the scenario of the node that rank runs on) makes those ranks (default: every rank
on the node but rank 0) print their failure (``{host}`` and ``{pid}`` filled in) and exit with
``exit``: rank 0 then waits, as nccl-tests would in NCCL's set-up, until mpirun stops it.

No matching entry: a message naming the invocation and the recorded entries on stderr, exit 99.
Standard library only: it runs with the target's own ``python3``. The format is documented in
``gpubox/sim/SCENARIOS.md`` (section "Benchmarks").
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import zlib

SCENARIO = "/etc/gpubox-sim/scenario.json"
NO_MATCH = 99
QUICK_SIZE = 32000000  # bandwidthTest's quick mode transfer size


def parse_size(text: str) -> int | None:
    """nccl-tests' size syntax: ``33554432``, ``32M``, ``1G`` (K/M/G are powers of 1024)."""
    text = text.strip()
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    factor = units.get(text[-1:].upper(), 1)
    digits = text[:-1] if factor != 1 else text
    try:
        return int(float(digits) * factor)
    except ValueError:
        return None


def _visible() -> list[int] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        return None


def _option(args: list[str], *names: str) -> str | None:
    """The value of ``--name=value``, ``--name value`` or ``-n value`` (the last one given)."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
            elif arg == name and i + 1 < len(args):
                found = args[i + 1]
    return found


def invocation(tool: str, args: list[str]) -> dict:
    """What this run asks for: ``{"tool", "gpus", "size"}`` (gpus/size may be None)."""
    visible = _visible()
    gpus: list[int] | None = visible
    size: int | None = None
    if tool == "bandwidthTest":
        device = _option(args, "--device", "-device")
        if device is not None and device != "all":
            try:
                n = int(device)
            except ValueError:
                n = None
            if n is not None:
                gpus = [visible[n]] if visible and n < len(visible) else [n]
        mode = _option(args, "--mode", "-mode") or "quick"
        start = _option(args, "--start", "-start")
        size = int(start) if mode == "range" and start and start.isdigit() else None
        if mode == "quick":
            size = QUICK_SIZE
    elif tool.endswith("_perf") or tool.endswith("_perf_mpi"):
        minbytes = _option(args, "-b", "--minbytes")
        size = parse_size(minbytes) if minbytes else None
    return {"tool": tool, "gpus": gpus, "size": size}


def matches(entry: dict, call: dict) -> bool:
    if entry.get("tool") != call["tool"]:
        return False
    if "gpus" in entry and entry["gpus"] != call["gpus"]:
        return False
    return not ("size" in entry and entry["size"] != call["size"])


def find(doc: dict, call: dict) -> tuple[str, dict] | None:
    entries = [
        (name, entry)
        for name, entry in (doc.get("benchmarks") or {}).items()
        if isinstance(entry, dict) and matches(entry, call)
    ]
    ranks = call.get("mpi_ranks")
    entries.sort(key=lambda item: ranks is None or item[1].get("mpi_ranks") != ranks)
    entries = [e for e in entries if e[1].get("mpi_ranks") in (None, ranks)]
    return entries[0] if entries else None


# ---- under mpirun: nccl-tests built with MPI ------------------------------------------------

MPI_WAIT_S = 60.0  # how long ranks wait for each other (mpirun's own timeout stops them sooner)


def mpi_world() -> tuple[int, int, int] | None:
    """``(rank, size, local_rank)`` when started by Open MPI's mpirun, else None."""
    try:
        rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
        size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return rank, size, int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0"))


def _port() -> int:
    job = os.environ.get("PMIX_NAMESPACE") or "job"
    override = os.environ.get("GPUBOX_SIM_MPI_PORT")
    return int(override) if override else 20000 + zlib.crc32(job.encode()) % 20000


def _gpu_info(doc: dict, gpu: int) -> tuple[str, str]:
    """(bus id as nccl-tests prints it, name) of the scenario's GPU ``gpu``."""
    gpus = doc.get("gpus") or []
    defaults = doc.get("gpu_defaults") or {}
    info = gpus[gpu] if 0 <= gpu < len(gpus) else {}
    bus = str(info.get("bus_id", "00000000:00:00.0"))
    domain, rest = bus.split(":", 1) if bus.count(":") == 2 else ("0000", bus)
    return f"{domain[-4:]}:{rest.rsplit('.', 1)[0]}", str(
        info.get("name") or defaults.get("name") or "GPU"
    )


def _me(doc: dict, rank: int, local: int) -> dict:
    visible = _visible() or [local]
    device = local if local < len(visible) else 0
    bus, name = _gpu_info(doc, visible[device])
    host = socket.gethostname()
    return {
        "rank": rank,
        "host": host,
        "pid": os.getpid(),
        "device": device,
        "bus": bus,
        "name": name,
    }


def rank_line(r: dict) -> str:
    return (
        f"#  Rank {r['rank']:2d} Group  0 Pid {r['pid']:6d} on {r['host']:>10} device "
        f"{r['device']:2d} [{r['bus']}] {r['name']}"
    )


def _failing(entry: dict, rank: int) -> dict | None:
    fail = entry.get("mpi_fail")
    if not isinstance(fail, dict):
        return None
    ranks = fail.get("ranks")
    if ranks is None:
        return fail if rank != 0 else None
    return fail if rank in ranks else None


def _fill(text: str, me: dict) -> str:
    return text.replace("{host}", me["host"]).replace("{pid}", str(me["pid"]))


def run_rank(doc: dict, entry: dict, rank: int, size: int, local: int) -> int:
    me = _me(doc, rank, local)
    fail = _failing(entry, rank)
    if rank == 0:
        return _rank0(entry, me, size)
    deadline = time.monotonic() + MPI_WAIT_S
    while True:
        try:
            conn = socket.create_connection(("127.0.0.1", _port()), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                print(f"{me['host']}: rank {rank} could not reach rank 0", file=sys.stderr)
                return 3
            time.sleep(0.2)
    with conn:
        conn.sendall((json.dumps(me) + "\n").encode())
        if fail is not None:
            sys.stdout.write(_fill(str(fail.get("output", "")), me))
            sys.stdout.flush()
            return int(fail.get("exit", 3))
        conn.sendall(b"ready\n")
        conn.settimeout(MPI_WAIT_S)
        with contextlib.suppress(OSError):
            conn.recv(16)  # rank 0 closes when the run is over
    return int(entry.get("exit", 0))


def _rank0(entry: dict, me: dict, size: int) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", _port()))
    listener.listen(size)
    listener.settimeout(MPI_WAIT_S)
    peers, ranks = [], [me]
    try:
        for _ in range(size - 1):
            conn, _ = listener.accept()
            reader = conn.makefile("r")
            ranks.append(json.loads(reader.readline()))
            peers.append((conn, reader))
    except (OSError, ValueError):
        print(f"{me['host']}: rank 0 waited in vain for the other ranks", file=sys.stderr)
        return 3
    ranks.sort(key=lambda r: r["rank"])
    # The header up to the rank lines, then NCCL's set-up (every rank), then the results.
    head, mark, rest = str(entry.get("output", "")).partition("{rank_lines}")
    if mark:  # whole lines only: mpirun tags (and may interleave) what a killed rank left
        head += "".join(rank_line(r) + "\n" for r in ranks)
        rest = rest.removeprefix("\n")
    sys.stdout.write(head)
    sys.stdout.flush()
    for _conn, reader in peers:  # every rank set up: nccl-tests' ncclCommInitRank returns
        if reader.readline().strip() != "ready":
            time.sleep(MPI_WAIT_S)  # a rank died: NCCL's set-up hangs until mpirun kills us
            return 3
    if entry.get("seconds"):
        time.sleep(float(entry["seconds"]))
    sys.stdout.write(rest)
    sys.stdout.flush()
    for conn, _reader in peers:
        conn.close()
    return int(entry.get("exit", 0))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    tool = os.path.basename(argv[0])
    if tool in ("replay.py", "replay"):  # run directly: the tool is the first argument
        if len(argv) < 2:
            print(
                "usage: replay.py TOOL [ARGS...] (or run it under a tool's name)", file=sys.stderr
            )
            return 2
        tool, argv = os.path.basename(argv[1]), argv[1:]
    path = os.environ.get("GPUBOX_SIM_SCENARIO") or SCENARIO
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"gpubox sim replay: cannot read scenario {path}: {exc}", file=sys.stderr)
        return NO_MATCH
    call = invocation(tool, argv[1:])
    world = mpi_world() if (tool.endswith("_perf") or tool.endswith("_perf_mpi")) else None
    if world is not None:
        call["mpi_ranks"] = world[1]
    found = find(doc, call)
    if found is None:
        entries = doc.get("benchmarks") or {}
        same_tool = [n for n, e in entries.items() if isinstance(e, dict) and e.get("tool") == tool]
        recorded = ", ".join(sorted(same_tool or entries)) or "none"
        print(
            f"gpubox sim replay: scenario {doc.get('scenario')!r} ({path}) has no recorded output "
            f"for {tool} gpus={call['gpus']} size={call['size']} (recorded: {recorded})",
            file=sys.stderr,
        )
        return NO_MATCH
    _, entry = found
    if world is not None:
        return run_rank(doc, entry, *world)
    lines = str(entry.get("output", "")).splitlines(keepends=True)
    if lines:
        sys.stdout.write(lines[0])
        sys.stdout.flush()
    if entry.get("seconds"):
        time.sleep(float(entry["seconds"]))
    sys.stdout.writelines(lines[1:])
    sys.stdout.flush()
    if entry.get("stderr"):
        sys.stderr.write(str(entry["stderr"]))
        sys.stderr.flush()
    return int(entry.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
