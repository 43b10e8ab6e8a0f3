"""``gpubox health``: the decision, the reason Slurm shows, and the command end to end against
the simulated NVML library and a stand-in ``scontrol`` that keeps one node's state in a file
(the real Slurm cluster is tests/integration/test_slurm.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gpubox import health, judge
from gpubox.commands import health_cmd
from gpubox.health import DRAIN, NONE, RESUME, NodeState, Problem, decide, reason
from gpubox.sim import nvml, scenario, sysfs

HOST = "node0"
GPU3_MISSING = Problem("test_gpu_present[gpu3]", "gpu3 (10:00.0): not found")
ADMIN = "replacing the PSU, back Monday"


# ---- the decision --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problems", "state", "why", "expected"),
    [
        ([], "IDLE", None, NONE),
        ([], "IDLE+DRAIN", "gpubox: test_xid[gpu0] XID 79", RESUME),
        ([], "DRAINED", "gpubox: nvml NVML unreachable", RESUME),
        ([], "IDLE+DRAIN", ADMIN, NONE),
        ([GPU3_MISSING], "IDLE", None, DRAIN),
        ([GPU3_MISSING], "MIXED", None, DRAIN),
        ([GPU3_MISSING], "IDLE+DRAIN", ADMIN, NONE),
        ([GPU3_MISSING], "ALLOCATED+DRAIN", "gpubox: test_xid[gpu0] XID 79", DRAIN),
    ],
    ids=[
        "healthy idle node is left idle",
        "healthy node drained by gpubox is resumed",
        "healthy node drained by gpubox (DRAINED) is resumed",
        "healthy node drained by an admin is left drained",
        "failing idle node is drained",
        "failing node with jobs is drained",
        "failing node drained by an admin keeps the admin's reason",
        "failing node drained by gpubox for another reason gets the new reason",
    ],
)
def test_decide(problems, state, why, expected):
    action = decide(problems, NodeState("n1", state, why))
    assert action.kind == expected, action
    if expected == DRAIN:
        assert action.reason.startswith("gpubox: test_gpu_present[gpu3] gpu3 (10:00.0)")


def test_same_reason_is_not_written_again():
    text = reason([GPU3_MISSING])
    assert decide([GPU3_MISSING], NodeState("n1", "IDLE+DRAIN", text)).kind == NONE


def test_a_reason_without_the_prefix_is_not_gpuboxs():
    # "gpubox" somewhere in an admin's reason does not make it gpubox's drain.
    node = NodeState("n1", "IDLE+DRAIN", "checking gpubox: failed test_xid")
    assert not node.drained_by_gpubox
    assert decide([], node).kind == NONE


@pytest.mark.parametrize(("problems", "expected"), [([], NONE), ([GPU3_MISSING], DRAIN)])
def test_a_stale_reason_on_a_resumed_node_does_not_count_as_a_drain(problems, expected):
    # Slurm keeps showing the last reason after `state=resume` (seen with 24.11).
    node = NodeState("n1", "IDLE", "gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found")
    assert not node.drained
    assert decide(problems, node).kind == expected


def test_down_node_without_drain_is_not_resumed():
    assert decide([], NodeState("n1", "DOWN", "Not responding")).kind == NONE


# ---- the reason ----------------------------------------------------------------------------


def test_reason_names_the_gpu_first_and_stays_short():
    many = [Problem("test_gpu_count", "NVML shows 3 GPUs, expected 4")] + [
        Problem(f"test_xid[gpu{i}]", f"gpu{i} (0{i}:00.0): XID 79 " + "x" * 300) for i in range(4)
    ]
    text = reason(many)
    assert text.startswith("gpubox: test_xid[gpu0] gpu0 (00:00.0): XID 79")
    assert text.endswith(" (+4 more)")
    assert len(text) <= health.MAX_REASON


def test_reason_lists_the_other_checks_when_they_fit():
    text = reason([Problem("test_gpu_count", "3 GPUs"), GPU3_MISSING])
    assert (
        text == "gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found (+1 more: test_gpu_count)"
    )


def test_reason_puts_notes_before_the_text_where_the_cut_cannot_take_them():
    long = Problem("test_gpu_present[gpu3]", "gpu3 (10:00.0): not found " + "x" * 300)
    text = reason([long], notes=["NEEDS HARDWARE ATTENTION (3 boots in a row)"])
    assert text.startswith(
        "gpubox: test_gpu_present[gpu3] NEEDS HARDWARE ATTENTION (3 boots in a row): gpu3 (10:00.0)"
    )
    assert len(text) == health.MAX_REASON


@pytest.mark.parametrize(
    ("escalated", "expected"),
    [
        ([], "gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found (+1 more: test_xid[gpu1])"),
        (
            [{"check": "test_xid[gpu1]", "boots": 4}],
            "gpubox: test_xid[gpu1] NEEDS HARDWARE ATTENTION (4 boots in a row): XID 79 "
            "(+1 more: test_gpu_present[gpu3])",
        ),
        (  # escalated at earlier boots, passing now: no note
            [{"check": "test_pcie[gpu0]", "boots": 3}],
            "gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found (+1 more: test_xid[gpu1])",
        ),
    ],
    ids=["none", "the-escalated-gpu-first", "only-what-fails-now"],
)
def test_escalation_leads_the_reason(escalated, expected):
    problems = [GPU3_MISSING, Problem("test_xid[gpu1]", "XID 79")]
    assert reason(*health.escalation_notes(problems, escalated)) == expected


def test_reason_needs_a_problem():
    with pytest.raises(ValueError):
        reason([])


def test_a_missing_gpu_from_a_real_snapshot(spec, snap):
    problems = health.from_verdicts(judge.quick(spec, snap("fault-gpu-missing")), HOST)
    text = reason(problems)
    assert text.startswith("gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found; NVML shows")
    assert "test_gpu_count" in text
    assert "node0" not in text  # the host is Slurm's node name already
    assert len(text) <= health.MAX_REASON


def test_problems_from_a_record_are_the_failed_checks():
    results = {
        "checks": [
            {"id": "checks/test_quick.py::test_pcie[gpu0]", "outcome": "passed", "message": "ok"},
            {
                "id": "checks/test_quick.py::test_pcie[gpu1]",
                "outcome": "failed",
                "message": "node0 gpu1 (05:00.0): PCIe link Gen3 x4, expected at least Gen3 x16: "
                "link trained at x4: reseat",
            },
        ]
    }
    assert health.from_results(results, HOST) == [
        Problem("test_pcie[gpu1]", "gpu1 (05:00.0): PCIe link Gen3 x4, expected at least Gen3 x16")
    ]


# ---- reading scontrol ----------------------------------------------------------------------

SCONTROL_SHOW = """\
NodeName=slu Arch=x86_64 CoresPerSocket=1
   CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=0.31
   State=IDLE+DRAIN ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A
   Partitions=gpu
   Reason=gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found [root@2026-12-08T01:02:03]
"""


def test_parse_node_reads_state_and_reason_without_the_stamp():
    node = health.parse_node(SCONTROL_SHOW, "slu")
    assert node == NodeState(
        "slu", "IDLE+DRAIN", "gpubox: test_gpu_present[gpu3] gpu3 (10:00.0): not found"
    )
    assert node.drained_by_gpubox


def test_parse_node_without_reason():
    text = "NodeName=slu Arch=x86_64\n   State=IDLE ThreadsPerCore=1\n"
    assert health.parse_node(text, "slu") == NodeState("slu", "IDLE", None)


def test_parse_node_without_state_says_what_it_got():
    with pytest.raises(ValueError, match="no State= in scontrol's answer for node slu"):
        health.parse_node("Node slu not found", "slu")


# ---- the command, end to end ---------------------------------------------------------------

STAND_IN = '''\
#!{python}
"""A stand-in scontrol for one node: its state in $STANDIN_SLURM/state.json, calls logged."""
import json, os, sys, time
folder = os.environ["STANDIN_SLURM"]
path = os.path.join(folder, "state.json")
node = json.load(open(path))
with open(os.path.join(folder, "calls"), "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(float(node.get("delay", 0)))
if sys.argv[1] == "show":
    print(f"NodeName={{sys.argv[3]}} Arch=x86_64\\n   State={{node['state']}} ThreadsPerCore=1")
    if node.get("reason"):
        print(f"   Reason={{node['reason']}} [root@2026-12-08T01:02:03]")
elif sys.argv[1] == "update":
    words = dict(w.split("=", 1) for w in sys.argv[2:])
    if words["state"] == "drain":
        node.update(state="IDLE+DRAIN", reason=words["reason"])
    elif words["state"] == "resume":
        node.update(state="IDLE", reason=None)
    json.dump(node, open(path, "w"))
'''


@pytest.fixture
def slurm(tmp_path):
    """A stand-in scontrol whose node starts ``IDLE``; ``slurm.node`` reads/writes its state."""
    folder = tmp_path / "slurm"
    folder.mkdir()
    program = folder / "scontrol"
    program.write_text(STAND_IN.format(python=sys.executable))
    program.chmod(0o755)

    class Slurm:
        scontrol = str(program)
        state_file = folder / "state.json"

        @property
        def node(self) -> dict:
            return json.loads(self.state_file.read_text())

        @node.setter
        def node(self, value: dict) -> None:
            self.state_file.write_text(json.dumps(value))

        @property
        def calls(self) -> list[str]:
            path = folder / "calls"
            return path.read_text().splitlines() if path.exists() else []

    s = Slurm()
    s.node = {"state": "IDLE", "reason": None}
    os.environ["STANDIN_SLURM"] = str(folder)
    yield s
    os.environ.pop("STANDIN_SLURM", None)


@pytest.fixture
def node_spec(tmp_path, spec):
    """``node_spec(scenario, library=...)``: a deployed-style spec.json and the environment in
    which the probe's pynvml answers from the simulated library with that scenario."""

    def make(name: str, library: str | None = None) -> tuple[Path, dict]:
        folder = tmp_path / name
        resolved = scenario.resolve_to_file(name, folder / "scenario.json")
        sysfs.install(scenario.load(name), folder / "sys")
        env = nvml.environment(resolved, folder / "state")
        lib = library or str(nvml.library_path())
        subprocess.run(
            [sys.executable, "-m", "gpubox", "clocks", "lock", "--mhz", "1140", "--library", lib]
            + ["--settle", "0"],
            env=env,
            capture_output=True,
        )
        data = spec.to_data()
        data["software"] |= {"nvml_library": lib, "sysfs_root": str(folder / "sys")}
        path = folder / "spec.json"
        path.write_text(json.dumps({**data, "host": HOST}))
        return path, env

    return make


def gpubox_health(spec: Path, env: dict, slurm, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpubox", "health", "--spec", str(spec), "--node", "n1"]
        + ["--scontrol", slurm.scontrol, *args],
        env={**env, "STANDIN_SLURM": str(slurm.state_file.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_healthy_node_is_left_alone(node_spec, slurm):
    result = gpubox_health(*node_spec("pg199-quad-debian13"), slurm)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("n1: healthy (quick tier, ")
    assert slurm.calls == ["show node n1"]


def test_missing_gpu_drains_then_resumes_when_it_is_back(node_spec, slurm):
    result = gpubox_health(*node_spec("fault-gpu-missing"), slurm)
    assert result.returncode == 1, result.stderr
    assert slurm.node["state"] == "IDLE+DRAIN"
    assert slurm.node["reason"].startswith("gpubox: test_gpu_present[gpu3] gpu3 (10:00.0)")
    assert "drained" in result.stdout

    result = gpubox_health(*node_spec("pg199-quad-debian13"), slurm)
    assert result.returncode == 0, result.stderr
    assert slurm.node == {"state": "IDLE", "reason": None}
    assert slurm.calls[-1] == "update nodename=n1 state=resume"


def test_admin_drain_is_never_lifted_nor_rewritten(node_spec, slurm):
    slurm.node = {"state": "IDLE+DRAIN", "reason": ADMIN}
    for name in ("fault-gpu-missing", "pg199-quad-debian13"):
        gpubox_health(*node_spec(name), slurm)
        assert slurm.node == {"state": "IDLE+DRAIN", "reason": ADMIN}
    assert not [c for c in slurm.calls if c.startswith("update")]


def test_nvml_that_cannot_load_drains(node_spec, slurm):
    spec, env = node_spec("pg199-quad-debian13", library="/nonexistent/libnvidia-ml.so.1")
    result = gpubox_health(spec, env, slurm)
    assert result.returncode == 1
    assert slurm.node["reason"] == (
        "gpubox: nvml NVML unreachable: NVML library '/nonexistent/libnvidia-ml.so.1' does not "
        "exist"
    )


def test_a_hung_probe_is_stopped_and_counts_as_nvml_unreachable(spec, tmp_path):
    marker = tmp_path / "still-running"
    hung = [sys.executable, "-c", f"import time; time.sleep(60); open({str(marker)!r}, 'w')"]
    problems = health_cmd.quick_problems(spec, "unused", health_cmd.Deadline(3), argv=hung)
    assert [p.check for p in problems] == ["nvml"]
    assert "no answer within" in problems[0].text
    assert reason(problems).startswith("gpubox: nvml NVML unreachable: no answer within")


def test_a_hung_scontrol_ends_the_run_with_one_line(node_spec, slurm):
    slurm.node = {"state": "IDLE", "reason": None, "delay": 30}
    result = gpubox_health(*node_spec("pg199-quad-debian13"), slurm, "--timeout", "6")
    assert result.returncode == 2
    assert result.stderr.startswith("gpubox health: `")
    assert "show node n1` did not answer within" in result.stderr
    assert "is slurmctld reachable?" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_scontrol_says_so(node_spec, slurm):
    spec, env = node_spec("pg199-quad-debian13")
    result = subprocess.run(
        [sys.executable, "-m", "gpubox", "health", "--spec", str(spec), "--node", "n1"]
        + ["--scontrol", "/nonexistent/scontrol"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "gpubox health: cannot run /nonexistent/scontrol: No such file or directory "
        "(is Slurm installed?)"
    )


def test_dry_run_changes_nothing(node_spec, slurm):
    result = gpubox_health(*node_spec("fault-gpu-missing"), slurm, "--dry-run", "--json")
    doc = json.loads(result.stdout)
    assert doc["action"] == "drain" and doc["dry_run"]
    assert doc["new_reason"].startswith("gpubox: test_gpu_present[gpu3]")
    assert slurm.node == {"state": "IDLE", "reason": None}


def test_record_source_uses_this_boots_record(tmp_path, spec):
    from gpubox import records

    results = {
        "counts": {"failed": 1},
        "checks": [
            {
                "id": "checks/test_quick.py::test_xid[gpu2]",
                "outcome": "failed",
                "message": "node0 gpu2 (0f:00.0): XID 79 at 07:00: it fell off the bus: reseat",
            }
        ],
    }
    draft = records.Draft(tmp_path, "boot-a")
    draft.results_json.write_text(json.dumps(results))
    draft.commit({"host": HOST, "seq": 1, "ok": False, "failed": ["test_xid[gpu2]"]})
    problems = health_cmd.record_problems(spec, str(tmp_path), "boot-a")
    assert reason(problems) == "gpubox: test_xid[gpu2] gpu2 (0f:00.0): XID 79 at 07:00"
    assert health_cmd.record_problems(spec, str(tmp_path), "another-boot") is None


def test_stand_in_is_valid_python():
    # The stand-in's own text, so a broken stand-in fails here and not as a confusing drain.
    compile(textwrap.dedent(STAND_IN.format(python=sys.executable)).split("\n", 1)[1], "s", "exec")


def test_a_gpu_missing_at_three_boots_drains_as_needing_hardware_attention(
    node_spec, slurm, snap, tmp_path
):
    """The node's boot records (acceptance.runs_dir) say gpu3 was missing at the last three
    boots; it is missing now: the reason says to stop rebooting."""
    from gpubox import records
    from gpubox.spec import NodeSpec

    spec_path, env = node_spec("fault-gpu-missing")
    data = json.loads(spec_path.read_text())
    runs = tmp_path / "runs"
    data["acceptance"] = {**data.get("acceptance", {}), "runs_dir": str(runs)}
    spec_path.write_text(json.dumps(data))
    node = NodeSpec.from_data({k: v for k, v in data.items() if k != "host"}, host=HOST)
    verdicts = judge.quick(node, snap("fault-gpu-missing"))
    checks = [
        {"id": f"checks/test_quick.py::test_{v.check}[{v.subject}]", "outcome": "failed",
         "message": v.message}
        for v in verdicts
        if v.level == "fail"
    ]  # fmt: skip
    for n in range(3):
        draft = records.Draft(runs, f"boot-{n}")
        draft.results_json.write_text(json.dumps({"counts": {"failed": 1}, "checks": checks}))
        draft.commit({"host": HOST, "seq": n + 1, "ok": False})
    result = gpubox_health(spec_path, env, slurm)
    assert result.returncode == 1, result.stderr
    assert slurm.node["reason"].startswith(
        "gpubox: test_gpu_present[gpu3] NEEDS HARDWARE ATTENTION (3 boots in a row): gpu3 (10:00.0)"
    ), slurm.node["reason"]
