"""XID errors from the kernel log: the driver's own record of GPU faults since boot.

NVML only reports XID events that happen while a process listens, so a check that runs after a
reboot must read what the driver logged::

    >>> parse_kernel_log("NVRM: Xid (PCI:0000:0f:00): 79, pid=912, GPU has fallen off the bus.")
    [{'gpu': None, 'bus_id': '0000:0f:00.0', 'xid': 79, 'source': 'kernel-log', 'message': 'GPU has fallen off the bus.'}]
"""

from __future__ import annotations

import re
import shutil
import subprocess

_XID = re.compile(
    r"NVRM: Xid \(PCI:(?P<bus>[0-9a-fA-F:.]+)\): (?P<xid>\d+),\s*(?:pid=[^,]*,\s*)?"
    r"(?:name=[^,]*,\s*)?(?P<message>.*)$"
)


def parse_kernel_log(text: str) -> list[dict]:
    """Every ``NVRM: Xid`` line, in order, with its bus id normalised."""
    from gpubox import busid

    events = []
    for line in text.splitlines():
        match = _XID.search(line)
        if not match:
            continue
        try:
            bus = busid.normalise(match["bus"])
        except ValueError:
            bus = match["bus"]
        events.append(
            {
                "gpu": None,
                "bus_id": bus,
                "xid": int(match["xid"]),
                "source": "kernel-log",
                "message": match["message"].strip(),
            }
        )
    return events


def read_kernel_log(errors: dict) -> str:
    """This boot's kernel messages that mention XIDs; on failure, note why in ``errors``."""
    if shutil.which("journalctl"):
        cmd = ["journalctl", "-k", "-b", "-o", "cat", "--no-pager", "--grep", "NVRM: Xid"]
    elif shutil.which("dmesg"):
        cmd = ["dmesg"]
    else:
        errors["xid_events.kernel_log"] = "neither journalctl nor dmesg is installed"
        return ""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        errors["xid_events.kernel_log"] = f"{cmd[0]} failed: {exc}"
        return ""
    # journalctl --grep exits 1 when nothing matched: that is the healthy case.
    if result.returncode not in (0, 1):
        errors["xid_events.kernel_log"] = (
            f"{' '.join(cmd)} exited {result.returncode}: " + (result.stderr.strip()[:200])
        )
    return result.stdout
