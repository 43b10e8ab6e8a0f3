"""Deciding what ``gpubox health`` does to a Slurm node. No I/O here.

The health check (``gpubox health``, Slurm's ``HealthCheckProgram``) gathers *problems*, from a
fresh quick tier (the NVML snapshot judged by :mod:`gpubox.judge`) or from the last acceptance
record, reads the node's Slurm state, and :func:`decide` turns both into one action::

    >>> node = NodeState("gpu1", "IDLE", None)
    >>> decide([Problem("test_gpu_present[gpu3]", "gpu3 (10:00.0): not found")], node).kind
    'drain'
    >>> decide([], NodeState("gpu1", "IDLE+DRAIN", "gpubox: test_xid[gpu0] ...")).kind
    'resume'
    >>> decide([], NodeState("gpu1", "IDLE+DRAIN", "new PSU, back Monday")).kind
    'none'

gpubox lifts only the drains it set itself, recognised by the reason's ``gpubox:`` prefix
(:data:`PREFIX`); an admin's drain, whatever the checks say, is left as it is. The reason Slurm
shows (``sinfo -R``) is built in one place, :func:`reason`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PREFIX = "gpubox:"
# Slurm keeps a reason of any length, but `sinfo -R` and `scontrol show node` are read by people.
MAX_REASON = 200
DRAIN, RESUME, NONE = "drain", "resume", "none"
_GPU_LABEL = re.compile(r"^gpu\d+\b")


@dataclass(frozen=True)
class Problem:
    """One failed check: its id as pytest names it and what was wrong, in a few words."""

    check: str
    text: str

    @property
    def names_gpu(self) -> bool:
        return "[gpu" in self.check or bool(_GPU_LABEL.match(self.text))


@dataclass(frozen=True)
class NodeState:
    """A Slurm node as ``scontrol show node`` shows it: ``State=IDLE+DRAIN``, ``Reason=...``."""

    name: str
    state: str
    reason: str | None

    @property
    def flags(self) -> set[str]:
        return set(self.state.upper().split("+"))

    @property
    def drained(self) -> bool:
        """DRAIN set (Slurm shows it as DRAINING while jobs still run, DRAINED after).

        Read from the state alone: Slurm (24.11) keeps showing the last reason after a resume.
        """
        return bool(self.flags & {"DRAIN", "DRAINED", "DRAINING"})

    @property
    def drained_by_gpubox(self) -> bool:
        return self.drained and (self.reason or "").startswith(PREFIX)


@dataclass(frozen=True)
class Action:
    """What to do: ``drain`` (with :attr:`reason`), ``resume`` or ``none``; :attr:`why` says why."""

    kind: str
    why: str
    reason: str | None = None


# ---- problems ----------------------------------------------------------------------------------


def _head(message: str, host: str | None) -> str:
    """What a judge's message says was wrong, without its host and its usual-cause hint.

    Judges write ``{host} {gpu}: {what}: {hint}`` or ``{host}: {what}: {hint}``; ``: `` inside
    brackets (``(not found: gpu3 (10:00.0))``) is part of ``what``.

    >>> _head("home gpu3 (10:00.0): not found; NVML shows bus ids [04:00.0]: the GPU fell", "home")
    'gpu3 (10:00.0): not found; NVML shows bus ids [04:00.0]'
    >>> _head("home: NVML shows 3 GPUs, expected 4 (not found: gpu3): a GPU is missing", "home")
    'NVML shows 3 GPUs, expected 4 (not found: gpu3)'
    """
    text = " ".join((message or "").split())
    if host and text.startswith(host):
        text = text[len(host) :].lstrip(": ").lstrip()
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == ":" and depth == 0 and text[i + 1 : i + 2] == " ":
            parts.append(text[start:i])
            start = i + 2
    parts.append(text[start:])
    keep = 2 if _GPU_LABEL.match(parts[0]) and len(parts) > 1 else 1
    return ": ".join(parts[:keep]).strip()


def check_id(check: str, subject: str) -> str:
    """A verdict's check as the quick tier's pytest id on one node: ``test_pcie[gpu0]``."""
    return f"test_{check}" if subject == "node" else f"test_{check}[{subject}]"


def from_verdicts(verdicts: Iterable, host: str | None) -> list[Problem]:
    """The failed verdicts (:class:`gpubox.judge.Verdict`) of a fresh quick tier."""
    return [
        Problem(check_id(v.check, v.subject), _head(v.message, host)) for v in verdicts if not v.ok
    ]


def from_results(results: dict | None, host: str | None) -> list[Problem]:
    """The failed checks of an acceptance record's results (``gpubox.results/1``)."""
    out = []
    for c in (results or {}).get("checks") or []:
        if c.get("outcome") == "failed":
            out.append(Problem(c["id"].split("::")[-1], _head(c.get("message") or "", host)))
    return out


def nvml_unreachable(detail: str) -> Problem:
    """NVML did not answer (the probe failed or hung): itself a reason to drain."""
    return Problem("nvml", f"NVML unreachable: {' '.join(detail.split())}")


# ---- the reason --------------------------------------------------------------------------------


def reason(problems: Sequence[Problem], notes: Sequence[str] = ()) -> str:
    """The drain reason Slurm shows: ``gpubox: CHECK TEXT``, the first problem that names a GPU
    first, then how many more and which, cut to :data:`MAX_REASON` characters.

    ``notes`` go right after the first problem's check id, before its text, so the cut never
    takes them (:func:`escalation_notes`: "needs hardware attention" when the GPU failed the same
    way at several consecutive boots).

    >>> reason([Problem("test_gpu_count", "NVML shows 3 GPUs"), Problem("test_pcie[gpu1]", "x4")])
    'gpubox: test_pcie[gpu1] x4 (+1 more: test_gpu_count)'
    """
    if not problems:
        raise ValueError("a drain reason needs at least one problem")
    ordered = sorted(problems, key=lambda p: not p.names_gpu)  # stable: the GPU's problem first
    first, rest = ordered[0], ordered[1:]
    text = f"{PREFIX} {first.check} " + "".join(f"{note}: " for note in notes) + first.text
    if rest:
        more = f" (+{len(rest)} more: {', '.join(p.check for p in rest)})"
        if len(more) > 60:
            more = f" (+{len(rest)} more)"
        text = _cut(text, MAX_REASON - len(more)) + more
    return _cut(text, MAX_REASON)


def escalation_notes(
    problems: Sequence[Problem], escalated: Sequence[dict]
) -> tuple[list[Problem], list[str]]:
    """The problems with the escalated ones first, and the note for the first of them.

    ``escalated`` is :func:`gpubox.history.escalations` of this node's boot records: a check on
    a GPU that failed at several consecutive boots. Only a check failing now counts.

    >>> p, notes = escalation_notes([Problem("test_xid[gpu2]", "XID 79")],
    ...     [{"check": "test_xid[gpu2]", "boots": 3}])
    >>> reason(p, notes)
    'gpubox: test_xid[gpu2] NEEDS HARDWARE ATTENTION (3 boots in a row): XID 79'
    """
    boots = {e["check"]: e["boots"] for e in escalated}
    ordered = sorted(problems, key=lambda p: p.check not in boots)
    if not ordered or ordered[0].check not in boots:
        return list(problems), []
    return ordered, [f"NEEDS HARDWARE ATTENTION ({boots[ordered[0].check]} boots in a row)"]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# ---- the decision ------------------------------------------------------------------------------


def decide(problems: Sequence[Problem], node: NodeState, notes: Sequence[str] = ()) -> Action:
    """Drain a failing node, resume a healthy one gpubox drained, leave everything else."""
    if problems:
        text = reason(problems, notes)
        if not node.drained:
            return Action(DRAIN, f"{len(problems)} check(s) failed", text)
        if node.drained_by_gpubox:
            if node.reason == text:
                return Action(NONE, "already drained by gpubox for this reason")
            return Action(DRAIN, "drained by gpubox for another reason: reason updated", text)
        return Action(
            NONE,
            f"{len(problems)} check(s) failed, but the node is drained by someone else "
            f"({node.reason or 'no reason'}): left as it is",
        )
    if node.drained_by_gpubox:
        return Action(RESUME, f"healthy again; it was drained by gpubox ({node.reason})")
    if node.drained:
        return Action(NONE, f"healthy; drained by someone else ({node.reason or 'no reason'})")
    return Action(NONE, "healthy")


# ---- reading scontrol --------------------------------------------------------------------------

_REASON = re.compile(r"(?:^|\s)Reason=(.*?)(?:\s+\[[^\]@]*@[^\]]*\])?\s*$", re.MULTILINE)
_STATE = re.compile(r"(?:^|\s)State=(\S+)")


def parse_node(text: str, name: str) -> NodeState:
    """``scontrol show node NAME`` (either layout) into a :class:`NodeState`.

    >>> parse_node("NodeName=n1 Arch=x86_64\\n   State=IDLE+DRAIN ThreadsPerCore=1\\n"
    ...            "   Reason=gpubox: test_xid[gpu0] XID 79 [root@2026-12-08T01:00:00]\\n", "n1")
    NodeState(name='n1', state='IDLE+DRAIN', reason='gpubox: test_xid[gpu0] XID 79')
    """
    state = _STATE.search(text)
    if state is None:
        raise ValueError(f"no State= in scontrol's answer for node {name}: {text.strip()[:200]!r}")
    found = _REASON.search(text)
    why = found.group(1).strip() if found else None
    if why in ("", "(null)", "None"):
        why = None
    return NodeState(name, state.group(1), why)
