"""The boot-time acceptance unit on the deployed simulated node: a record per boot, history that
names what changed, a report checked in headless Chromium, a webhook, metrics, and records that
survive a run killed mid-write.

Every test leaves the node as it found it: healthy scenario, clock unit enabled, lock applied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from gpubox.sim import target
from gpubox.sim.testing import BIN, HEALTHY, ROOT, deploy, ssh
from tests import chromium

pytestmark = pytest.mark.sim

GPUBOX = "/opt/gpubox/venv/bin/gpubox"
UNIT = "gpubox-acceptance.service"
RUNS = "/var/lib/gpubox/runs"
GPUS = ("gpu0", "gpu1", "gpu2", "gpu3")


def boot_id(node) -> str:
    return ssh(node, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def wait_for_acceptance(node, timeout=180) -> str:
    """The unit's final state at this boot: ``active`` (passed) or ``failed``."""
    deadline = time.monotonic() + timeout
    while True:
        state = ssh(node, f"systemctl is-active {UNIT}", check=False).stdout.strip()
        if state in ("active", "failed"):
            return state
        if time.monotonic() > deadline:
            journal = ssh(node, f"journalctl -b -u {UNIT} --no-pager", check=False).stdout
            raise AssertionError(f"{UNIT} still {state!r} after {timeout} s:\n{journal[-3000:]}")
        time.sleep(0.5)


def reboot(node) -> tuple[str, str]:
    """Reboot, wait for the acceptance run; (this boot's id, the unit's state)."""
    target.reboot(node.name)
    return boot_id(node), wait_for_acceptance(node)


def history(node, full=False) -> dict:
    return json.loads(ssh(node, f"{GPUBOX} history --json" + (" --full" if full else "")).stdout)


def boot_entry(doc: dict, boot: str) -> dict:
    (entry,) = [b for b in doc["boots"] if b["boot_id"] == boot]
    return entry


def texts(entry: dict) -> list[str]:
    return [c["text"] for c in entry["changes"]]


def restore(node) -> None:
    """Healthy scenario, clock unit enabled, and a boot that applies the lock."""
    target.set_scenario(node.name, HEALTHY)
    ssh(node, "systemctl enable gpubox-clocks.service")
    reboot(node)


def journal(node, priority: str) -> str:
    """This boot's journal of the acceptance unit, at ``priority`` and above."""
    return ssh(node, f"journalctl -b -u {UNIT} -p {priority} --no-pager -o cat").stdout


def gpubox_here(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "gpubox"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


# ---- the unit ------------------------------------------------------------------------------------


def test_the_deploy_enables_the_unit_after_the_clock_lock_without_holding_up_the_boot(node):
    assert ssh(node, f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    show = ssh(node, f"systemctl show -p After -p Before -p Wants -p Type {UNIT}").stdout
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert "gpubox-clocks.service" in props["After"].split()
    assert "gpubox-clocks.service" not in props["Wants"].split()  # a disabled lock stays off
    assert props["Type"] == "oneshot"
    assert props["Before"].split() == ["shutdown.target"]  # no target waits for it
    waits = ssh(node, "systemctl show -p After --value multi-user.target").stdout.split()
    assert UNIT not in waits
    unit = ssh(node, f"systemctl cat {UNIT}").stdout
    assert f"ExecStart={GPUBOX} accept --spec /etc/gpubox/spec.json" in unit
    assert "TimeoutStartSec=420" in unit


def test_the_unit_is_hardened_without_hiding_the_gpus(node):
    show = ssh(
        node,
        f"systemctl show -p ProtectSystem -p ReadWritePaths -p PrivateTmp -p NoNewPrivileges "
        f"-p PrivateDevices {UNIT}",
    ).stdout
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["ProtectSystem"] == "strict"
    assert props["PrivateTmp"] == props["NoNewPrivileges"] == "yes"
    assert props["PrivateDevices"] == "no"  # NVML opens /dev/nvidia*
    assert "/var/lib/gpubox" in props["ReadWritePaths"]  # the records and the outbox


# ---- reboots: records, history, report -----------------------------------------------------------


@pytest.fixture(scope="module")
def boots(node, deploy_env, tmp_path_factory):
    """Three healthy reboots, one with the clock unit disabled, one with gpu0's link at x4; the
    node's history (on the node and over SSH) and the report, taken right after the last."""
    out = tmp_path_factory.mktemp("acceptance")
    steps: dict = {"healthy": []}
    started = time.monotonic()
    try:
        for _ in range(3):
            steps["healthy"].append(reboot(node))
        steps["journal_healthy"] = {p: journal(node, p) for p in ("warning", "info")}
        ssh(node, "systemctl disable gpubox-clocks.service")
        steps["no_lock"] = reboot(node)
        ssh(node, "systemctl enable gpubox-clocks.service")
        target.set_scenario(node.name, "fault-gpu0-x4")
        steps["fault"] = reboot(node)
        steps["journal_fault"] = journal(node, "warning")
        steps["seconds"] = time.monotonic() - started
        steps["doc"] = history(node, full=True)
        steps["text_on_node"] = ssh(node, f"{GPUBOX} history").stdout
        steps["text_over_ssh"] = gpubox_here(
            "history", "--inventory", "inventories/sim.py", env=deploy_env
        )
        page = out / "report.html"
        steps["report_cmd"] = gpubox_here(
            "report", "--inventory", "inventories/sim.py", "--out", str(page), env=deploy_env
        )
        steps["page"] = page
        steps["out"] = out
    finally:
        restore(node)
    return steps


def test_three_reboots_give_three_records_with_the_lock_and_the_quick_tier_passing(node, boots):
    ids = [b for b, _ in boots["healthy"]]
    assert len(set(ids)) == 3  # each boot its own id, its own record
    assert [state for _, state in boots["healthy"]] == ["active"] * 3
    for n, boot in enumerate(ids):
        entry = boot_entry(boots["doc"], boot)
        assert entry["ok"] and entry["counts"] == {"passed": 54}, entry
        assert entry["tiers"] == ["quick"]
        snap = entry["results"]["hosts"][node.name]["snapshot"]
        assert snap["boot_id"] == boot
        assert [g["clocks"]["sm_mhz"] for g in snap["gpus"]] == [1140] * 4  # re-applied
        if n:
            assert entry["changes"] == []
        files = ssh(node, f"cd {RUNS}/{boot} && ls && ls logs").stdout.split()
        assert files == ["junit.xml", "logs", "record.json", "results.json", "pytest.log"]
    assert 'tests="54"' in ssh(node, f"cat {RUNS}/{ids[0]}/junit.xml").stdout


def test_journalctl_p_warning_finds_a_failed_boot_and_only_that(node, boots):
    """Under the hardened unit the checks ran (54 passed at the healthy boots above); gpubox's
    lines carry their priority, so `-p warning` shows a failed boot and nothing of a good one."""
    fault_boot = boots["fault"][0]
    assert f"gpubox accept: boot {fault_boot}: FAIL (" in boots["journal_fault"]
    healthy = boots["journal_healthy"]
    assert "gpubox accept:" not in healthy["warning"], healthy["warning"]
    assert ": PASS (54 passed); record" in healthy["info"]


def test_a_boot_without_the_clock_unit_fails_the_clock_checks_and_history_says_so(node, boots):
    boot, state = boots["no_lock"]
    assert state == "failed"
    entry = boot_entry(boots["doc"], boot)
    assert set(entry["failed"]) == {f"test_clock_unit[{node.name}]"} | {
        f"test_clock_locked[{g}]" for g in GPUS
    }
    assert texts(entry)[0] == (
        "clock lock missing: gpubox-clocks.service not enabled and not active; "
        "gpu0, gpu1, gpu2, gpu3 at SM 210 MHz [GpuIdle]"
    )
    assert f"{boot[:8]}" in boots["text_on_node"]
    assert "vs previous: clock lock missing" in boots["text_on_node"]


def test_a_fault_switched_in_between_boots_is_a_diff_on_the_next_boot(node, boots):
    boot, state = boots["fault"]
    assert state == "failed"
    entry = boot_entry(boots["doc"], boot)
    assert entry["failed"] == ["test_pcie[gpu0]"]
    assert texts(entry) == [
        "gpu0 link x16 -> x4",
        "clock lock back",
        "now failing: test_pcie[gpu0]",
    ]
    assert "vs previous: gpu0 link x16 -> x4" in boots["text_on_node"]


def test_history_from_the_workstation_is_the_nodes(boots):
    proc = boots["text_over_ssh"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == boots["text_on_node"]


def test_the_report_in_headless_chromium(node, boots):
    if chromium.find() is None:
        pytest.skip("no chromium: `apt-get install chromium`")
    proc = boots["report_cmd"]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"report: {boots['page']}\n"
    png = chromium.screenshot(boots["page"], boots["out"] / "report.png", size="1280,2000")
    if os.environ.get("GPUBOX_TEST_ARTIFACTS"):  # to look at it
        shutil.copy(png, os.path.join(os.environ["GPUBOX_TEST_ARTIFACTS"], "report.png"))
    assert png.stat().st_size > 50_000
    dom = chromium.parse(chromium.dump_dom(boots["page"], measure_images=True))
    fault_boot = boots["fault"][0]
    summary = dom.by_id("summary")
    assert summary.attrs["data-ok"] == "false" and summary.attrs["data-boot-id"] == fault_boot
    assert summary.attrs["data-host"] == node.name
    rows = dom.by_id("expected-vs-found").find_all("tr", cls="check")
    assert len(rows) == 54
    assert rows[0].attrs["data-check"] == "test_pcie[gpu0]"
    assert rows[0].find_all("td", cls="found")[0].text() == "gen: 3, width: 4"
    heat = dom.by_id("p2p-heatmap")
    assert heat.attrs["data-kind"] == "status"  # the bandwidth tier does not run at boot
    assert int(dom.by_id("p2p-heatmap-img").attrs["data-natural-width"]) > 300
    assert all(int(i.attrs["data-natural-width"]) > 0 for i in dom.find_all("img"))
    history_rows = {
        r.attrs["data-boot-id"]: r.text() for r in dom.by_id("boot-history").find_all("tr")[1:]
    }
    assert "clock lock missing" in history_rows[boots["no_lock"][0]]
    assert "gpu0 link x16 -> x4" in history_rows[fault_boot]
    for boot, _ in boots["healthy"]:
        assert "PASS" in history_rows[boot]


# ---- the bandwidth tier --------------------------------------------------------------------------


def test_with_the_bandwidth_tier_the_record_keeps_the_raw_logs_and_history_the_figures(
    node, deploy_env, tmp_path
):
    """``gpubox accept --bandwidth`` (what the unit runs with ``acceptance.bandwidth: true``);
    the simulated node's benchmark tools replay recorded output."""
    try:
        ssh(node, f"{GPUBOX} accept --bandwidth --no-notify")  # replaces this boot's record
        reboot(node)  # the unit: quick tier only
        # switch 1's uplink at x4: NVML cannot see it, the PCIe path walk and the benchmarks can
        target.set_scenario(node.name, "fault-bw-gpu0-x4-slot")
        slow = ssh(node, f"{GPUBOX} accept --bandwidth --no-notify", check=False)
    finally:
        target.set_scenario(node.name, HEALTHY)
    assert slow.returncode == 1
    this_boot = boot_id(node)
    entry = boot_entry(history(node), this_boot)
    assert entry["tiers"] == ["quick", "bandwidth"] and entry["measured"]
    assert set(entry["failed"]) == {
        "test_h2d[gpu0]",
        "test_d2h[gpu0]",
        "test_h2d[gpu1]",
        "test_d2h[gpu1]",
        "test_pcie_path[gpu0]",
        "test_pcie_path[gpu1]",
    }
    changed = texts(entry)
    assert any(t.startswith("h2d[gpu0] 13.1 -> 3.") and t.endswith("%)") for t in changed), changed
    logs = ssh(node, f"ls {RUNS}/{this_boot}/logs/bench").stdout.split()
    assert "bandwidthTest-gpu0.log" in logs and "p2pBandwidthLatencyTest.log" in logs
    page = tmp_path / "report.html"
    proc = gpubox_here(
        "report", "--inventory", "inventories/sim.py", "--out", str(page), env=deploy_env
    )
    assert proc.returncode == 0, proc.stderr
    dom = chromium.parse(page.read_text())
    assert dom.by_id("p2p-heatmap").attrs["data-kind"] == "bandwidth"
    slow_row = dom.by_id("host-bandwidth-table").find_all("tr", data_measurement="h2d[gpu0]")[0]
    assert "failed" in slow_row.classes
    assert dom.by_id("allreduce-table").find_all("tr", cls="passed")


# ---- a run killed mid-write ----------------------------------------------------------------------


def test_killing_the_run_mid_write_leaves_every_earlier_record_readable(node):
    this_boot = boot_id(node)
    if this_boot not in [b["boot_id"] for b in history(node)["boots"]]:
        ssh(node, f"{GPUBOX} accept --no-notify")  # the killed run will replace this one
    before = history(node)["boots"]
    saved = {
        b["boot_id"]: ssh(node, f"cat {RUNS}/{b['boot_id']}/record.json").stdout for b in before
    }
    unit = "gpubox-accept-killed"
    try:
        # systemd-run: the run and anything it started live in one cgroup, killed as one.
        ssh(
            node,
            f"systemd-run --unit {unit} -E GPUBOX_TEST_RECORD_PAUSE=120 {GPUBOX} accept --no-notify",
        )
        deadline = time.monotonic() + 120
        while ssh(node, f"test -s {RUNS}/.tmp-*/record.json", check=False).returncode != 0:
            assert time.monotonic() < deadline, "the run never started writing its record"
            time.sleep(0.3)
        ssh(node, f"systemctl kill -s KILL {unit}")
        time.sleep(1)
        half = ssh(node, f"cat {RUNS}/.tmp-*/record.json").stdout
        with pytest.raises(ValueError):
            json.loads(half)  # really cut off half-way
        after = history(node, full=True)["boots"]
        assert [b["boot_id"] for b in after] == [b["boot_id"] for b in before]
        for b in after:
            assert ssh(node, f"cat {RUNS}/{b['boot_id']}/record.json").stdout == saved[b["boot_id"]]
            assert b["results"]["schema"] == "gpubox.results/1"
        # The next run cleans up and replaces this boot's record.
        rerun = ssh(node, f"{GPUBOX} accept --no-notify")
        assert ".tmp-" in rerun.stderr and "left by an interrupted run" in rerun.stderr
        assert ssh(node, f"ls -a {RUNS} | grep -c '^.tmp-'", check=False).stdout.strip() == "0"
        assert [b["boot_id"] for b in history(node)["boots"]] == [b["boot_id"] for b in before]
    finally:
        ssh(node, f"systemctl reset-failed {unit}", check=False)
        ssh(node, f"systemctl stop {unit}", check=False)


# ---- the webhook ---------------------------------------------------------------------------------


class Receiver:
    """A webhook on the host's 127.0.0.1 (the nspawn node shares the host's network)."""

    def __init__(self, port: int = 0):
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_failing_boot_is_posted_and_an_undelivered_post_waits_for_the_next_boot(node):
    receiver = Receiver()
    url = f"http://127.0.0.1:{receiver.port}/api/webhooks/42/token"
    outbox = "/var/lib/gpubox/outbox"
    try:
        ssh(node, f"umask 077 && echo '{url}' > /etc/gpubox/webhook-url")
        target.set_scenario(node.name, "fault-gpu0-x4")
        first, state = reboot(node)
        assert state == "failed"
        (posted,) = receiver.bodies
        assert f"{node.name} failed its boot acceptance" in posted["content"]
        assert f"boot {first[:8]}" in posted["content"]
        assert "test_pcie[gpu0]" in posted["content"] and "gpu0 link x16 -> x4" in posted["content"]
        receiver.stop()  # the webhook is down for the next boot
        second, state = reboot(node)
        assert state == "failed"  # the boot went on
        journal = ssh(node, f"journalctl -b -u {UNIT} --no-pager -o cat").stdout
        assert "could not be reached" in journal and "retried at the next boot" in journal
        assert url not in journal
        queued = ssh(node, f"ls {outbox}").stdout.split()
        assert len(queued) == 1
        receiver = Receiver(receiver.port)  # back up
        target.set_scenario(node.name, HEALTHY)
        third, state = reboot(node)
        assert state == "active"
        (delivered,) = receiver.bodies  # the queued message; nothing for the passing boot
        assert f"boot {second[:8]}" in delivered["content"]
        assert ssh(node, f"ls {outbox}").stdout.split() == []
        # A URL file others can read is refused, and said so.
        ssh(node, "chmod 644 /etc/gpubox/webhook-url")
        target.set_scenario(node.name, "fault-gpu0-x4")
        refused = ssh(node, f"{GPUBOX} accept", check=False)
        assert refused.returncode == 1
        assert "readable or writable by group/others (mode 644)" in refused.stderr
        assert len(receiver.bodies) == 1
    finally:
        receiver.stop()
        ssh(node, f"rm -rf /etc/gpubox/webhook-url {outbox}", check=False)
        restore(node)


# ---- metrics -------------------------------------------------------------------------------------


def test_metrics_for_node_exporter_only_when_asked(node):
    prom = "/var/lib/prometheus/node-exporter"
    assert ssh(node, f"test -e {prom}", check=False).returncode != 0  # off by default
    try:
        ssh(node, f"{GPUBOX} accept --no-notify --metrics-dir {prom}")
        assert ssh(node, f"ls {prom}").stdout.split() == ["gpubox.prom"]
        text = ssh(node, f"cat {prom}/gpubox.prom").stdout
        assert "gpubox_acceptance_success 1" in text
        assert f'gpubox_acceptance_boot_info{{boot_id="{boot_id(node)}",tiers="quick"}} 1' in text
        assert 'gpubox_acceptance_checks{outcome="passed"} 54' in text
        assert 'gpubox_gpu_sm_clock_mhz{gpu="gpu3",bus_id="0000:10:00.0"} 1140' in text
    finally:
        ssh(node, "rm -rf /var/lib/prometheus", check=False)


# ---- acceptance.enabled: false -------------------------------------------------------------------


def test_turning_acceptance_off_removes_the_unit_and_on_again_installs_it_unstarted(
    node, deploy_env, tmp_path
):
    inventory = tmp_path / "no_acceptance.py"
    inventory.write_text(
        "import runpy\n"
        f"_sim = runpy.run_path({str(ROOT / 'inventories/sim.py')!r})['sim_nodes']\n"
        "sim_nodes = [(n, {**d, 'acceptance': {'enabled': False}}) for n, d in _sim]\n"
    )
    try:
        off = subprocess.run(
            [str(BIN / "pyinfra"), "-y", str(inventory), "deploy.py"],
            cwd=ROOT,
            env=deploy_env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert off.returncode == 0, off.stdout[-3000:]
        assert ssh(node, f"test -e /etc/systemd/system/{UNIT}", check=False).returncode != 0
        assert ssh(node, f"systemctl is-enabled {UNIT}", check=False).stdout.strip() in (
            "",
            "not-found",
        )
        assert ssh(node, f"ls {RUNS}").stdout.split()  # the records stay
    finally:
        on = deploy(deploy_env)
        assert on.returncode == 0, on.stdout[-3000:]
    assert ssh(node, f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert ssh(node, f"systemctl is-active {UNIT}", check=False).stdout.strip() == "inactive"
