"""Shared pieces of the benchmark-output parsers: the error type, line cleaning, number parsing.

Parsers take the raw text a tool printed (possibly pasted from a terminal, so with ANSI
escapes, ``\\r`` progress repaints, MPI ``--tag-output`` prefixes, timestamps and shell
prompts) and return plain dicts that :func:`json.dumps` can print.

>>> [text for _, text in clean_lines("[1,0]<stdout>:# Avg bus bandwidth : 1.5\\n")]
['# Avg bus bandwidth : 1.5', '']
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = [
    "ParseError",
    "clean_line",
    "clean_lines",
    "failure_kind",
    "fixture_header_length",
    "is_prompt_line",
    "parse_number",
    "strip_fixture_header",
]


class ParseError(ValueError):
    """The input is not output of the expected tool, or is damaged where it matters.

    The message names the tool, the 1-based line number, what was expected and what was found:

    >>> str(ParseError("nccl-tests", 12, "13 columns", "  8  2  float"))
    "nccl-tests: line 12: expected 13 columns, found '  8  2  float'"
    """

    def __init__(self, tool: str, line_no: int, expected: str, found: str) -> None:
        self.tool = tool
        self.line_no = line_no
        self.expected = expected
        self.found = found
        shown = found if len(found) <= 120 else found[:117] + "..."
        super().__init__(f"{tool}: line {line_no}: expected {expected}, found {shown!r}")

    def shifted(self, offset: int) -> ParseError:
        """The same error with the line number moved by ``offset`` (e.g. past a stripped header)."""
        return ParseError(self.tool, self.line_no + offset, self.expected, self.found)


# --- fixture files -------------------------------------------------------------------------

# The collector's header lines (see shared/fixtures/README.md). Only these are stripped, and
# only at the very top: real tool output (nccl-tests) also starts with '#' lines.
_FIXTURE_HEADER = re.compile(
    r"^# (source|fixture-note|truncated-in-source|truncated-by-collector)\b"
)


def fixture_header_length(text: str) -> int:
    """Number of leading fixture-header lines in ``text`` (0 for raw tool output)."""
    count = 0
    for line in text.split("\n"):
        if not _FIXTURE_HEADER.match(line):
            break
        count += 1
    return count


def strip_fixture_header(text: str) -> str:
    """Drop the collector's ``# source: ...`` style header lines from a fixture file's text.

    >>> strip_fixture_header("# source: x\\n# truncated-in-source\\n# nThread 1\\n")
    '# nThread 1\\n'
    """
    n = fixture_header_length(text)
    return "\n".join(text.split("\n")[n:]) if n else text


# --- line cleaning -------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]")
# Open MPI --tag-output: "[1,0]<stdout>:" (jobid,rank); also the older "[1,0]<stderr>:".
_MPI_TAG = re.compile(r"^\[\d+,\d+\]<(?:stdout|stderr|stddiag)>:")
# A leading log timestamp such as "[2025-06-12 16:57:52] " (NCCL_DEBUG_FILE / ts wrappers).
_TIMESTAMP = re.compile(
    r"^\[\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?\]\s?"
)


def clean_line(line: str) -> str:
    """Undo terminal and launcher decoration of one physical line.

    Keeps what a terminal would finally show after ``\\r`` repaints, and drops ANSI escapes,
    an MPI tag prefix and a leading ``[YYYY-MM-DD HH:MM:SS]`` timestamp. Trailing whitespace
    is removed; leading whitespace is kept because some tables are right-aligned.

    >>> clean_line("[1,1]<stderr>:[2025-06-12 16:57:52] \\x1b[1mWARN\\x1b[0m x  ")
    'WARN x'
    """
    if "\r" in line:
        line = line.rstrip("\r")
        line = line[line.rfind("\r") + 1 :]
    if "\x1b" in line:
        line = _ANSI.sub("", line)
    if line.startswith("["):
        line = _MPI_TAG.sub("", line, count=1)
        line = _TIMESTAMP.sub("", line, count=1)
    return line.rstrip()


def clean_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_no, cleaned_line)`` for every line, 1-based, blank lines included."""
    for no, line in enumerate(text.split("\n"), start=1):
        yield no, clean_line(line)


# Shell prompts seen in pasted output: "user@host:~/dir$ cmd", "[root@host dir]# cmd",
# "$ cmd", "> cmd", and root's "# ./cmd" (only with a path-like command, because nccl-tests
# prints its own '#' lines).
_PROMPTS = (
    re.compile(r"^[\w.-]+@[\w.-]+:[^\s$#]*[$#](?:\s|$)"),
    re.compile(r"^\[[\w.-]+@[\w.-]+(?: [^\]]*)?\][$#](?:\s|$)"),
    re.compile(r"^[$>%](?:\s|$)"),
    re.compile(r"^# (?:\.{0,2}/\S|sudo\s|nvidia-smi\b)"),
)


def is_prompt_line(line: str) -> bool:
    """True when ``line`` looks like a shell prompt (with or without a command after it).

    >>> is_prompt_line("root@box:~/nccl-tests# ./build/all_reduce_perf -g 2")
    True
    >>> is_prompt_line("# nThread 1 nGpus 2")
    False
    """
    return any(p.match(line) for p in _PROMPTS)


# --- lines no parser knows ------------------------------------------------------------------

# What a line that says something went wrong contains. A parser files an unknown line that
# matches under ``errors`` (never as "ignored"); one that also says it is only a warning or a
# note (Open MPI's "help message" aggregation, ssh's "Warning: Permanently added ...") goes
# under ``warnings``.
_FAILURE_WORDS = re.compile(
    r"\b(?:error|errors|fail|failed|failure|fatal|abort|aborted|assert(?:ion)?|exception"
    r"|segmentation fault|core dumped|terminate called|received signal|exited on signal"
    r"|cannot|can't|unable to|no such file|not found|invalid|illegal|mismatch|timed out"
    r"|out of memory)\b",
    re.IGNORECASE,
)
_NOT_A_FAILURE = re.compile(r"\bwarn(?:ing)?\b|\bnote\b|help message|\bignoring\b", re.IGNORECASE)


def failure_kind(line: str) -> str | None:
    """``"error"`` when an unrecognised line reports a failure, ``"warning"`` when it only
    warns about one, ``None`` when it says nothing of the kind.

    >>> failure_kind("NCCL failure all_reduce.cu:95 'unhandled cuda error'")
    'error'
    >>> failure_kind("libibverbs: Warning: couldn't load driver 'mlx4': cannot open shared object")
    'warning'
    >>> failure_kind("Authorization required, but no authorization protocol specified") is None
    True
    """
    if not _FAILURE_WORDS.search(line):
        return None
    return "warning" if _NOT_A_FAILURE.search(line) else "error"


# --- numbers -------------------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def parse_number(token: str) -> float | None:
    """Parse a printed number (``12``, ``0.25``, ``1e+06``); ``None`` for ``N/A``-style cells.

    Raises :class:`ValueError` for anything else, so callers can turn it into a ParseError.

    >>> parse_number("1e+06"), parse_number("N/A")
    (1000000.0, None)
    """
    if token in ("N/A", "n/a", "NA", "-", "nan"):
        return None
    if not _NUMBER.match(token):
        raise ValueError(token)
    return float(token)


def is_number(token: str) -> bool:
    """True when ``token`` is a plain printed number (not ``N/A``)."""
    return bool(_NUMBER.match(token))
