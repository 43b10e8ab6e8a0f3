"""Boot records built from real snapshots (the ``snap`` fixture of tests/conftest.py), judged by
:mod:`gpubox.judge` into a results document shaped as the checks plugin writes it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from gpubox import judge, records
from gpubox.spec import NodeSpec

ROOT = Path(__file__).resolve().parents[2]
HOST = "node0"


def results_doc(spec: NodeSpec, snapshot: dict, unit_ok: bool = True, bench=None) -> dict:
    """A gpubox.results/1 document: every quick verdict as one check."""
    verdicts = judge.quick(spec, snapshot) + [judge.clock_unit(spec, unit_ok, unit_ok)]
    checks = []
    for v in verdicts:
        subject = spec.host if v.subject == "node" else v.subject
        outcome = {"pass": "passed", "warn": "passed", "fail": "failed", "skip": "skipped"}
        checks.append(
            {
                "id": f"checks/test_quick.py::test_{v.check}[{subject}]",
                "outcome": outcome[v.level],
                "message": v.message,
                "verdict": v.as_dict(),
            }
        )
    counts: dict[str, int] = {}
    for c in checks:
        counts[c["outcome"]] = counts.get(c["outcome"], 0) + 1
    host = {"snapshot": snapshot, "spec": spec.to_data()}
    if bench is not None:
        host["bench"] = bench
    return {
        "schema": "gpubox.results/1",
        "counts": counts,
        "exit_status": 1 if counts.get("failed") else 0,
        "hosts": {spec.host: host},
        "checks": checks,
    }


def write_record(runs_dir, boot: str, results: dict, n: int, baseline=None) -> records.Record:
    """Commit a record for ``boot`` as ``gpubox accept`` does (the n-th boot, in time order)."""
    draft = records.Draft(runs_dir, boot)
    draft.results_json.write_text(json.dumps(results))
    draft.junit_xml.write_text("<testsuites/>")
    (draft.logs / "pytest.log").write_text("...")
    failed = [c["id"].split("::")[-1] for c in results["checks"] if c["outcome"] == "failed"]
    return draft.commit(
        {
            "host": HOST,
            "seq": n,
            "started": f"2025-11-26T07:{n:02d}:00+00:00",
            "finished": f"2025-11-26T07:{n:02d}:05+00:00",
            "tiers": ["quick"],
            "exit_status": 1 if failed else 0,
            "ok": not failed,
            "counts": results["counts"],
            "failed": failed,
            "error": None,
            "baseline": baseline,
        }
    )


@pytest.fixture
def boot_ids():
    return [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(1, 30)]


@pytest.fixture(name="results_doc")
def _results_doc():
    return results_doc


@pytest.fixture(name="write_record")
def _write_record():
    return write_record


class Hook:
    """A webhook receiver on 127.0.0.1 that records every POST body (status settable)."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.status = 204
        # answers for the next requests, first first: (status, headers); then `status`
        self.answers: list[tuple[int, dict]] = []
        self.times: list[float] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                hook.times.append(time.monotonic())
                status, headers = hook.answers.pop(0) if hook.answers else (hook.status, {})
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/webhooks/1/x"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.stop()
