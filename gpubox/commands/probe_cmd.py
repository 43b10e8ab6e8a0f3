"""``gpubox probe``: one NVML snapshot of this node, as JSON (``--json``) or a short table."""

from __future__ import annotations

import json
import os

from gpubox.cli import CliError

NODE_SPEC = "/etc/gpubox/spec.json"


def configure(parser):
    parser.add_argument("--json", action="store_true", help="print the snapshot document as JSON")
    parser.add_argument(
        "--library",
        help="path of libnvidia-ml.so.1 (default: $GPUBOX_NVML_LIBRARY, then the node spec's "
        "software.nvml_library, then the linker's search path)",
    )
    parser.add_argument(
        "--sysfs-root",
        help="where sysfs is mounted, for the PCIe path walk (default: $GPUBOX_SYSFS_ROOT, then the "
        "node spec's software.sysfs_root, then /sys)",
    )
    parser.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")


def node_software(spec_path: str = NODE_SPEC, key: str = "nvml_library") -> str | None:
    """A ``software`` value of the deployed node spec (``nvml_library``, ``sysfs_root``), if any."""
    try:
        with open(spec_path) as f:
            return json.load(f).get("software", {}).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def node_library(spec_path: str = NODE_SPEC) -> str | None:
    """The NVML library the deployed node spec names, if any."""
    return node_software(spec_path, "nvml_library")


def run(args) -> int:
    from gpubox import probe

    library = args.library or os.environ.get(probe.LIBRARY_ENV) or node_library(args.spec)
    sysfs_root = (
        args.sysfs_root
        or os.environ.get(probe.pcie_path.ROOT_ENV)
        or node_software(args.spec, "sysfs_root")
    )
    try:
        doc = probe.snapshot(library=library, sysfs_root=sysfs_root)
    except probe.ProbeError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"driver {doc['driver_version']}, CUDA {doc['cuda_driver_version']}, {doc['gpu_count']} GPU(s)"
    )
    for g in doc["gpus"]:
        if g["lost"]:
            print(
                f"  gpu{g['index']}: LOST ({', '.join(f'{k}: {v}' for k, v in g['errors'].items())})"
            )
            continue
        p, c = g["pcie"], g["clocks"]
        print(
            f"  gpu{g['index']} {g['bus_id']} {g['name']}: {g['memory_total_mib']} MiB, "
            f"Gen{p['gen_current']} x{p['width_current']}, SM {c['sm_mhz']} MHz "
            f"[{','.join(g['clock_event_reasons']['names']) or 'no event reasons'}], "
            f"{g['temperature_c']} C / HBM {g['hbm_temperature_c']} C, {g['power_w']} W"
        )
    return 0
