"""PCI bus ids in one canonical form.

NVML prints ``00000000:04:00.0`` (8-digit domain, upper case), sysfs and lspci ``0000:04:00.0``,
people write ``04:00.0`` or ``4:0.0``. All name the same GPU, so every comparison in gpubox goes
through :func:`normalise`::

    >>> normalise("00000000:0F:00.0")
    '0000:0f:00.0'
    >>> normalise("4:0.0")
    '0000:04:00.0'
"""

from __future__ import annotations

import re

_BUS_ID = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<device>[0-9a-fA-F]{1,2})(?:\.(?P<function>[0-7]))?$"
)

EXPECTED = "a PCI bus id like 04:00.0, 0000:04:00.0 or 00000000:04:00.0"


def normalise(text: str) -> str:
    """Return ``dddd:bb:dd.f`` (lower case) for any common spelling; raise ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    match = _BUS_ID.match(text.strip())
    if not match:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    domain = int(match["domain"] or "0", 16)
    bus, device = int(match["bus"], 16), int(match["device"], 16)
    function = int(match["function"] or "0")
    if device > 0x1F:
        raise ValueError(f"PCI device number {device:#x} in {text!r} is above 0x1f")
    width = 4 if domain <= 0xFFFF else 8
    return f"{domain:0{width}x}:{bus:02x}:{device:02x}.{function}"


def short(bus_id: str) -> str:
    """The form people read (``04:00.0``) when the domain is 0, else the full id."""
    canonical = normalise(bus_id)
    domain, rest = canonical.split(":", 1)
    return rest if int(domain, 16) == 0 else canonical
