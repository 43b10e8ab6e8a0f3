"""``gpubox sim``: boot, reboot, list and stop simulated GPU nodes (see gpubox.sim.target)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys


class _UserError(Exception):
    pass


def configure(parser: argparse.ArgumentParser) -> None:
    from gpubox.sim import target as t

    parser.epilog = (
        "Targets live under $GPUBOX_SIM_HOME (default /var/lib/gpubox/sim), the cached base "
        "root file system under $GPUBOX_SIM_CACHE (default /var/cache/gpubox/sim). Needs root."
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("up", help="create (first time) and boot a simulated node")
    p.add_argument("--name", default=t.DEFAULT_NAME, help=f"target name (default {t.DEFAULT_NAME})")
    p.add_argument(
        "--os",
        dest="os_release",
        choices=sorted(t.OS_SUITES),
        default=None,
        help=f"the node's OS, chosen when it is created (default {t.DEFAULT_OS}; debian-12 "
        "runs the cuda-repo install path)",
    )
    p.add_argument(
        "--scenario",
        default=None,
        help="scenario name or file (default for a new target: "
        + ", ".join(f"{os_}: {name}" for os_, name in sorted(t.DEFAULT_SCENARIOS.items()))
        + "; the current one when booting an existing target again)",
    )
    p.add_argument("--timeout", type=float, default=t.BOOT_TIMEOUT_S, help="boot timeout (s)")
    p.add_argument("--json", action="store_true", help="print the target as JSON")

    p = sub.add_parser("reboot", help="orderly stop and boot again (/run starts empty)")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=t.BOOT_TIMEOUT_S, help="boot timeout (s)")

    p = sub.add_parser("down", help="stop a simulated node")
    p.add_argument("name")
    p.add_argument("--purge", action="store_true", help="also delete its root file system")

    p = sub.add_parser("ls", help="list simulated nodes")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("scenario", help="switch the scenario (next NVML process sees it)")
    p.add_argument("name")
    p.add_argument("scenario", help="scenario name or file")

    p = sub.add_parser("ssh", help="log in to a simulated node, or run a command there")
    p.add_argument("name")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run (default: a shell)")


def run(args: argparse.Namespace) -> int:
    """Run one action; a user error becomes a one-line message (exit 2) through gpubox.cli."""
    from gpubox.cli import CliError
    from gpubox.sim import target as t

    try:
        return _ACTIONS[args.action](args, t)
    except (t.SimError, _UserError) as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        print("gpubox sim: interrupted", file=sys.stderr)
        return 130


def _describe(target) -> str:
    login = " ".join(shlex.quote(part) for part in target.ssh_command())
    return "\n".join(
        [
            f"{target.name}: {target.os}, {target.state} on 127.0.0.1:{target.port} "
            f"(scenario {target.scenario})",
            f"  ssh:               {login}",
            f"  pyinfra inventory: {target.inventory_file}",
            f"  pyinfra host data: {target.state_dir / 'inventory.json'}",
            f"  testinfra --hosts: '{target.hosts}'",
            f"  state:             {target.state_dir}",
        ]
    )


def _up(args, t) -> int:
    target = t.up(args.name, args.scenario, os_release=args.os_release, timeout=args.timeout)
    print(json.dumps(target.to_json(), indent=2) if args.json else _describe(target))
    return 0


def _reboot(args, t) -> int:
    target = t.reboot(args.name, timeout=args.timeout)
    print(_describe(target))
    return 0


def _down(args, t) -> int:
    existed = t.down(args.name, purge=args.purge)
    if not existed:
        print(f"{args.name}: no such simulated node (nothing to do)")
    else:
        print(f"{args.name}: {'purged' if args.purge else 'stopped'}")
    return 0


def _ls(args, t) -> int:
    targets = t.list_targets()
    if args.json:
        print(json.dumps([target.to_json() for target in targets], indent=2))
        return 0
    if not targets:
        print(f"no simulated nodes under {t.sim_home()}")
        return 0
    rows = [("NAME", "OS", "STATE", "PORT", "PID", "SCENARIO", "CREATED")]
    for target in targets:
        rows.append(
            (
                target.name,
                target.os,
                target.state,
                str(target.port or "-"),
                str(target.pid or "-"),
                target.scenario,
                target.created,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _scenario(args, t) -> int:
    target = t.set_scenario(args.name, args.scenario)
    print(f"{target.name}: scenario {target.scenario} (takes effect for the next NVML process)")
    return 0


def _ssh(args, t) -> int:
    target = t.get_target(args.name)
    if not target.running:
        raise _UserError(
            f"simulated node {args.name!r} is not running; `gpubox sim up --name {args.name}`"
        )
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    argv = target.ssh_command(*command)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


_ACTIONS = {
    "up": _up,
    "reboot": _reboot,
    "down": _down,
    "ls": _ls,
    "scenario": _scenario,
    "ssh": _ssh,
}
