"""gpubox's log lines: the standard ``logging`` tree under ``gpubox``, with levels journald keeps.

Modules log through ``logging.getLogger(__name__)``; the command line calls :func:`setup` once, so
records reach stderr as ``gpubox accept: message``. Under systemd, when stderr is the journal
(``$JOURNAL_STREAM`` names it), every line starts with its syslog priority (``<4>`` for a
warning), which journald takes as the entry's priority and strips (``SyslogLevelPrefix=``, on by
default). So ``journalctl -p warning -u gpubox-acceptance`` lists gpubox's warnings and errors,
and nothing else::

    >>> import io, logging
    >>> out = io.StringIO()
    >>> setup("gpubox accept", stream=out, journal=True)
    >>> logging.getLogger("gpubox.notify").warning("not delivered")
    >>> out.getvalue()
    '<4>gpubox accept: not delivered\\n'
"""

from __future__ import annotations

import logging
import os
import sys

TYPE_CHECKING = False  # typing itself costs the probe's start-up ~3 ms; only annotations use it
if TYPE_CHECKING:
    from typing import TextIO

# syslog priorities (sd-daemon(3)): the prefix journald reads
PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_HANDLER = "gpubox-stderr"


def writes_to_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal stream systemd gave this service (``$JOURNAL_STREAM``
    is ``device:inode`` of it)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class _Formatter(logging.Formatter):
    def __init__(self, prog: str, journal: bool):
        super().__init__()
        self.prog, self.journal = prog, journal

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        lines = [f"{self.prog}: {line}" if line else line for line in text.splitlines() or [""]]
        if self.journal:  # journald splits at newlines: every line carries the priority
            level = min(PRIORITY, key=lambda lv: abs(lv - record.levelno))
            lines = [f"<{PRIORITY[level]}>{line}" for line in lines]
        return "\n".join(lines)


def setup(
    prog: str,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    journal: bool | None = None,
) -> None:
    """Send the ``gpubox`` loggers' records at ``level`` and above to ``stream`` (stderr) as
    ``PROG: message``; with syslog priority prefixes when ``journal`` (default: when the stream
    is the journal). Calling it again replaces the handler."""
    stream = sys.stderr if stream is None else stream
    journal = writes_to_journal(stream) if journal is None else journal
    logger = logging.getLogger("gpubox")
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER)
    handler.setFormatter(_Formatter(prog, journal))
    logger.addHandler(handler)
    logger.setLevel(level)
