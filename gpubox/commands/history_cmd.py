"""``gpubox history [--inventory FILE [--limit HOST]]``: every boot's acceptance record, and
what changed at each boot.

On the node it reads ``acceptance.runs_dir`` (``/var/lib/gpubox/runs``); with ``--inventory``
it runs ``gpubox history --json`` on each inventory host over SSH and prints here.
"""

from __future__ import annotations

import json

from gpubox.cli import CliError


def configure(parser):
    parser.add_argument(
        "--limit",
        action="append",
        metavar="HOST",
        help="only this inventory host (repeatable, as pyinfra's; default: all, or this node)",
    )
    parser.add_argument("--inventory", help="pyinfra inventory: read the hosts over SSH")
    parser.add_argument("--runs-dir", help="records folder (default: the node spec's runs_dir)")
    parser.add_argument("--json", action="store_true", help="print the history as JSON")
    parser.add_argument(
        "--full", action="store_true", help="with --json: include every record and its results"
    )
    parser.add_argument("--last", type=int, help="only the last N boots")


def run(args) -> int:
    from gpubox import history

    try:
        docs = history.collect(args.inventory, args.limit or None, args.full, args.runs_dir)
    except history.HistoryError as exc:
        raise CliError(str(exc)) from None
    if args.last:
        for doc in docs:
            doc["boots"] = doc["boots"][-args.last :]
    if args.json:
        print(json.dumps(docs[0] if len(docs) == 1 and not args.inventory else docs, indent=2))
        return 0
    print("\n".join(history.format_text(doc) for doc in docs), end="")
    return 0
