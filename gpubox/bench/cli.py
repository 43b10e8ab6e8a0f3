"""``gpubox bench run``: the bandwidth tier's measurements on this node.

    $ gpubox bench run                 # every run the spec needs; a summary, progress on stderr
    $ gpubox bench run --json          # the bench document (what the checks judge)
    $ gpubox bench run --tools nccl-tests --dry-run    # print the command lines only

Reads the node spec (``/etc/gpubox/spec.json``, written by the deploy). Exit status: 0 when every
run succeeded, 1 when a tool failed (the document says which and why), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from gpubox.cli import CliError

NODE_SPEC = "/etc/gpubox/spec.json"


def configure(parser: argparse.ArgumentParser) -> None:
    from gpubox.bench.commands import TOOLS

    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("run", help="run the bandwidth tier's benchmarks and print the results")
    p.add_argument("--spec", default=NODE_SPEC, help=f"node spec file (default {NODE_SPEC})")
    p.add_argument(
        "--tools",
        action="append",
        help=f"only these tools, comma-separated or repeated ({', '.join(TOOLS)})",
    )
    p.add_argument("--json", action="store_true", help="print the bench document as JSON")
    p.add_argument(
        "--log-dir", help="root folder of the raw logs (default: the spec's bench.log_dir)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the command lines, run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def load_spec(path: str):
    from gpubox.cli import load_node_spec

    return load_node_spec(path)


def _tools(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [t.strip() for v in values for t in v.split(",") if t.strip()]


def run(args: argparse.Namespace) -> int:
    from gpubox.bench import commands, tier
    from gpubox.bench.wrapper import stderr_progress

    spec = load_spec(args.spec)
    tools = _tools(args.tools)
    try:
        plan = commands.plan(spec, tools)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.dry_run:
        for inv in plan:
            env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(inv.env.items()))
            print(f"{inv.name}: {env} {shlex.join(inv.argv)}")
        return 0
    doc = tier.run_tier(
        spec, tools, log_root=args.log_dir, progress=None if args.quiet else stderr_progress
    )
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _summary(doc)
    return 0 if all(r["ok"] for r in doc["runs"]) else 1


def _summary(doc: dict) -> None:
    from gpubox.bench import results

    print(
        f"{doc['host']}: {len(doc['runs'])} runs in {doc['duration_s']:.1f} s, logs in {doc['log_dir']}"
    )
    for warning in doc["warnings"]:
        print(f"  warning: {warning}")
    for r in doc["runs"]:
        figures = ""
        if r["tool"] == "bandwidthTest":
            h2d, d2h = (results.host_copy(r, d, r["size"]) for d in ("h2d", "d2h"))
            figures = f"H2D {h2d} GB/s, D2H {d2h} GB/s"
        elif r["tool"] == "nccl-tests":
            row = results.allreduce_row(r, r["size"])
            if row:
                figures = (
                    f"busbw {row['busbw']} GB/s, #wrong {row['wrong']['oop']}/{row['wrong']['ip']}"
                )
        state = "ok" if r["ok"] else "FAILED"
        print(f"  {r['name']}: {state} ({r['duration_s']:.1f} s) {figures}".rstrip())
        for error in r["errors"]:
            print(f"      {error}")
