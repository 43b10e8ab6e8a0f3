"""What ``mpirun --tag-output`` says about each rank, and why a launch failed.

nccl-tests built with MPI runs one process per rank; under ``--tag-output`` Open MPI prefixes
every line with ``[JOB,RANK]<stdout>:`` (or ``<stderr>:``). The nccl-tests parser strips the
tags and reads rank 0's report; this module keeps what the tags say: which ranks printed
anything, and each failure line with the rank and host that printed it. It also reads the
launcher's own complaints when the job never started on a host (an SSH error, Open MPI's
"ORTE/PRTE was unable to reliably start one or more daemons", "lost communication with a
remote daemon") and names that host.

>>> out = parse('''[1,0]<stdout>:# nThread 1 nGpus 1 minBytes 8 maxBytes 8
... [1,1]<stdout>:node2: Test NCCL failure common.cu:1100 'unhandled system error'
... [1,1]<stdout>: .. node2 pid 123: Test failure common.cu:891''')
>>> out["tagged"], out["printed"], out["failures"][0]["rank"], out["failures"][0]["host"]
(True, [0, 1], 1, 'node2')
>>> unreachable('ssh: connect to host 10.0.0.9 port 22: Connection refused')
{'host': '10.0.0.9', 'reason': 'ssh: connect to host 10.0.0.9 port 22: Connection refused'}
"""

from __future__ import annotations

import re

from gpubox.parsers.common import clean_line

_TAG = re.compile(r"^\[(\d+),(\d+)\]<(stdout|stderr|stddiag)>:\s?(.*)$")
# nccl-tests' failure lines name the host that printed them: "node2: Test NCCL failure
# common.cu:392 '...'", " .. node2 pid 123: Test failure common.cu:590", "node2: Test timeout".
_FAILURE = re.compile(
    r"^(?:\.\.\s+)?(?P<host>[^\s:]+)(?:\s+pid\s+(?P<pid>\d+))?:\s+"
    r"(?:Test (?:NCCL |CUDA )?failure|Test timeout)\b"
)

# ssh's own lines: which host it could not reach, and why.
_SSH = (
    re.compile(r"^ssh: connect to host (?P<host>\S+) port \d+: (?P<why>.+)$"),
    re.compile(r"^ssh: Could not resolve hostname (?P<host>[^:\s]+): (?P<why>.+)$"),
    re.compile(r"^ssh: (?P<host>[^:\s]+): (?P<why>Name or service not known|.+)$"),
    re.compile(r"^Host key verification failed\.$"),
    re.compile(r"^Connection to (?P<host>\S+) port \d+ timed out$"),
    re.compile(r"^Connection (?:timed out during banner exchange|closed by remote host)$"),
    re.compile(r"^(?P<who>\S+@)?(?P<host>[^:\s]+): Permission denied \((?P<why>[^)]*)\)\.?$"),
)
# Open MPI's (ORTE, 4.x) and PRRTE's (5.x) help texts when daemons did not start or were lost.
_DAEMONS = re.compile(
    r"(?:ORTE|PRTE|prte|orte) (?:was unable to reliably start one or more daemons"
    r"|has lost communication with a remote daemon)"
    r"|daemon (?:on node|was unable to)|An ORTE daemon has unexpectedly failed"
    r"|PRTE daemon has unexpectedly failed|remote daemon"
)
# Lines inside those texts that name the node: "Remote daemon: [prterun-n1-5@0,1] on node n2",
# "  Node: n2", "...daemon on node n2 ...", "node n2 (1 daemon)".
_NODE = (
    re.compile(r"Remote daemon:\s*\S+\s+on node\s+(?P<host>[^\s,.]+)"),
    re.compile(r"^\s*(?:Node|Hostname|Host):\s*(?P<host>[^\s,]+)\s*$"),
    re.compile(r"daemon on node\s+(?P<host>[^\s,.]+)"),
)


def split_tag(line: str) -> tuple[int | None, str, str]:
    """``(rank, stream, text)`` of one ``--tag-output`` line; rank None for an untagged line."""
    m = _TAG.match(line)
    if m is None:
        return None, "", line
    return int(m.group(2)), m.group(3), m.group(4)


def parse(text: str) -> dict:
    """Per-rank facts of an mpirun run's output.

    Keys: ``tagged`` (any ``[J,R]<stream>:`` line), ``printed`` (sorted ranks that printed
    anything), ``failures`` [{rank, host, pid, line}] (nccl-tests' failure lines; rank None when
    untagged), ``launch`` (see :func:`unreachable`, or None).
    """
    printed: set[int] = set()
    failures: list[dict] = []
    tagged = False
    for raw in text.splitlines():
        rank, _stream, body = split_tag(raw.rstrip("\r\n"))
        if rank is not None:
            tagged = True
            printed.add(rank)
        line = clean_line(body).strip()
        m = _FAILURE.match(line)
        if m:
            failures.append(
                {
                    "rank": rank,
                    "host": m.group("host"),
                    "pid": int(m.group("pid")) if m.group("pid") else None,
                    "line": line,
                }
            )
    return {
        "tagged": tagged,
        "printed": sorted(printed),
        "failures": failures,
        "launch": unreachable(text),
    }


def unreachable(text: str) -> dict | None:
    """The host mpirun could not start its daemon on, and why: ``{host, reason}``, or None.

    Open MPI's help text names the node when it can ("Remote daemon: [..] on node n2"); ssh
    names what it connected to (an address when ssh_config maps the name): the node's name is
    preferred, ssh's line is the reason.
    """
    ssh_host = ssh_reason = node = None
    daemons = False
    for raw in text.splitlines():
        _, _, body = split_tag(raw)
        line = clean_line(body).strip()
        if not line:
            continue
        if ssh_reason is None:
            for pattern in _SSH:
                m = pattern.match(line)
                if m:
                    ssh_reason = line
                    ssh_host = m.groupdict().get("host")
                    break
        if _DAEMONS.search(line):
            daemons = True
        if node is None and (daemons or ssh_reason):
            for pattern in _NODE:
                m = pattern.search(line)
                if m:
                    node = m.group("host")
                    break
    if ssh_reason is None and not daemons:
        return None
    reason = ssh_reason or "mpirun could not start or lost its daemon on a remote host"
    return {"host": node or ssh_host, "reason": reason}
