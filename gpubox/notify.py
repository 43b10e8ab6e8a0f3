"""Failure notification: a Discord-compatible webhook, never in the way of a boot.

The webhook URL is a secret, so it lives in a root-only file on the node (default
``/etc/gpubox/webhook-url``, mode 600), never in the inventory: put it there by hand or with
your secrets tool. A file readable or writable by group or others is refused (and said so).
Nothing is sent when the file does not exist.

A message is a POST of ``{"content": "..."}`` (Discord; Slack-style tools that accept the same
JSON work too), with a short timeout. What happens when it is not accepted:

* the service refuses it for good (HTTP 4xx other than 408 and 429: a deleted webhook, a bad
  body): it is dropped, with a warning in the log, and never blocks the messages after it;
* it may take it later (no answer, 408, 429, 5xx): it is queued as a file under the outbox
  (``/var/lib/gpubox/outbox``) and every acceptance run first retries what is queued, oldest
  first;
* the answer carries ``Retry-After`` (seconds or an HTTP date): up to :data:`MAX_WAIT_S` is
  waited for once; a longer wait is written to the outbox (``retry-after``), and no run posts
  before that time.

:func:`deliver` never raises: a boot must never wait on the network. Problems go to the
``gpubox.notify`` logger (warnings for anything not delivered).

>>> deliver("node0: boot 5c1f0a2e failed 5 checks", "/etc/gpubox/webhook-url",
...         "/var/lib/gpubox/outbox")                                   # doctest: +SKIP
'sent'
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import urllib.error
import urllib.request
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from gpubox.records import write_file_atomic

DEFAULT_WEBHOOK_FILE = "/etc/gpubox/webhook-url"
DEFAULT_OUTBOX = "/var/lib/gpubox/outbox"
TIMEOUT_S = 5.0
MAX_CONTENT = 1900  # Discord refuses content over 2000 characters
MAX_QUEUED = 100
MAX_WAIT_S = 10.0  # a longer Retry-After is kept for a later run, not waited for
RETRY_AFTER_FILE = "retry-after"  # in the outbox: the Unix time before which nothing is posted
RETRYABLE = (408, 429)  # the 4xx answers that mean "later", not "never"

log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    """The webhook cannot be used or reached; the message says which and why.

    ``status`` is the HTTP status (None: no answer), ``retry_after`` the seconds the service
    asked to wait (None: it did not say).
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after

    @property
    def permanent(self) -> bool:
        """The service refused this message for good: sending it again cannot help."""
        return self.status is not None and 400 <= self.status < 500 and self.status not in RETRYABLE


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def read_url(path: str) -> str | None:
    """The URL in ``path``; None when the file does not exist (notification off).

    Raises :class:`NotifyError` for a file that group or others can read or write, that another
    user owns, or that holds no http(s) URL.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_mode & 0o077:
        raise NotifyError(
            f"{path} is readable or writable by group/others (mode "
            f"{stat.S_IMODE(st.st_mode):03o}): refusing to use the webhook URL it holds; "
            f"`chmod 600 {path}`"
        )
    if st.st_uid not in (0, os.geteuid()):
        raise NotifyError(f"{path} is owned by uid {st.st_uid}, not root: refusing to use it")
    with open(path) as f:
        url = f.read().strip()
    if not url.startswith(("https://", "http://")):
        raise NotifyError(f"{path} holds no http(s) URL")
    return url


def post(url: str, content: str, timeout: float = TIMEOUT_S) -> None:
    """POST ``{"content": content}``; raises :class:`NotifyError` unless the answer is 2xx."""
    body = json.dumps({"content": content[:MAX_CONTENT]}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "gpubox-notify"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, headers = answer.status, answer.headers
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"the webhook could not be reached ({reason})") from None
    if not 200 <= status < 300:
        wait = retry_after_seconds(headers.get("Retry-After") if headers else None)
        asked = f", asking to wait {wait:.0f} s" if wait is not None else ""
        raise NotifyError(f"the webhook answered HTTP {status}{asked}", status, wait)


def _post_patiently(url: str, content: str, outbox: str) -> None:
    """:func:`post`, waiting once for a short ``Retry-After``; a long one is written down."""
    try:
        post(url, content)
    except NotifyError as exc:
        if exc.retry_after is None or exc.permanent:
            raise
        if exc.retry_after > MAX_WAIT_S:
            _hold_until(outbox, time.time() + exc.retry_after)
            raise
        time.sleep(exc.retry_after)
        post(url, content)


def _hold_until(outbox: str, when: float) -> None:
    folder = Path(outbox)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    write_file_atomic(folder / RETRY_AFTER_FILE, f"{when:.0f}\n", mode=0o600)


def held_until(outbox: str) -> float | None:
    """The Unix time the service asked us to wait for, while it is still ahead; else None."""
    try:
        when = float((Path(outbox) / RETRY_AFTER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return when if when > time.time() else None


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).astimezone().isoformat(timespec="seconds")


def queued(outbox: str) -> list[Path]:
    try:
        return sorted(p for p in Path(outbox).iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return []


def enqueue(outbox: str, content: str) -> Path:
    folder = Path(outbox)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{time.time_ns()}-{os.getpid()}.json"
    write_file_atomic(path, json.dumps({"content": content}) + "\n", mode=0o600)
    waiting = queued(outbox)
    for old in waiting[: max(0, len(waiting) - MAX_QUEUED)]:
        log.warning("outbox full: dropping the oldest queued message %s", old.name)
        old.unlink(missing_ok=True)
    return path


def flush(webhook_file: str, outbox: str) -> tuple[int, int]:
    """Retry queued messages, oldest first; ``(sent, still queued)``.

    A message the service refuses for good is dropped and the next one tried; any other failure
    stops here (the service is down or busy: the rest waits for the next run).
    """
    waiting = queued(outbox)
    if not waiting:
        return 0, 0
    try:
        url = read_url(webhook_file)
    except NotifyError as exc:
        log.warning("notification: %s; %d message(s) stay queued", exc, len(waiting))
        return 0, len(waiting)
    if url is None:
        return 0, len(waiting)
    hold = held_until(outbox)
    if hold is not None:
        log.warning(
            "notification: the webhook asked to wait until %s; %d queued message(s) wait too",
            _when(hold),
            len(waiting),
        )
        return 0, len(waiting)
    sent = 0
    for path in waiting:
        try:
            content = json.loads(path.read_text())["content"]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("notification: dropping unreadable queued message %s", path)
            path.unlink(missing_ok=True)
            continue
        try:
            _post_patiently(url, content, outbox)
        except NotifyError as exc:
            if exc.permanent:
                log.warning(
                    "notification: queued message %s dropped: %s (refused for good)",
                    path.name,
                    exc,
                )
                path.unlink(missing_ok=True)
                continue
            log.warning(
                "notification: queued message %s not delivered: %s; retried at the next boot",
                path.name,
                exc,
            )
            break
        path.unlink(missing_ok=True)
        sent += 1
        log.info("notification: delivered queued message %s", path.name)
    return sent, len(queued(outbox))


def deliver(content: str, webhook_file: str, outbox: str) -> str:
    """Send ``content`` now, or queue it; ``sent``, ``queued``, ``dropped``, ``off``, ``refused``
    (the URL file is unusable) or ``error``.

    Never raises: every problem is logged.
    """
    try:
        try:
            url = read_url(webhook_file)
        except NotifyError as exc:
            log.error("notification: %s", exc)
            return "refused"
        if url is None:
            return "off"
        hold = held_until(outbox)
        try:
            if hold is not None:
                raise NotifyError(f"the webhook asked to wait until {_when(hold)}")
            _post_patiently(url, content, outbox)
        except NotifyError as exc:
            if exc.permanent:
                log.warning("notification: the message was dropped: %s (refused for good)", exc)
                return "dropped"
            path = enqueue(outbox, content)
            log.warning(
                "notification: not delivered: %s; queued as %s, retried at the next boot", exc, path
            )
            return "queued"
        log.info("notification: sent")
        return "sent"
    except Exception as exc:  # the boot must go on whatever happens here
        log.error("notification: failed unexpectedly: %r", exc)
        return "error"
