"""Boot records: complete or absent, whatever happens while one is written, replaced or pruned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from gpubox import records


def _results(n=42, failed=0):
    return {"counts": {"passed": n - failed, "failed": failed}, "checks": []}


def test_a_committed_record_is_listed_with_its_files(tmp_path, write_record, boot_ids):
    rec = write_record(tmp_path, boot_ids[0], _results(), 1)
    assert rec.path == tmp_path / boot_ids[0]
    assert sorted(p.name for p in rec.path.iterdir()) == [
        "junit.xml",
        "logs",
        "record.json",
        "results.json",
    ]
    (listed,) = records.list_records(tmp_path)
    assert listed.boot_id == boot_ids[0] and listed.meta["schema"] == records.SCHEMA
    assert listed.results["counts"] == {"passed": 42, "failed": 0}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_records_are_listed_oldest_first(tmp_path, write_record, boot_ids):
    for n, boot in reversed(list(enumerate(boot_ids[:5], 1))):
        write_record(tmp_path, boot, _results(), n)
    assert [r.boot_id for r in records.list_records(tmp_path)] == boot_ids[:5]


def test_the_boot_sequence_orders_records_even_when_the_clock_jumped(tmp_path, boot_ids):
    for seq, started in ((1, "2025-11-26T07:00:00+00:00"), (2, "2000-01-01T00:00:05+00:00")):
        draft = records.Draft(tmp_path, boot_ids[seq])
        draft.commit({"host": "node0", "seq": seq, "started": started, "counts": {}})
    assert [r.boot_id for r in records.list_records(tmp_path)] == boot_ids[1:3]


def test_readers_skip_a_draft_and_a_half_written_record(tmp_path, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], _results(), 1)
    draft = records.Draft(tmp_path, boot_ids[1])
    (draft.path / "record.json").write_text('{"schema": "gpubox.rec')  # cut short
    broken = tmp_path / boot_ids[2]  # not ours: a folder without a readable record
    broken.mkdir()
    (broken / "record.json").write_text("{")
    assert [r.boot_id for r in records.list_records(tmp_path)] == [boot_ids[0]]
    assert records.clean(tmp_path) == [draft.path.name]
    assert not draft.path.exists()


def test_a_second_run_in_the_same_boot_replaces_its_record(tmp_path, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], _results(failed=5), 1)
    write_record(tmp_path, boot_ids[0], _results(), 1)
    (rec,) = records.list_records(tmp_path)
    assert rec.meta["counts"] == {"passed": 42, "failed": 0}
    assert [p.name for p in tmp_path.iterdir()] == [boot_ids[0]]  # the old one is gone


def test_replace_without_rename_exchange_and_interrupted(
    tmp_path, write_record, boot_ids, monkeypatch
):
    monkeypatch.setattr(records, "_exchange", lambda a, b: False)
    write_record(tmp_path, boot_ids[0], _results(failed=5), 1)
    write_record(tmp_path, boot_ids[0], _results(), 1)
    (rec,) = records.list_records(tmp_path)
    assert rec.meta["counts"]["failed"] == 0
    # Interrupted between the two renames: the old record is aside, the new one not yet in place.
    aside = tmp_path / f".old-replace-{boot_ids[0]}-4242"
    os.rename(tmp_path / boot_ids[0], aside)
    (rec,) = records.list_records(tmp_path)
    assert rec.path == aside and rec.meta["counts"]["failed"] == 0
    records.clean(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [boot_ids[0]]


def test_prune_keeps_the_newest(tmp_path, write_record, boot_ids):
    for n, boot in enumerate(boot_ids[:6], 1):
        write_record(tmp_path, boot, _results(), n)
    assert records.prune(tmp_path, 4) == boot_ids[:2]
    assert [r.boot_id for r in records.list_records(tmp_path)] == boot_ids[2:6]
    assert records.prune(tmp_path, 4) == []


def test_a_pruned_record_moved_aside_is_not_listed(tmp_path, write_record, boot_ids):
    write_record(tmp_path, boot_ids[0], _results(), 1)
    write_record(tmp_path, boot_ids[1], _results(), 2)
    os.rename(tmp_path / boot_ids[0], tmp_path / f".old-prune-{boot_ids[0]}")  # killed mid-prune
    assert [r.boot_id for r in records.list_records(tmp_path)] == [boot_ids[1]]
    records.clean(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [boot_ids[1]]


WRITER = """
import json, sys
from gpubox import records
draft = records.Draft(sys.argv[1], sys.argv[2])
draft.results_json.write_text(json.dumps({"counts": {"passed": 1}, "checks": []}))
draft.commit({"host": "node0", "seq": 9, "started": "2025-11-26T09:00:00+00:00", "counts": {}})
"""


def test_a_writer_killed_mid_write_leaves_earlier_records_readable(
    tmp_path, write_record, boot_ids
):
    before = [write_record(tmp_path, b, _results(), n) for n, b in enumerate(boot_ids[:3], 1)]
    snapshot = {r.boot_id: (r.path / "record.json").read_text() for r in before}
    # Once for a new boot, once replacing the record of the last boot.
    for boot in (boot_ids[3], boot_ids[2]):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), boot],
            env={**os.environ, records.PAUSE_ENV: "60"},
            stderr=subprocess.PIPE,
            text=True,
        )
        line = proc.stderr.readline()
        assert "half-way through" in line, line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        drafts = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
        assert len(drafts) == 1
        half = (drafts[0] / "record.json").read_text()
        assert half and not half.endswith("}\n")  # really killed half-way through the file
        listed = records.list_records(tmp_path)
        assert [r.boot_id for r in listed] == boot_ids[:3]
        for r in listed:
            assert (r.path / "record.json").read_text() == snapshot[r.boot_id]
            assert r.results["counts"] == {"passed": 42, "failed": 0}
        records.clean(tmp_path)
    # The next writer goes through.
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), boot_ids[3]], check=True)
    assert time.monotonic() - start < 30
    assert [r.boot_id for r in records.list_records(tmp_path)][-1] == boot_ids[3]
    assert json.loads((tmp_path / boot_ids[3] / "record.json").read_text())["seq"] == 9
