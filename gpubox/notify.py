"""Failure notification: a Discord-compatible webhook, never in the way of a boot.

The webhook URL is a secret, so it lives in a root-only file on the node (default
``/etc/gpubox/webhook-url``, mode 600), never in the inventory: put it there by hand or with
your secrets tool. A file readable or writable by group or others is refused (and said so).
Nothing is sent when the file does not exist.

A message is a POST of ``{"content": "..."}`` (Discord; Slack-style tools that accept the same
JSON work too), with a short timeout. A delivery that fails is logged and queued as a file under
the outbox (``/var/lib/gpubox/outbox``); every acceptance run first retries what is queued,
oldest first. :func:`deliver` never raises: a boot must never wait on the network.

>>> deliver("node0: boot 5c1f0a2e failed 5 checks", "/etc/gpubox/webhook-url",
...         "/var/lib/gpubox/outbox")                                   # doctest: +SKIP
'sent'
"""

from __future__ import annotations

import json
import os
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gpubox.records import write_file_atomic

DEFAULT_WEBHOOK_FILE = "/etc/gpubox/webhook-url"
DEFAULT_OUTBOX = "/var/lib/gpubox/outbox"
TIMEOUT_S = 5.0
MAX_CONTENT = 1900  # Discord refuses content over 2000 characters
MAX_QUEUED = 100

Log = Callable[[str], None]


class NotifyError(RuntimeError):
    """The webhook cannot be used or reached; the message says which and why."""


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
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"the webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"the webhook could not be reached ({reason})") from None
    if not 200 <= status < 300:
        raise NotifyError(f"the webhook answered HTTP {status}")


def queued(outbox: str) -> list[Path]:
    try:
        return sorted(p for p in Path(outbox).iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return []


def enqueue(outbox: str, content: str, log: Log = print) -> Path:
    folder = Path(outbox)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path = folder / f"{time.time_ns()}-{os.getpid()}.json"
    write_file_atomic(path, json.dumps({"content": content}) + "\n", mode=0o600)
    waiting = queued(outbox)
    for old in waiting[: max(0, len(waiting) - MAX_QUEUED)]:
        log(f"outbox full: dropping the oldest queued message {old.name}")
        old.unlink(missing_ok=True)
    return path


def flush(webhook_file: str, outbox: str, log: Log = print) -> tuple[int, int]:
    """Retry queued messages, oldest first, until one fails; ``(sent, still queued)``."""
    waiting = queued(outbox)
    if not waiting:
        return 0, 0
    try:
        url = read_url(webhook_file)
    except NotifyError as exc:
        log(f"notification: {exc}; {len(waiting)} message(s) stay queued")
        return 0, len(waiting)
    if url is None:
        return 0, len(waiting)
    sent = 0
    for path in waiting:
        try:
            content = json.loads(path.read_text())["content"]
        except (OSError, ValueError, KeyError, TypeError):
            log(f"notification: dropping unreadable queued message {path}")
            path.unlink(missing_ok=True)
            continue
        try:
            post(url, content)
        except NotifyError as exc:
            log(f"notification: queued message {path.name} not delivered: {exc}; retried next boot")
            break
        path.unlink(missing_ok=True)
        sent += 1
        log(f"notification: delivered queued message {path.name}")
    return sent, len(queued(outbox))


def deliver(content: str, webhook_file: str, outbox: str, log: Log = print) -> str:
    """Send ``content`` now, or queue it; ``sent``, ``queued``, ``off`` or ``refused``.

    Never raises: every problem is logged.
    """
    try:
        try:
            url = read_url(webhook_file)
        except NotifyError as exc:
            log(f"notification: {exc}")
            return "refused"
        if url is None:
            return "off"
        try:
            post(url, content)
        except NotifyError as exc:
            path = enqueue(outbox, content, log)
            log(f"notification: not delivered: {exc}; queued as {path}, retried at the next boot")
            return "queued"
        log("notification: sent")
        return "sent"
    except Exception as exc:  # the boot must go on whatever happens here
        log(f"notification: failed unexpectedly: {exc!r}")
        return "error"
