"""``gpubox report [--inventory FILE [--limit HOST]]``: the node's boot records as one
self-contained HTML page (or, with ``--terminal``, one screen of text).

On the node it reads the local records; with ``--inventory`` it fetches each host's records over
SSH (``gpubox history --json --full`` on the node). Prints the path of every page written.
"""

from __future__ import annotations

import json
from pathlib import Path

from gpubox.cli import CliError

DEFAULT_OUT = "results/report.html"


def configure(parser):
    parser.add_argument(
        "--limit",
        action="append",
        metavar="HOST",
        help="only this inventory host (repeatable, as pyinfra's; default: all, or this node)",
    )
    parser.add_argument("--inventory", help="pyinfra inventory: fetch the hosts' records over SSH")
    parser.add_argument("--runs-dir", help="records folder (default: the node spec's runs_dir)")
    parser.add_argument(
        "--burn", help="a burn document (`gpubox burn --json` output) to show as time series"
    )
    parser.add_argument(
        "--out",
        help=f"HTML file (default {DEFAULT_OUT}; several hosts: one file each, "
        "named FILE-HOST.html)",
    )
    parser.add_argument(
        "--terminal", action="store_true", help="print a one-screen summary (HTML only with --out)"
    )


def outputs(out: str, hosts: list[str]) -> list[Path]:
    """Where each host's page goes: ``out`` itself for one host, ``out``-HOST.html for several."""
    path = Path(out)
    if len(hosts) == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{host}{path.suffix or '.html'}") for host in hosts]


def run(args) -> int:
    from gpubox import history, report

    burn = None
    if args.burn:
        try:
            with open(args.burn) as f:
                burn = json.load(f)
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read the burn document {args.burn}: {exc}") from None

    try:
        docs = history.collect(args.inventory, args.limit or None, True, args.runs_dir)
    except history.HistoryError as exc:
        raise CliError(str(exc)) from None
    if args.terminal:
        print("\n".join(report.render_terminal(doc) for doc in docs), end="")
        if not args.out:
            return 0
    names = [doc.get("inventory_host") or doc.get("host") or "node" for doc in docs]
    for doc, path in zip(docs, outputs(args.out or DEFAULT_OUT, names), strict=True):
        report.write(str(path), report.render_html(doc, burn))
        print(f"report: {path}")
    return 0
