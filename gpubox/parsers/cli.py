"""``gpubox parse TOOL FILE``: parse a benchmark tool's saved output and print it as JSON.

    $ gpubox parse nccl-tests all_reduce.log
    {
      "ok": true,
      ...

``FILE`` may be ``-`` for stdin. A leading fixture header (``# source: ...`` lines, see
shared/fixtures/README.md) is stripped, so fixture files and raw logs both work; line numbers
in error messages count lines of the file as given. Exit status: 0 when the text parsed (also
when the tool reported a failure, i.e. ``"ok": false``), 2 when it is unreadable or unparseable.
"""

from __future__ import annotations

import argparse
import json
import sys

from gpubox.cli import CliError
from gpubox.parsers import PARSERS
from gpubox.parsers.common import ParseError, fixture_header_length, strip_fixture_header


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``tool`` and ``file`` arguments."""
    parser.add_argument("tool", choices=sorted(PARSERS), help="which tool printed the output")
    parser.add_argument("file", help="saved output of the tool, or '-' for stdin")


def run(args: argparse.Namespace) -> int:
    """Parse ``args.file`` with the parser for ``args.tool`` and print the result as JSON."""
    text = _read(args.file)
    offset = fixture_header_length(text)
    try:
        result = PARSERS[args.tool](strip_fixture_header(text))
    except ParseError as exc:
        raise CliError(str(exc.shifted(offset))) from None
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            return f.read()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
