"""The webhook: a root-only URL file, a POST of {"content": ...}, a queue when it fails."""

from __future__ import annotations

import os

import pytest

from gpubox import notify


def _url_file(tmp_path, url, mode=0o600):
    path = tmp_path / "webhook-url"
    path.write_text(url + "\n")
    os.chmod(path, mode)
    return str(path)


def test_a_message_is_posted_as_discord_json(tmp_path, hook):
    logs = []
    status = notify.deliver(
        "node0 failed", _url_file(tmp_path, hook.url), str(tmp_path / "out"), logs.append
    )
    assert status == "sent" and hook.bodies == [{"content": "node0 failed"}]
    assert notify.queued(str(tmp_path / "out")) == []


def test_no_file_means_no_notification(tmp_path):
    assert notify.deliver("x", str(tmp_path / "absent"), str(tmp_path / "out"), print) == "off"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_file_others_can_read_is_refused(tmp_path, hook, mode):
    logs = []
    status = notify.deliver(
        "x", _url_file(tmp_path, hook.url, mode), str(tmp_path / "o"), logs.append
    )
    assert status == "refused" and hook.bodies == []
    assert f"mode {mode:03o}" in logs[0] and "chmod 600" in logs[0]


def test_a_failed_delivery_is_queued_and_sent_later_in_order(tmp_path, hook):
    url_file, outbox, logs = _url_file(tmp_path, hook.url), str(tmp_path / "outbox"), []
    hook.status = 500
    assert notify.deliver("first", url_file, outbox, logs.append) == "queued"
    assert notify.deliver("second", url_file, outbox, logs.append) == "queued"
    assert "HTTP 500" in logs[0] and "retried at the next boot" in logs[0]
    queued = notify.queued(outbox)
    assert len(queued) == 2 and oct(os.stat(outbox).st_mode & 0o777) == "0o700"
    assert "api/webhooks" not in queued[0].read_text()  # the secret URL is never queued
    hook.status = 200
    assert notify.flush(url_file, outbox, logs.append) == (2, 0)
    assert [b["content"] for b in hook.bodies[-2:]] == ["first", "second"]


def test_an_unreachable_webhook_never_raises(tmp_path):
    url_file = _url_file(tmp_path, "http://127.0.0.1:9/unreachable")
    logs = []
    assert notify.deliver("x", url_file, str(tmp_path / "out"), logs.append) == "queued"
    assert "could not be reached" in logs[0]
    assert notify.flush(url_file, str(tmp_path / "out"), logs.append) == (0, 1)


def test_long_messages_are_cut_to_discords_limit(tmp_path, hook):
    notify.deliver("x" * 5000, _url_file(tmp_path, hook.url), str(tmp_path / "out"), print)
    assert len(hook.bodies[0]["content"]) == notify.MAX_CONTENT
