"""The ``gpubox`` command line.

Subcommands live in their own modules and are imported only when used, so ``gpubox --help``
stays fast and a missing optional piece never breaks the others. Each module provides
``configure(parser)`` (add its arguments) and ``run(args) -> int`` (exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). The single list of subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gpubox.commands.demo_cmd", "boot a simulated node, deploy to it and check it"),
    "spec": ("gpubox.commands.spec_cmd", "validate inventory hosts and print their node spec"),
    "sim": ("gpubox.sim.cli", "boot, reboot, list and stop simulated GPU nodes"),
    "probe": ("gpubox.commands.probe_cmd", "take an NVML snapshot of this node"),
    "clocks": ("gpubox.commands.clocks_cmd", "lock, reset or show GPU clocks through NVML"),
    "parse": ("gpubox.parsers.cli", "parse a benchmark tool's output into JSON"),
    "manifest": ("gpubox.commands.manifest_cmd", "write or check the node's install manifest"),
    "burn": ("gpubox.commands.burn_cmd", "burn the GPUs with gpu-burn under NVML watch (stress)"),
    "accept": ("gpubox.commands.accept_cmd", "run the boot-time acceptance checks; keep a record"),
    "history": ("gpubox.commands.history_cmd", "list boot records and what changed at each boot"),
    "report": ("gpubox.commands.report_cmd", "write the boot records as an HTML report"),
    "bench": ("gpubox.bench.cli", "run the bandwidth tier's benchmarks on this node"),
    "health": ("gpubox.commands.health_cmd", "Slurm health check: drain a failing node, resume it"),
    "calibrate": ("gpubox.commands.calibrate_cmd", "measure a known-good node; write a baseline"),
}


class CliError(Exception):
    """An error to show the user as one line, without a traceback (exit status 2)."""


def load_node_spec(path: str, default_host: str = "localhost"):
    """The node spec the deploy wrote (``/etc/gpubox/spec.json``: spec data plus ``host``)."""
    import json

    from gpubox.spec import NodeSpec, SpecError

    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CliError(f"no node spec at {path}: deploy the node first, or give --spec") from None
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the node spec {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected a JSON object")
    host = data.pop("host", None) or default_host
    try:
        return NodeSpec.from_data(data, host=host)
    except SpecError as exc:
        raise CliError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from gpubox import __version__

    parser = argparse.ArgumentParser(
        prog="gpubox",
        description="Provision multi-GPU nodes; prove after every boot that they work as built.",
    )
    parser.add_argument("--version", action="version", version=f"gpubox {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        # Only here: the top-level parser reads gpubox's version (importlib.metadata, ~40 ms+),
        # which a subcommand never needs.
        build_parser().parse_args(argv or ["--help"])  # prints help or an error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    sub = argparse.ArgumentParser(prog=f"gpubox {name}", description=help_text)
    module.configure(sub)
    args = sub.parse_args(rest)
    from gpubox import log

    log.setup(f"gpubox {name}")
    try:
        return int(module.run(args) or 0)
    except CliError as exc:
        print(f"gpubox {name}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run through the imported module, so `python -m gpubox.cli` raises and catches the same
    # CliError class that the subcommand modules import.
    from gpubox.cli import main as _main

    sys.exit(_main())
