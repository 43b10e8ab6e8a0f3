"""Command lines of the bandwidth tier, built from the node spec. Pure: nothing runs here.

Every tool runs with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so CUDA numbers the GPUs in PCI bus
order, which is NVML's index order and the spec's ``gpus`` order: ``gpu2`` is CUDA device 2.

* ``bandwidthTest --device=N --memory=pinned --mode=range --start=S --end=S --increment=S
  --htod --dtoh --dtod``: one GPU, one transfer size (``bench.transfer_size``);
* ``p2pBandwidthLatencyTest`` with ``CUDA_VISIBLE_DEVICES=0,1,..`` (the spec's GPUs);
* ``all_reduce_perf -b S -e S -g N -n ITERS -w WARMUP -c 1`` with ``CUDA_VISIBLE_DEVICES`` set
  to the floor's GPU set: one size alone, so the figure judged is that size's, not an average
  over a sweep (nccl-tests' "Avg bus bandwidth" averages every size); ``-c 1`` checks the data
  (``#wrong``). With ``bench.mpirun.enabled`` it runs under ``mpirun`` (one rank per GPU and
  host, ``-g 1``, ``--tag-output``; the GPU subset and device order exported with ``-x``);
* the same across nodes, one per ``floors.multinode`` entry: ``mpirun -np N -H a:n,b:n
  --tag-output ...`` (:func:`nccl_tests_multinode`), killed after ``bench.mpirun.timeout_s``.

>>> from gpubox.spec import NodeSpec
>>> spec = NodeSpec.from_data({"gpu_count": 2})
>>> inv = nccl_tests(spec, (0, 1), 32 * 1024 * 1024)
>>> inv.name, " ".join(inv.argv[1:]), inv.env["CUDA_VISIBLE_DEVICES"]
('all_reduce_perf[gpu0+gpu1]@32M', '-b 33554432 -e 33554432 -g 2 -n 20 -w 5 -c 1', '0,1')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpubox.floors import format_size
from gpubox.spec import MultinodeFloor, NodeSpec, gpu_id

# Tool (parser name) -> the deploy task that installs it, and the spec field that moves it.
TOOLS = ("bandwidthTest", "p2pBandwidthLatencyTest", "nccl-tests")
DEPLOY_TASK = {
    "bandwidthTest": "bandwidth_tools",
    "p2pBandwidthLatencyTest": "bandwidth_tools",
    "nccl-tests": "nccl_tests",
}
DIR_FIELD = {
    "bandwidthTest": "bench.tools_dir",
    "p2pBandwidthLatencyTest": "bench.tools_dir",
    "nccl-tests": "bench.nccl_tests_dir",
}
BASE_ENV = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@dataclass(frozen=True)
class Invocation:
    """One tool run: what to execute, with which environment, and what it measures."""

    tool: str  # parser name: bandwidthTest, p2pBandwidthLatencyTest or nccl-tests
    name: str  # e.g. bandwidthTest[gpu0], all_reduce_perf[gpu0+gpu1]@32M
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)  # set on top of the caller's environment
    gpus: tuple[int, ...] = ()
    size: int | None = None
    binary: str = ""  # the tool's executable (argv[0], or the program mpirun starts)
    launcher: str | None = None  # mpirun, when used
    timeout_s: float = 600.0
    hosts: tuple[str, ...] = ()  # a multi-node run's hosts (floors.multinode), in rank order

    @property
    def ranks(self) -> int:
        """MPI ranks of a launcher run: one per GPU and host."""
        return len(self.gpus) * max(1, len(self.hosts)) if self.launcher else 0

    @property
    def log_name(self) -> str:
        """A file name for the raw log: ``bandwidthTest-gpu0.log``."""
        return re.sub(r"[^A-Za-z0-9_.+-]+", "-", self.name).strip("-") + ".log"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "tool": self.tool,
            "gpus": list(self.gpus),
            "size": self.size,
            "command": list(self.argv),
            "env": dict(self.env),
            **({"hosts": list(self.hosts)} if self.hosts else {}),
            **({"ranks": self.ranks} if self.launcher else {}),
        }


def tools_dir(spec: NodeSpec) -> str:
    return spec.bench.tools_dir or f"{spec.software.install_dir}/bin"


def nccl_tests_dir(spec: NodeSpec) -> str:
    return spec.bench.nccl_tests_dir or f"{spec.software.install_dir}/nccl-tests/current"


def _gpus_label(gpus) -> str:
    return "+".join(gpu_id(g) for g in gpus)


def bandwidth_test(spec: NodeSpec, gpu: int) -> Invocation:
    """Host<->device and device<->device copies of one GPU at ``bench.transfer_size``."""
    b = spec.bench
    size = b.transfer_size
    binary = f"{tools_dir(spec)}/bandwidthTest"
    argv = (
        binary,
        f"--device={gpu}",
        f"--memory={b.memory}",
        "--mode=range",
        f"--start={size}",
        f"--end={size}",
        f"--increment={size}",
        "--htod",
        "--dtoh",
        "--dtod",
    )
    return Invocation(
        "bandwidthTest",
        f"bandwidthTest[{gpu_id(gpu)}]",
        argv,
        dict(BASE_ENV),
        (gpu,),
        size,
        binary,
        timeout_s=b.timeout_s,
    )


def p2p(spec: NodeSpec) -> Invocation:
    """Every pair's P2P bandwidth and latency (uni- and bidirectional, P2P on and off)."""
    binary = f"{tools_dir(spec)}/p2pBandwidthLatencyTest"
    gpus = tuple(range(spec.gpu_count))
    env = {**BASE_ENV, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
    return Invocation(
        "p2pBandwidthLatencyTest",
        "p2pBandwidthLatencyTest",
        (binary,),
        env,
        gpus,
        None,
        binary,
        timeout_s=spec.bench.timeout_s,
    )


def nccl_tests(
    spec: NodeSpec, gpus: tuple[int, ...], size: int, min_bw: float | None = None
) -> Invocation:
    """One nccl-tests collective on a GPU set at one message size, data checked (``-c 1``).

    ``min_bw`` sets ``NCCL_TESTS_MIN_BW`` (nccl-tests then fails itself below 0.9 x that); off by
    default, because gpubox judges the figure against its own floor.
    """
    b = spec.bench
    binary = f"{nccl_tests_dir(spec)}/{b.nccl_binary}"
    env = {**BASE_ENV, "CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus))}
    if min_bw is not None:
        env["NCCL_TESTS_MIN_BW"] = f"{min_bw:g}"
    per_process = 1 if b.mpirun.enabled else len(gpus)
    tail = (
        "-b", str(size), "-e", str(size), "-g", str(per_process),
        "-n", str(b.iterations), "-w", str(b.warmup), "-c", "1",
    )  # fmt: skip
    launcher = None
    if b.mpirun.enabled:
        launcher = b.mpirun.command
        hosts = b.mpirun.hosts
        ranks = len(gpus) * max(1, len(hosts))
        head: tuple[str, ...] = (launcher, "-np", str(ranks))
        if hosts:
            head += ("-H", ",".join(h if ":" in h else f"{h}:{len(gpus)}" for h in hosts))
        head += ("--tag-output",)
        for var in sorted(env):
            head += ("-x", var)
        argv = (*head, *b.mpirun.extra_args, binary, *tail)
    else:
        argv = (binary, *tail)
    label = b.nccl_binary
    return Invocation(
        "nccl-tests",
        f"{label}[{_gpus_label(gpus)}]@{format_size(size)}",
        argv,
        env,
        tuple(gpus),
        size,
        binary,
        launcher,
        timeout_s=mpirun_timeout(spec) if launcher else b.timeout_s,
    )


def mpirun_timeout(spec: NodeSpec) -> float:
    return float(spec.bench.mpirun.timeout_s or spec.bench.timeout_s)


def nccl_tests_multinode(spec: NodeSpec, floor: MultinodeFloor) -> Invocation:
    """nccl-tests across ``floor.hosts`` under mpirun: one rank per GPU of ``floor.gpus`` on
    every host (``-H a:2,b:2``, ``-g 1``), each rank's lines tagged ``[1,RANK]<stdout>:``.

    >>> from gpubox.spec import NodeSpec
    >>> spec = NodeSpec.from_data({"gpu_count": 2, "software": {"mpi": True},
    ...     "bench": {"mpirun": {"enabled": True, "extra_args": ["--allow-run-as-root"]}},
    ...     "floors": {"multinode": [{"hosts": ["a", "b"], "gpus": [0, 1], "size": "32M",
    ...                               "busbw_gbps": 2}]}})
    >>> inv = nccl_tests_multinode(spec, spec.floors.multinode[0])
    >>> inv.name, " ".join(inv.argv[:11])
    ('all_reduce_perf[a+b:gpu0+gpu1]@32M', 'mpirun -np 4 -H a:2,b:2 --tag-output -x \
CUDA_DEVICE_ORDER -x CUDA_VISIBLE_DEVICES --allow-run-as-root')
    """
    b = spec.bench
    binary = f"{nccl_tests_dir(spec)}/{b.nccl_binary}"
    env = {**BASE_ENV, "CUDA_VISIBLE_DEVICES": ",".join(map(str, floor.gpus))}
    per_host = len(floor.gpus)
    head: tuple[str, ...] = (b.mpirun.command, "-np", str(floor.ranks))
    head += ("-H", ",".join(f"{h}:{per_host}" for h in floor.hosts), "--tag-output")
    for var in sorted(env):
        head += ("-x", var)
    tail = (
        "-b", str(floor.size), "-e", str(floor.size), "-g", "1",
        "-n", str(b.iterations), "-w", str(b.warmup), "-c", "1",
    )  # fmt: skip
    return Invocation(
        "nccl-tests",
        f"{b.nccl_binary}[{floor.id}]@{format_size(floor.size)}",
        (*head, *b.mpirun.extra_args, binary, *tail),
        env,
        tuple(floor.gpus),
        floor.size,
        binary,
        b.mpirun.command,
        timeout_s=mpirun_timeout(spec),
        hosts=tuple(floor.hosts),
    )


def plan(spec: NodeSpec, tools: tuple[str, ...] | list[str] | None = None) -> list[Invocation]:
    """Every run the bandwidth tier needs for this spec, in order (``tools`` filters)."""
    wanted = set(tools or TOOLS)
    unknown = wanted - set(TOOLS)
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(sorted(unknown))}; known: {', '.join(TOOLS)}")
    runs: list[Invocation] = []
    if "bandwidthTest" in wanted:
        runs += [bandwidth_test(spec, gpu) for gpu in range(spec.gpu_count)]
    if "p2pBandwidthLatencyTest" in wanted and spec.gpu_count > 1:
        runs.append(p2p(spec))
    if "nccl-tests" in wanted:
        seen = set()
        for floor in spec.floors.allreduce:
            if (floor.gpus, floor.size) not in seen:
                seen.add((floor.gpus, floor.size))
                runs.append(nccl_tests(spec, floor.gpus, floor.size))
        for floor in spec.floors.multinode:
            if (floor.hosts, floor.gpus, floor.size) not in seen:
                seen.add((floor.hosts, floor.gpus, floor.size))
                runs.append(nccl_tests_multinode(spec, floor))
    return runs
