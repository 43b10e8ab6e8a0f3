#!/usr/bin/env bash
# The whole gpubox flow on a fresh Debian machine (as root), without GPUs: set up, boot a
# simulated 4x PG199 node, deploy to it, reboot it, run the quick checks against it.
# Usage: bash scripts/demo.sh [gpubox demo args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/host-setup.sh
command -v uv >/dev/null || python3 -m pip install --quiet uv
uv sync --locked
exec uv run gpubox demo "$@"
