"""``gpubox burn``: the stress tier's burn on this node (gpu-burn under NVML watch).

    $ gpubox burn                      # the spec's duration on the spec's GPUs; progress on stderr
    $ gpubox burn --seconds 60 --gpus 0,1
    $ gpubox burn --json               # the burn document (what `pytest checks/ -m stress` judges)

Reads the node spec (``/etc/gpubox/spec.json``, written by the deploy) for gpu-burn's options,
the ceilings and the NVML library. Exit status: 0 when every GPU passed gpu-burn and nothing
stopped the run, 1 when not (the summary or the document says why: a safety stop names the GPU
and what it read), 2 when the burn could not start (no NVML, no gpu-burn, a bad GPU list).
"""

from __future__ import annotations

import argparse
import json
import sys

from gpubox.cli import CliError

NODE_SPEC = "/etc/gpubox/spec.json"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")
    parser.add_argument("--seconds", type=int, help="how long to burn (default stress.duration_s)")
    parser.add_argument("--gpus", help="GPU indices, comma-separated (default stress.gpus: all)")
    parser.add_argument(
        "--precision", choices=("single", "double"), help="default stress.precision"
    )
    parser.add_argument(
        "--tensor-cores",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default stress.tensor_cores",
    )
    parser.add_argument("--library", help="libnvidia-ml.so.1 (default: the spec's nvml_library)")
    parser.add_argument("--json", action="store_true", help="print the burn document as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def load_spec(path: str):
    from gpubox.cli import load_node_spec

    return load_node_spec(path)


def _gpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--gpus {text!r}: expected indices like 0,1") from None


def run(args: argparse.Namespace) -> int:
    from gpubox import burn

    spec = load_spec(args.spec)
    if args.seconds is not None and args.seconds < 1:
        raise CliError("--seconds: expected at least 1")
    try:
        doc = burn.run(
            spec,
            seconds=args.seconds,
            gpus=_gpus(args.gpus),
            precision=args.precision,
            tensor_cores=args.tensor_cores,
            library=args.library,
            progress=None if args.quiet else burn.stderr_progress,
        )
    except burn.BurnError as exc:
        raise CliError(str(exc)) from None
    try:
        if args.json:
            json.dump(doc, sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            _summary(doc)
        sys.stdout.flush()
    except OSError:  # the terminal or SSH session is gone; the burn is already stopped
        pass
    return 0 if doc["ok"] else 1


def _summary(doc: dict) -> None:
    state = "passed" if doc["ok"] else "FAILED"
    print(
        f"{doc['host']}: gpu-burn {state} after {doc['duration_s']:.0f} of {doc['seconds']} s on "
        f"GPUs {','.join(map(str, doc['gpus']))}; most the cards drew together: "
        f"{doc['max_supply_w']} W"
    )
    for r in doc["results"]:
        print(
            f"  gpu{r['gpu']} ({r['bus_id']}): {r['gflops_sustained']} Gflop/s sustained, "
            f"errors {r['errors']}, verdict {r['verdict']}, SM {r['min_sm_mhz']}-{r['max_sm_mhz']}"
            f" MHz, max {r['max_temp_c']} C / HBM {r['max_hbm_temp_c']} C, {r['max_power_w']} W"
            + (f", slowdown: {', '.join(r['slowdown_reasons'])}" if r["slowdown_reasons"] else "")
        )
    for error in doc["errors"]:
        print(f"  {error}")
