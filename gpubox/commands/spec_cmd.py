"""``gpubox spec``: validate an inventory's hosts and print their specs, or the field reference."""

from __future__ import annotations

import json

from gpubox.cli import CliError


def configure(parser):
    parser.add_argument(
        "inventory", nargs="?", help="pyinfra inventory file, e.g. inventories/home.py"
    )
    parser.add_argument(
        "--limit", action="append", metavar="HOST", help="only this host (repeatable, as pyinfra's)"
    )
    parser.add_argument("--json", action="store_true", help="print the validated specs as JSON")
    parser.add_argument(
        "--reference", action="store_true", help="print every spec field, its default and meaning"
    )
    parser.add_argument(
        "--update",
        metavar="FILE",
        help="with --reference: rewrite the reference inside FILE "
        "(between <!-- spec-reference:start --> and <!-- spec-reference:end -->)",
    )


def run(args) -> int:
    from gpubox import inventory, spec

    if args.reference:
        if args.update:
            _update(args.update, spec.reference_markdown())
            print(f"{args.update}: inventory reference updated")
        else:
            print(spec.reference_markdown(), end="")
        return 0
    if not args.inventory:
        raise CliError("give an inventory file (e.g. inventories/home.py) or --reference")
    try:
        found = inventory.load(args.inventory, limit=args.limit)
    except (spec.SpecError, FileNotFoundError, KeyError) as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps({h.name: h.spec.to_data() for h in found}, indent=2))
    else:
        for h in found:
            s = h.spec
            lock = f"{s.clocks.graphics_mhz} MHz" if s.clocks.graphics_mhz else "none"
            print(
                f"{h.name}: ok - {s.gpu_count}x {s.gpu_name}, driver {s.software.driver_version} "
                f"({s.software.source}, {s.software.os}), NVLink {s.nvlink}, clock lock {lock}"
            )
    return 0


START, END = "<!-- spec-reference:start -->\n", "<!-- spec-reference:end -->"


def _update(path: str, table: str) -> None:
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text:
        raise CliError(f"{path} has no {START.strip()} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{START}\n{table}\n{END}{tail}")
