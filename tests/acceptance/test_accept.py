"""``gpubox accept`` end to end on this machine: the real checks against the simulated NVML
library, into a records folder; the webhook, the metrics and the retention.

The machine running the tests is not a deployed node (no clock unit, no install manifest), so
some checks fail here: that exercises the failure path (record, notification) as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from gpubox import records
from gpubox.sim import nvml, scenario

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def node_env(tmp_path, spec):
    """A spec file pointing at the simulated library, and an environment with the lock applied."""
    data = {"host": "node0", **spec.to_data()}
    data["software"]["nvml_library"] = str(nvml.library_path())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    resolved = scenario.resolve_to_file("pg199-quad-debian13", tmp_path / "scenario.json")
    env = nvml.environment(resolved, tmp_path / "state")
    subprocess.run(
        [sys.executable, "-m", "gpubox", "clocks", "lock", "--spec", str(spec_file)],
        env=env,
        capture_output=True,
        check=True,
    )
    return spec_file, env


def accept_argv(spec_file, runs, boot, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gpubox",
        "accept",
        "--spec",
        str(spec_file),
        "--checks",
        os.path.join(ROOT, "checks"),
        "--runs-dir",
        str(runs),
        "--boot-id",
        boot,
        *extra,
    ]


def accept(spec_file, env, runs, boot, *extra):
    return subprocess.run(
        accept_argv(spec_file, runs, boot, *extra),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_run_leaves_a_complete_record(tmp_path, node_env, boot_ids):
    spec_file, env = node_env
    runs = tmp_path / "runs"
    proc = accept(spec_file, env, runs, boot_ids[0], "--no-notify")
    (rec,) = records.list_records(runs)
    assert rec.boot_id == boot_ids[0] and rec.meta["host"] == "node0" and rec.meta["seq"] == 1
    results = rec.results
    assert results["schema"] == "gpubox.results/1"
    assert sum(results["counts"].values()) == 54 == sum(rec.meta["counts"].values())
    assert results["hosts"]["node0"]["snapshot"]["gpu_count"] == 4
    assert 'tests="54"' in (rec.path / "junit.xml").read_text()
    assert "-m quick" in (rec.path / "logs/pytest.log").read_text()
    assert rec.meta["ok"] == (proc.returncode == 0) == (not rec.meta["failed"])
    assert "test_clock_locked[gpu0]" not in rec.meta["failed"]  # the lock is on
    assert f"record {rec.path}" in proc.stderr


def test_failures_are_posted_metrics_written_old_records_pruned(tmp_path, node_env, boot_ids, hook):
    spec_file, env = node_env
    runs, prom = tmp_path / "runs", tmp_path / "prom"
    url = tmp_path / "webhook-url"
    url.write_text(hook.url)
    os.chmod(url, 0o600)
    for n in range(3):
        proc = accept(
            spec_file, env, runs, boot_ids[n], "--keep", "2", "--webhook-file", str(url),
            "--metrics-dir", str(prom),
        )  # fmt: skip
    assert [r.boot_id for r in records.list_records(runs)] == boot_ids[1:3]
    assert f"pruned the record of boot {boot_ids[0]}" in proc.stderr
    last = records.list_records(runs)[-1]
    if last.meta["failed"]:
        assert len(hook.bodies) == 3
        assert "node0 failed its boot acceptance" in hook.bodies[-1]["content"]
        assert last.meta["failed"][0] in hook.bodies[-1]["content"]
    else:
        assert hook.bodies == []
    text = (prom / "gpubox.prom").read_text()
    assert f'gpubox_acceptance_boot_info{{boot_id="{boot_ids[2]}",tiers="quick"}} 1' in text
    assert f"gpubox_acceptance_success {int(bool(last.meta['ok']))}" in text
    assert 'gpubox_gpu_pcie_link_width{gpu="gpu0",bus_id="0000:04:00.0"} 16' in text
    assert 'gpubox_check_passed{check="test_clock_locked[gpu0]"} 1' in text
    assert [p.name for p in prom.iterdir()] == ["gpubox.prom"]


def test_a_bad_spec_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gpubox", "accept", "--spec", str(tmp_path / "none.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "no node spec at" in proc.stderr and "deploy the node first" in proc.stderr


def test_a_gpu_lost_at_three_boots_in_a_row_escalates_in_the_webhook(
    tmp_path, spec, boot_ids, hook
):
    """The same GPU failing the same way at 3 consecutive boots: the third message says to stop
    rebooting (the first two do not), and the journal gets it as an error."""
    data = {"host": "node0", **spec.to_data()}
    data["software"]["nvml_library"] = str(nvml.library_path())
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    resolved = scenario.resolve_to_file("fault-gpu-lost", tmp_path / "scenario.json")
    env = nvml.environment(resolved, tmp_path / "state")
    url = tmp_path / "webhook-url"
    url.write_text(hook.url)
    os.chmod(url, 0o600)
    runs = tmp_path / "runs"
    for n in range(3):
        proc = accept(spec_file, env, runs, boot_ids[n], "--webhook-file", str(url))
    first, second, third = (b["content"] for b in hook.bodies)
    assert "hardware attention" not in first + second
    assert (
        "**gpu1 needs hardware attention, not another reboot: test_gpu_present[gpu1] failed at "
        "3 consecutive boots: " in third
    ), third
    assert "gpubox accept: gpu1 needs hardware attention" in proc.stderr
    # under systemd (stderr is the journal stream) the line carries journald's error priority
    journal = tmp_path / "journal"
    with open(journal, "w") as stream:
        st = os.fstat(stream.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        argv = accept_argv(spec_file, runs, boot_ids[3], "--webhook-file", str(url))
        subprocess.run(argv, env=env, stderr=stream, stdout=subprocess.DEVNULL, timeout=300)
    assert "<3>gpubox accept: gpu1 needs hardware attention" in journal.read_text()
