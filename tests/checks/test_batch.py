"""The quick tier's one round trip: the batch script runs every command once and its output
parses back into the results each command gives on its own."""

from __future__ import annotations

import json
import subprocess
import sys

import gpubox.checks
from gpubox.checks import PACKAGE_QUERY, batch_script, read_file_command


class Backend:
    def decode(self, data: bytes) -> str:
        return data.decode()


def run_batch(tmp_path, probe, commands, manifest):
    script, parse = batch_script(probe, commands, sys.executable, str(manifest))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return parse(out, Backend())


def test_each_command_gets_its_own_status_stdout_and_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(gpubox.checks, "AHEAD_LIMIT_S", 1)
    probe = "echo '{\"gpus\": []}'; echo 'a warning' >&2; exit 3"
    missing = read_file_command(str(tmp_path / "nothing"))
    commands = ["printf 'no newline'", "printf ''", missing, "sleep 5"]
    got = run_batch(tmp_path, probe, commands, tmp_path / "no-manifest.json")
    assert (got[probe].rc, got[probe].stdout, got[probe].stderr) == (
        3,
        '{"gpus": []}\n',
        "a warning\n",
    )
    assert got["printf 'no newline'"].stdout == "no newline"
    assert got["printf ''"].stdout == "" and got["printf ''"].rc == 0
    assert got[missing].rc == 44
    assert "sleep 5" not in got  # stopped by its limit: its check runs it again itself
    assert not any(c.startswith("dpkg-query") for c in got)  # no manifest, no package query


def test_the_package_query_is_the_one_test_manifest_runs(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"packages": {"dpkg": {}, "coreutils": {}}}))
    got = run_batch(tmp_path, "true", [], manifest)
    query = PACKAGE_QUERY + "coreutils dpkg"
    assert query in got
    names = [line.split("\t")[0] for line in got[query].stdout.splitlines()]
    assert names == ["coreutils", "dpkg"]
