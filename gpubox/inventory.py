"""Inventories: pyinfra's host lists, each host's data validated into a :class:`NodeSpec`.

Inventory files call :func:`hosts` on their host list, so a broken field stops
``pyinfra INVENTORY deploy.py`` while the inventory loads: before any connection or change::

    # inventories/lab.py
    from gpubox.inventory import hosts
    gpu_nodes = hosts([("lab1", {"gpus": [{"bus_id": "01:00.0"}], "nvlink": "active"})])

Checks and the CLI read an inventory file with :func:`load`, which goes through pyinfra's own
loader so group data and precedence are exactly what a deploy sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubox.spec import NodeSpec


@dataclass(frozen=True)
class InventoryHost:
    name: str
    data: dict[str, Any]
    spec: NodeSpec


def hosts(entries: Iterable[str | tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Validate every ``(name, data)`` entry now (raising :class:`SpecError`) and return them."""
    out = []
    for entry in entries:
        name, data = (entry, {}) if isinstance(entry, str) else entry
        NodeSpec.from_data(data, host=name)
        out.append((name, data))
    return out


def load(path: str | os.PathLike, limit: Iterable[str] | None = None) -> list[InventoryHost]:
    """Every host of a pyinfra inventory file with its merged data and validated spec."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inventory file {str(path)!r} does not exist")
    # pyinfra executes inventory files inside a state context, as its CLI does.
    with ctx_state.use(State()):
        inventory = make_inventory(str(path), cwd=str(path.resolve().parent.parent))
    wanted = set(limit or ())
    found = []
    for host in inventory:
        if wanted and host.name not in wanted:
            continue
        data = dict(host.data.dict())
        found.append(InventoryHost(host.name, data, NodeSpec.from_data(data, host=host.name)))
    if wanted - {h.name for h in found}:
        missing = ", ".join(sorted(wanted - {h.name for h in found}))
        raise KeyError(f"host(s) {missing} not in inventory {str(path)!r}")
    return found
