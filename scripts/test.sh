#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine (as root), then run it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/host-setup.sh                       # apt: debootstrap, systemd-nspawn, gcc, ...
command -v uv >/dev/null || python3 -m pip install --quiet uv
uv sync --locked                                 # the exact versions in uv.lock
uv run ruff check .
uv run ruff format --check .
# pytest exits 5 when no test ran: with `set -e` that fails this script, as it should.
exec uv run pytest "$@"
