"""``gpubox manifest write|check|show``: the node's record of what the deploy installed."""

from __future__ import annotations

import json

from gpubox import manifest


def configure(parser):
    parser.add_argument("action", choices=["write", "check", "show"])
    parser.add_argument("--inputs", default=manifest.INPUTS)
    parser.add_argument("--spec", default="/etc/gpubox/spec.json")
    parser.add_argument("--out", default=manifest.MANIFEST)


def run(args) -> int:
    if args.action == "write":
        changed = manifest.write(args.inputs, args.spec, args.out)
        print(f"{args.out}: {'written' if changed else 'unchanged'}")
        return 0
    if args.action == "check":  # exit 0 when the manifest on disk describes the node as it is
        current = manifest.is_current(args.inputs, args.spec, args.out)
        print("current" if current else "stale")
        return 0 if current else 1
    with open(args.out) as f:
        print(json.dumps(json.load(f), indent=2))
    return 0
