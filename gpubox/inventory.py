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

import ast
import os
import runpy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubox.spec import NodeSpec, SpecError


class UnknownHostError(KeyError):
    """``--limit`` named a host the inventory does not have (its text is the plain message:
    a KeyError's own ``str()`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
        _validated(data, name)
        out.append((name, data))
    return out


def host_spec(host) -> NodeSpec:
    """The spec of pyinfra's current ``host`` (in ``deploy.py``), validated."""
    return _validated(host.data.dict(), host.name)


def _validated(data, name) -> NodeSpec:
    try:
        return NodeSpec.from_data(data, host=name)
    except SpecError as exc:
        raise _as_pyinfra_error(exc) from None


def _as_pyinfra_error(exc: SpecError) -> SpecError:
    """The same error, also a PyinfraError: pyinfra's CLI then prints it as one line."""
    from pyinfra.api.exceptions import PyinfraError

    both = type("SpecError", (SpecError, PyinfraError), {})
    err = both.__new__(both)
    err.__dict__.update(exc.__dict__)
    err.args = exc.args
    return err


def load(path: str | os.PathLike, limit: Iterable[str] | None = None) -> list[InventoryHost]:
    """Every host of a pyinfra inventory file with its merged data and validated spec.

    Data is merged with pyinfra's precedence (host data over its groups' data over ``all``), from
    the inventory's groups and the ``group_data/*.py`` files pyinfra's CLI reads (in the current
    directory and beside the inventory). The file is executed here, without importing pyinfra:
    ``pyinfra_cli``'s import monkey-patches the whole process with gevent (which breaks
    pytest-xdist workers), and pyinfra itself costs ~0.3 s of every check run's start.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"inventory file {str(path)!r} does not exist")
    groups = _groups_of(path)
    if "all" in groups:
        all_hosts, all_data = _hosts_and_data(groups.pop("all"))
    else:
        all_hosts, all_data = [], {}
        for group in groups.values():
            for entry in _hosts_and_data(group)[0]:
                if _name(entry) not in [_name(h) for h in all_hosts]:
                    all_hosts.append(entry)
    groups.setdefault(path.stem, [_name(h) for h in all_hosts])
    folders = [Path.cwd() / "group_data", path.resolve().parent / "group_data"]
    extra: dict[str, dict] = {}
    for folder in dict.fromkeys(folders):  # same folder once
        for file in sorted(folder.glob("*.py")) if folder.is_dir() else []:
            extra.setdefault(file.stem, {}).update(_module_data(file))
    all_data = {**all_data, **extra.pop("all", {})}
    # pyinfra's precedence: host data over its groups' data (later groups win) over `all`.
    host_data: dict[str, dict] = {}
    group_data: dict[str, list[dict]] = {}
    for entry in all_hosts:
        host_data.setdefault(_name(entry), {}).update(entry[1] if isinstance(entry, tuple) else {})
    for name, group in groups.items():
        hosts, data = _hosts_and_data(group)
        data = {**data, **extra.pop(name, {})}
        for entry in hosts:
            host_data.setdefault(_name(entry), {}).update(
                entry[1] if isinstance(entry, tuple) else {}
            )
            group_data.setdefault(_name(entry), []).append(data)
    wanted = set(limit or ())
    found = []
    for name, own in host_data.items():
        if wanted and name not in wanted:
            continue
        data = dict(all_data)
        for layer in group_data.get(name, []):
            data.update(layer)
        data.update(own)
        found.append(InventoryHost(name, data, NodeSpec.from_data(data, host=name)))
    if wanted - {h.name for h in found}:
        missing = ", ".join(sorted(wanted - {h.name for h in found}))
        raise UnknownHostError(f"host(s) {missing} not in inventory {str(path)!r}")
    return found


def _name(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def _hosts_and_data(group) -> tuple[list, dict]:
    return (list(group[0]), dict(group[1])) if isinstance(group, tuple) else (list(group), {})


def _imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(a.asname or a.name.split(".")[0] for a in node.names if a.name != "*")
    return names


def _module_data(path: Path) -> dict:
    attrs = runpy.run_path(str(path))
    skip = _imported_names(path)
    return {k: v for k, v in attrs.items() if not k.startswith("__") and k not in skip}


def _groups_of(path: Path) -> dict:
    """Module-level lists of hosts (or ``(hosts, data)`` tuples), as pyinfra reads them."""

    def is_group(value) -> bool:
        hosts = value[0] if isinstance(value, tuple) and len(value) == 2 else value
        return isinstance(hosts, list) and all(isinstance(h, str | tuple) for h in hosts)

    return {
        key: value
        for key, value in _module_data(path).items()
        if not key.startswith("_") and is_group(value)
    }
