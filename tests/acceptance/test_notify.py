"""The webhook: a root-only URL file, a POST of {"content": ...}, a queue when it fails."""

from __future__ import annotations

import logging
import os
import time

import pytest

from gpubox import notify


def _url_file(tmp_path, url, mode=0o600):
    path = tmp_path / "webhook-url"
    path.write_text(url + "\n")
    os.chmod(path, mode)
    return str(path)


def test_a_message_is_posted_as_discord_json(tmp_path, hook):
    status = notify.deliver("node0 failed", _url_file(tmp_path, hook.url), str(tmp_path / "out"))
    assert status == "sent" and hook.bodies == [{"content": "node0 failed"}]
    assert notify.queued(str(tmp_path / "out")) == []


def test_no_file_means_no_notification(tmp_path):
    assert notify.deliver("x", str(tmp_path / "absent"), str(tmp_path / "out")) == "off"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_file_others_can_read_is_refused(tmp_path, hook, mode, caplog):
    status = notify.deliver("x", _url_file(tmp_path, hook.url, mode), str(tmp_path / "o"))
    assert status == "refused" and hook.bodies == []
    (error,) = caplog.records
    assert error.levelno == logging.ERROR
    assert f"mode {mode:03o}" in error.getMessage() and "chmod 600" in error.getMessage()


def test_a_failed_delivery_is_queued_and_sent_later_in_order(tmp_path, hook, caplog):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.status = 500
    assert notify.deliver("first", url_file, outbox) == "queued"
    assert notify.deliver("second", url_file, outbox) == "queued"
    first = caplog.records[0]
    assert first.levelno == logging.WARNING
    assert "HTTP 500" in first.getMessage() and "retried at the next boot" in first.getMessage()
    queued = notify.queued(outbox)
    assert len(queued) == 2 and oct(os.stat(outbox).st_mode & 0o777) == "0o700"
    assert "api/webhooks" not in queued[0].read_text()  # the secret URL is never queued
    hook.status = 200
    assert notify.flush(url_file, outbox) == (2, 0)
    assert [b["content"] for b in hook.bodies[-2:]] == ["first", "second"]


def test_an_unreachable_webhook_never_raises(tmp_path, caplog):
    url_file = _url_file(tmp_path, "http://127.0.0.1:9/unreachable")
    assert notify.deliver("x", url_file, str(tmp_path / "out")) == "queued"
    assert "could not be reached" in caplog.records[0].getMessage()
    assert notify.flush(url_file, str(tmp_path / "out")) == (0, 1)


def test_long_messages_are_cut_to_discords_limit(tmp_path, hook):
    notify.deliver("x" * 5000, _url_file(tmp_path, hook.url), str(tmp_path / "out"))
    assert len(hook.bodies[0]["content"]) == notify.MAX_CONTENT


# ---- what the service refuses for good, and when it asks to wait -----------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413])
def test_a_message_refused_for_good_is_dropped_not_queued(tmp_path, hook, caplog, status):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.status = status
    assert notify.deliver("bad", url_file, outbox) == "dropped"
    assert notify.queued(outbox) == []
    (warning,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"HTTP {status}" in warning.getMessage() and "dropped" in warning.getMessage()


def test_a_queued_message_refused_for_good_does_not_block_the_later_ones(tmp_path, hook, caplog):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.status = 503
    for content in ("first", "second", "third"):
        assert notify.deliver(content, url_file, outbox) == "queued"
    hook.answers = [(200, {}), (400, {}), (200, {})]  # the service now refuses "second" for good
    assert notify.flush(url_file, outbox) == (2, 0)
    assert [b["content"] for b in hook.bodies[-3:]] == ["first", "second", "third"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and "HTTP 400" in dropped[0]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_a_message_the_service_may_take_later_stays_queued(tmp_path, hook, status):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.status = status
    assert notify.deliver("later", url_file, outbox) == "queued"
    assert len(notify.queued(outbox)) == 1


def test_a_short_retry_after_is_waited_for(tmp_path, hook):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.answers = [(429, {"Retry-After": "1"})]
    assert notify.deliver("soon", url_file, outbox) == "sent"
    assert [b["content"] for b in hook.bodies] == ["soon", "soon"]
    assert hook.times[1] - hook.times[0] >= 1.0
    assert notify.queued(outbox) == []


def test_a_long_retry_after_is_honoured_across_runs(tmp_path, hook, caplog):
    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.answers = [(429, {"Retry-After": "3600"})]
    started = time.monotonic()
    assert notify.deliver("rate limited", url_file, outbox) == "queued"
    assert time.monotonic() - started < 5  # never waits an hour
    assert "3600 s" in caplog.text
    # The next run within the hour does not post: it waits for the time the service named.
    assert notify.flush(url_file, outbox) == (0, 1)
    assert len(hook.bodies) == 1 and "until" in caplog.text
    assert notify.deliver("another", url_file, outbox) == "queued"
    assert len(hook.bodies) == 1 and len(notify.queued(outbox)) == 2


def test_retry_after_as_an_http_date(tmp_path, hook):
    from email.utils import formatdate

    url_file, outbox = _url_file(tmp_path, hook.url), str(tmp_path / "outbox")
    hook.answers = [(503, {"Retry-After": formatdate(time.time() + 7200, usegmt=True)})]
    assert notify.deliver("x", url_file, outbox) == "queued"
    assert notify.flush(url_file, outbox) == (0, 1)
    assert len(hook.bodies) == 1
