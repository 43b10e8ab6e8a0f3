"""Scenarios for the simulated NVML library: load, resolve, compare.

A scenario file (``gpubox/sim/scenarios/NAME.json``, format in ``SCENARIOS.md``) is either a
*base* scenario that spells out a whole node, or one that ``extends`` another and changes single
values with ``set``. :func:`load` turns either into one flat, fully explicit *resolved* document;
that document, written with :func:`resolve_to_file`, is all the C library ever reads.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

SCENARIO_DIR = Path(__file__).resolve().with_name("scenarios")
FORMAT = "gpubox-nvml-sim/1"
P2P_CAPS = ("read", "write", "nvlink", "atomics", "prop")  # NVML_P2P_CAPS_INDEX_* order
P2P_CODES = ("OK", "CNS", "GNS", "TNS", "DR", "NS", "U")  # nvmlGpuP2PStatus_t order
MAX_GPUS, MAX_CLOCKS, MAX_LINKS, MAX_XIDS = 16, 128, 36, 32  # the C library's limits
MAX_BURN = 32  # points of a GPU's burn timeline (nvml_sim.c MAX_BURN)


class ScenarioError(ValueError):
    """A scenario that cannot be resolved; the message names scenario, file and key."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""What :func:`diff` reports for a path that one side does not have."""


# ---- Schema: every key a GPU has, with a check and the words for an error ----
Check = tuple[str, Callable[[Any], bool]]
Fail = Callable[[str, str], NoReturn]  # raises ScenarioError naming the key


def _uint(limit: int = 2**63) -> Check:
    return (f"an integer 0..{limit}", lambda v: type(v) is int and 0 <= v <= limit)


def _uint_list(most: int) -> Check:
    ok = _uint()[1]

    def check(v: Any) -> bool:
        return isinstance(v, list) and len(v) <= most and all(ok(x) for x in v)

    return (f"a list of at most {most} integers >= 0", check)


def _matches(pattern: str) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None


def _nvlink(v: Any) -> bool:
    if v == "not_supported":
        return True
    return (
        isinstance(v, list) and len(v) <= MAX_LINKS and all(x in ("active", "disabled") for x in v)
    )


# A GPU's burn timeline: what it reads while a (replayed) gpu-burn runs, at fractions of the run.
BURN_KEYS = (
    "at",
    "sm_mhz",
    "event_reasons",
    "temperature_c",
    "memory_temperature_c",
    "power_mw",
    "gflops",
    "errors",
)


def _burn(v: Any) -> bool:
    if not isinstance(v, list) or len(v) > MAX_BURN:
        return False
    number = (int, float)
    previous = -1.0
    for i, point in enumerate(v):
        if not isinstance(point, dict) or set(point) != set(BURN_KEYS):
            return False
        t = point["at"]
        if type(t) not in number or not 0 <= t <= 1 or t <= previous or (i == 0 and t != 0):
            return False
        previous = t
        uints = [point[k] for k in BURN_KEYS if k not in ("at", "gflops")]
        if not all(_uint()[1](x) for x in uints) or point["temperature_c"] > 200:
            return False
        if type(point["gflops"]) not in number or point["gflops"] < 0:
            return False
    return True


BURN: Check = (
    f"a list of at most {MAX_BURN} points {{{', '.join(BURN_KEYS)}}}, 'at' rising from 0 to "
    "at most 1, the others numbers >= 0",
    _burn,
)
BOOL: Check = ("true or false", lambda v: type(v) is bool)
TEXT: Check = ("a non-empty string", lambda v: isinstance(v, str) and 0 < len(v) < 80)
HEX32: Check = ("a string 0xXXXXXXXX", _matches(r"0x[0-9A-F]{8}"))
BUS_ID: Check = (
    "an NVML bus id like 00000000:04:00.0 (upper case)",
    _matches(r"[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]"),
)
NVLINK: Check = (f'"not_supported" or a list of at most {MAX_LINKS} "active"/"disabled"', _nvlink)
P2P_CODE: Check = ("one of " + " ".join(P2P_CODES), lambda v: v in P2P_CODES)
MW_OR_NULL: Check = ("an integer >= 0 (mW) or null", lambda v: v is None or _uint()[1](v))

ECC_COUNTS = {"corrected": _uint(), "uncorrected": _uint()}
GPU_SCHEMA: dict[str, Any] = {
    "present": BOOL,
    "name": TEXT,
    "uuid": TEXT,
    "serial": ("a string of at most 29 characters", lambda v: isinstance(v, str) and len(v) < 30),
    "bus_id": BUS_ID,
    "pci_device_id": HEX32,
    "pci_subsystem_id": HEX32,
    "memory": {"total_mib": _uint(2**40), "reserved_mib": _uint(2**40), "used_mib": _uint(2**40)},
    "pcie": {
        "gen_current": _uint(9),
        "gen_max": _uint(9),
        "width_current": _uint(64),
        "width_max": _uint(64),
        "replay_counter": _uint(2**32 - 1),
    },
    "clocks": {
        "graphics_idle_mhz": _uint(10000),
        "memory_mhz": _uint(10000),
        "video_idle_mhz": _uint(10000),
        "max_graphics_mhz": _uint(10000),
        "max_memory_mhz": _uint(10000),
        "max_video_mhz": _uint(10000),
        "supported_graphics_mhz": _uint_list(MAX_CLOCKS),
        "supported_memory_mhz": _uint_list(MAX_CLOCKS),
        "honours_lock": BOOL,
        "event_reasons_unlocked": _uint(),
        "event_reasons_locked": _uint(),
    },
    "temperature_c": _uint(200),
    "memory_temperature_c": _uint(200),
    "power_usage_mw": _uint(2**32 - 1),
    "power_limit_mw": MW_OR_NULL,
    "pstate": _uint(15),
    "utilization": {"gpu_percent": _uint(100), "memory_percent": _uint(100)},
    "persistence_mode": BOOL,
    "ecc": {"enabled": BOOL, "volatile": ECC_COUNTS, "aggregate": ECC_COUNTS},
    "remapped_rows": {
        "correctable": _uint(2**32 - 1),
        "uncorrectable": _uint(2**32 - 1),
        "pending": BOOL,
        "failure": BOOL,
    },
    "lost": BOOL,
    "nvlink": NVLINK,
    "xid_events": _uint_list(MAX_XIDS),
    "burn": BURN,
}
SYSTEM_SCHEMA = {"driver_version": TEXT, "cuda_driver_version": _uint(10**6), "nvml_version": TEXT}
P2P_DEFAULT_SCHEMA = dict.fromkeys(P2P_CAPS, P2P_CODE)


# ---- Locating and reading files ----
def names() -> list[str]:
    """The scenarios that ship with gpubox, sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.json"))


def _locate(name_or_path: str | os.PathLike, near: Path | None = None) -> Path:
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or "/" in text or text.endswith(".json"):
        return Path(text)
    for folder in ([near] if near else []) + [SCENARIO_DIR]:
        if (folder / f"{text}.json").is_file():
            return folder / f"{text}.json"
    raise ScenarioError(
        f"scenario {text!r}: no file {SCENARIO_DIR / (text + '.json')} "
        f"(known: {', '.join(names())})"
    )


def _read(path: Path, label: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"scenario {label!r} ({path}): file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScenarioError(f"scenario {label!r} ({path}): cannot read: {e}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"scenario {label!r} ({path}): expected a JSON object at the top")
    return doc


# ---- Validation against the schema ----
def _check(value: Any, schema: Any, where: str, fail: Fail) -> None:
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            fail(where, f"expected an object with keys {', '.join(schema)}")
        for key in value:
            if key not in schema:
                fail(f"{where}.{key}", f"unknown key (known: {', '.join(schema)})")
        for key, sub in schema.items():
            if key not in value:
                fail(f"{where}.{key}", "missing")
            _check(value[key], sub, f"{where}.{key}", fail)
    elif not schema[1](value):
        fail(where, f"expected {schema[0]}, got {json.dumps(value)}")


def _validate_layer(doc: dict, fail: Fail) -> None:
    """Check the merged, not yet expanded document (see SCENARIOS.md, 'How a scenario resolves')."""
    if not isinstance(doc.get("description"), str):
        fail("description", "expected a string")
    _check(doc.get("system"), SYSTEM_SCHEMA, "system", fail)
    gpus = doc.get("gpus")
    if not isinstance(gpus, list) or not 0 < len(gpus) <= MAX_GPUS:
        fail("gpus", f"expected a list of 1..{MAX_GPUS} GPUs")
    for i, gpu in enumerate(gpus):
        if isinstance(gpu, dict):
            gpu.setdefault("burn", [])  # optional: no timeline, the GPU reads as at rest
        _check(gpu, GPU_SCHEMA, f"gpus[{i}]", fail)
    p2p = doc.get("p2p")
    pairs_schema = ("an object", lambda v: isinstance(v, dict))
    _check(p2p, {"default": P2P_DEFAULT_SCHEMA, "pairs": pairs_schema}, "p2p", fail)
    for pair, caps in p2p["pairs"].items():
        m = re.fullmatch(r"(\d+)-(\d+)", pair)
        if not m or m[1] == m[2] or max(int(m[1]), int(m[2])) >= len(gpus):
            fail(f"p2p.pairs.{pair}", f"expected 'A-B', two different slots < {len(gpus)}")
        if not isinstance(caps, dict) or not caps:
            fail(f"p2p.pairs.{pair}", f"expected an object with some of {', '.join(P2P_CAPS)}")
        for cap, code in caps.items():
            _check(
                code,
                P2P_DEFAULT_SCHEMA.get(cap, ("a known capability", lambda v: False)),
                f"p2p.pairs.{pair}.{cap}",
                fail,
            )
    for key in ("bus_id", "uuid"):
        seen = [g[key] for g in gpus if g["present"]]
        if len(seen) != len(set(seen)):
            fail(f"gpus[*].{key}", "two present GPUs share a value")
    _validate_benchmarks(doc.get("benchmarks", {}), fail)
    _validate_pcie_tree(doc.get("pcie_tree", {}), gpus, fail)


# ---- Benchmarks: recorded tool output that gpubox/sim/replay.py prints on the simulated node ----
BENCHMARK_SCHEMA: dict[str, Check] = {
    "tool": ("a program name like bandwidthTest or all_reduce_perf", _matches(r"[\w.+-]+")),
    "gpus": ("a list of GPU indices", lambda v: isinstance(v, list) and _uint_list(MAX_GPUS)[1](v)),
    "size": ("a size in bytes > 0", lambda v: type(v) is int and v > 0),
    "exit": ("an exit code 0..255", lambda v: type(v) is int and 0 <= v <= 255),
    "output": ("a string (what the tool prints)", lambda v: isinstance(v, str)),
    "stderr": ("a string", lambda v: isinstance(v, str)),
    "seconds": ("a number of seconds >= 0", lambda v: type(v) in (int, float) and v >= 0),
    "mpi_ranks": ("an MPI world size >= 1 (mpirun's -np)", lambda v: type(v) is int and v >= 1),
    "mpi_fail": (
        "an object {output, exit, ranks} (what a failing rank prints)",
        lambda v: (
            isinstance(v, dict)
            and set(v) <= {"output", "exit", "ranks"}
            and isinstance(v.get("output", ""), str)
            and type(v.get("exit", 3)) is int
            and (v.get("ranks") is None or _uint_list(1 << 20)[1](v["ranks"]))
        ),
    ),
}


def _validate_benchmarks(benchmarks: Any, fail: Fail) -> None:
    if not isinstance(benchmarks, dict):
        fail("benchmarks", "expected an object of name: recorded run")
    for name, entry in benchmarks.items():
        where = f"benchmarks.{name}"
        if not isinstance(entry, dict):
            fail(where, f"expected an object with keys {', '.join(BENCHMARK_SCHEMA)}")
        for key in ("tool", "output"):
            if key not in entry:
                fail(f"{where}.{key}", "missing")
        for key, value in entry.items():
            if key not in BENCHMARK_SCHEMA:
                fail(f"{where}.{key}", f"unknown key (known: {', '.join(BENCHMARK_SCHEMA)})")
            what, ok = BENCHMARK_SCHEMA[key]
            if not ok(value):
                fail(f"{where}.{key}", f"expected {what}, got {json.dumps(value)[:80]}")


# ---- The PCIe tree: what the node's sysfs shows above its GPUs (gpubox/sim/sysfs.py renders it) --
BASE_KEYS = ("description", "system", "gpu_defaults", "gpus", "p2p", "benchmarks", "pcie_tree")
# The counters the kernel lists in aer_dev_correctable / aer_dev_{nonfatal,fatal}
# (drivers/pci/pcie/aer.c, aer_correctable_error_string / aer_uncorrectable_error_string).
AER_CORRECTABLE = (
    "RxErr", "BadTLP", "BadDLLP", "Rollover", "Timeout", "NonFatalErr", "CorrIntErr", "HeaderOF",
)  # fmt: skip
AER_UNCORRECTABLE = (
    "Undefined", "DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF",
    "MalfTLP", "ECRC", "UnsupReq", "ACSViol", "UncorrIntErr", "BlockedTLP", "AtomicOpBlocked",
    "TLPBlockedErr", "PoisonTLPBlocked",
)  # fmt: skip
ACS_NAMES = (
    "SrcValid",
    "TransBlk",
    "ReqRedir",
    "CmpltRedir",
    "UpstreamFwd",
    "EgressCtrl",
    "DirectTrans",
)
PORT_ROLES = ("root_port", "switch_upstream", "switch_downstream")
# The set paths that may create a key: a pair override, a benchmark entry, an AER counter.
_CREATABLE = r"p2p\.pairs\.[^.]+|pcie_tree\.[^.]+\.aer\.(?:correctable|nonfatal|fatal)"
_SYSFS_BUS_ID = _matches(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def _aer(v: Any) -> bool:
    if v is None:
        return True  # no AER capability: the kernel shows no aer_dev_* files
    if not isinstance(v, dict) or set(v) != {"correctable", "nonfatal", "fatal"}:
        return False
    for kind, counters in v.items():
        names = AER_CORRECTABLE if kind == "correctable" else AER_UNCORRECTABLE
        if not isinstance(counters, dict) or not all(
            k in names and _uint()[1](n) for k, n in counters.items()
        ):
            return False
    return True


AER: Check = (
    "null or {correctable: {RxErr: n, ...}, nonfatal: {...}, fatal: {...}} with the kernel's "
    "counter names",
    _aer,
)
ACS: Check = (
    f"null (no ACS capability) or a list of enabled bits out of {', '.join(ACS_NAMES)}",
    lambda v: v is None or (isinstance(v, list) and all(x in ACS_NAMES for x in v)),
)
_HEX4: Check = ("4 lower-case hex digits like 10b5", _matches(r"[0-9a-f]{4}"))
_KEY: Check = (
    "the key of another pcie_tree entry, or null",
    lambda v: v is None or isinstance(v, str),
)
_PORT = {
    "role": ("one of " + ", ".join(PORT_ROLES), lambda v: v in PORT_ROLES),
    "bus_id": ("a sysfs bus id like 0000:02:00.0 (lower case)", _SYSFS_BUS_ID),
    "parent": _KEY,
    "vendor": _HEX4,
    "device": _HEX4,
    "max_gen": _uint(6),
    "max_width": _uint(32),
    "numa_node": ("an integer >= -1", lambda v: type(v) is int and v >= -1),
    "aer": AER,
    "acs": ACS,
}
PCIE_TREE_SCHEMA: dict[str, dict[str, Any]] = {
    "root_port": _PORT,
    "switch_downstream": _PORT,
    # The lower end of the switch's uplink: that link's state is read here.
    "switch_upstream": {**_PORT, "gen": _uint(6), "width": _uint(32)},
    # A GPU's own link is NVML's (gpus[slot].pcie), rendered at both ends.
    "gpu": {
        "role": ("gpu", lambda v: v == "gpu"),
        "gpu": ("a GPU slot index", lambda v: type(v) is int and v >= 0),
        "parent": _KEY,
        "aer": AER,
    },
}
# Which role may sit right below which (PCIe: a root port or a switch's downstream port leads to
# one device; a switch's upstream port leads to its downstream ports).
PCIE_PARENTS = {
    "root_port": (None,),
    "switch_upstream": ("root_port", "switch_downstream"),
    "switch_downstream": ("switch_upstream",),
    "gpu": ("root_port", "switch_downstream"),
}


def _validate_pcie_tree(tree: Any, gpus: list, fail: Fail) -> None:
    if not isinstance(tree, dict):
        fail("pcie_tree", "expected an object of name: device")
    bus_ids: dict[str, str] = {}
    slots: dict[int, str] = {}
    below: dict[str, list[str]] = {}
    for name, entry in tree.items():
        where = f"pcie_tree.{name}"
        if not re.fullmatch(r"[\w-]+", name):
            fail(where, "expected a name of letters, digits, - and _ (no dots: set paths use it)")
        role = entry.get("role") if isinstance(entry, dict) else None
        if role not in PCIE_TREE_SCHEMA:
            fail(f"{where}.role", f"expected one of {', '.join(PCIE_TREE_SCHEMA)}")
        _check(entry, PCIE_TREE_SCHEMA[role], where, fail)
        parent = entry["parent"]
        parent_role = None if parent is None else (tree.get(parent) or {}).get("role")
        if parent is not None and parent not in tree:
            fail(f"{where}.parent", f"no entry {parent!r} in pcie_tree")
        if parent_role not in PCIE_PARENTS[role]:
            allowed = " or ".join("null" if r is None else r for r in PCIE_PARENTS[role])
            fail(f"{where}.parent", f"a {role} sits below {allowed}, not {parent_role or 'null'}")
        below.setdefault(parent, []).append(name)
        if role == "gpu":
            if entry["gpu"] >= len(gpus):
                fail(f"{where}.gpu", f"expected a GPU slot below {len(gpus)}")
            if entry["gpu"] in slots:
                fail(f"{where}.gpu", f"slot {entry['gpu']} is already {slots[entry['gpu']]}")
            slots[entry["gpu"]] = name
        else:
            if entry["bus_id"] in bus_ids:
                fail(f"{where}.bus_id", f"{entry['bus_id']} is already {bus_ids[entry['bus_id']]}")
            bus_ids[entry["bus_id"]] = name
    for parent, children in below.items():
        if parent is not None and tree[parent]["role"] != "switch_upstream" and len(children) > 1:
            fail(f"pcie_tree.{parent}", f"a link leads to one device, not {', '.join(children)}")


def _inline_outputs(value: Any, folder: Path, where: str, fail: Fail) -> Any:
    """``output_file`` (a path relative to the scenario's folder) -> ``output`` (its text)."""
    if isinstance(value, dict):
        out = {}
        for key, sub in value.items():
            if key == "output_file":
                if not isinstance(sub, str):
                    fail(f"{where}.output_file", "expected a path relative to the scenario file")
                try:
                    out["output"] = (folder / sub).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    fail(f"{where}.output_file", f"cannot read {folder / sub}: {e}")
            else:
                out[key] = _inline_outputs(sub, folder, f"{where}.{key}", fail)
        return out
    return value


# ---- Paths: "gpus[0].pcie.width_current", "gpus[*].lost", "p2p.pairs.2-3.read" ----
_TOKEN = re.compile(r"\[(\d+|\*)\]|([^.\[\]]+)")


def _parse_path(path: str) -> list[str | int]:
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            raise ValueError(f"cannot parse at character {pos}")
        tokens.append(m[2] if m[2] is not None else ("*" if m[1] == "*" else int(m[1])))
        pos = m.end()
        if path[pos : pos + 1] == ".":
            pos += 1
    if not tokens:
        raise ValueError("empty path")
    return tokens


def _apply_set(doc: dict, path: str, value: Any, fail: Fail) -> None:
    try:
        tokens = _parse_path(path)
    except ValueError as e:
        fail(f"set.{path}", str(e))

    def walk(node: Any, rest: list, done: str) -> None:
        token, rest = rest[0], rest[1:]
        if token == "*":
            if not isinstance(node, list):
                fail(f"set.{path}", f"{done or '$'} is not a list, [*] needs one")
            for i in range(len(node)):
                walk(node, [i, *rest], done)
            return
        here = (
            f"{done}[{token}]" if isinstance(token, int) else (f"{done}.{token}" if done else token)
        )
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                fail(f"set.{path}", f"{here}: no such item")
        elif not isinstance(node, dict):
            fail(f"set.{path}", f"{done}: not an object, cannot have key {token!r}")
        elif token not in node:
            # Only P2P pair overrides may be created; any other new key is a typo.
            if done in ("p2p.pairs", "benchmarks") or re.fullmatch(_CREATABLE, done):
                node[token] = {} if rest else None
            else:
                fail(f"set.{path}", f"unknown key {token!r} in {done or 'the scenario'}")
        if rest:
            walk(node[token], rest, here)
        else:
            node[token] = copy.deepcopy(value)

    walk(doc, tokens, "")


# ---- Resolution ----
def _layer(path: Path, label: str, chain: tuple[Path, ...]) -> tuple[dict, str]:
    """The merged, unexpanded document of one scenario file and its ancestors."""
    if path.resolve() in chain:
        cycle = " -> ".join(p.stem for p in (*chain, path.resolve()))
        raise ScenarioError(f"scenario {label!r} ({path}): extends cycle: {cycle}")
    chain = (*chain, path.resolve())
    src = _read(path, label)

    def fail(key: str, problem: str) -> NoReturn:
        raise ScenarioError(f"scenario {label!r} ({path}): {key}: {problem}")

    if "extends" in src:
        for key in src:
            if key not in ("extends", "description", "set"):
                fail(
                    key,
                    "unknown key (a scenario that extends another has only "
                    "extends, description, set)",
                )
        parent = src["extends"]
        if not isinstance(parent, str):
            fail("extends", "expected the name of another scenario")
        try:
            parent_path = _locate(parent, near=path.parent)
        except ScenarioError as e:
            raise ScenarioError(f"scenario {label!r} ({path}): extends: {e}") from None
        doc, _ = _layer(parent_path, parent, chain)
        sets = src.get("set", {})
        if not isinstance(sets, dict):
            fail("set", "expected an object of path: value")
        for key, value in sets.items():
            if key.startswith("benchmarks"):
                if key.endswith(".output_file"):  # replace one recorded output by a file's text
                    key, value = key[: -len("_file")], {"output_file": value}
                    value = _inline_outputs(value, path.parent, f"set.{key}", fail)["output"]
                else:
                    value = _inline_outputs(value, path.parent, f"set.{key}", fail)
            _apply_set(doc, key, value, fail)
        doc["description"] = src.get("description", doc.get("description", ""))
    else:
        for key in src:
            if key not in BASE_KEYS:
                fail(key, f"unknown key (known: {', '.join(BASE_KEYS)})")
        defaults = src.get("gpu_defaults", {})
        if not isinstance(defaults, dict) or not isinstance(src.get("gpus"), list):
            fail("gpus", "expected gpu_defaults (an object) and gpus (a list of objects)")
        gpus = []
        for i, own in enumerate(src["gpus"]):
            if not isinstance(own, dict):
                fail(f"gpus[{i}]", "expected an object")
            gpus.append(_merge(copy.deepcopy(defaults), own))
        doc = {**copy.deepcopy(src), "gpus": gpus}
        doc.pop("gpu_defaults", None)
        if "benchmarks" in doc:
            doc["benchmarks"] = _inline_outputs(doc["benchmarks"], path.parent, "benchmarks", fail)
        doc.setdefault("description", "")
    _validate_layer(doc, fail)
    return doc, path.stem


def _merge(base: dict, over: dict) -> dict:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def load(name_or_path: str | os.PathLike) -> dict:
    """The resolved scenario: one flat document with every value spelled out.

    ``name_or_path`` is a shipped scenario's name (see :func:`names`) or a path to a file.
    """
    path = _locate(name_or_path)
    doc, stem = _layer(path, path.stem, ())
    slots = [i for i, g in enumerate(doc["gpus"]) if g["present"]]
    default, pairs = doc["p2p"]["default"], doc["p2p"]["pairs"]
    return {
        "format": FORMAT,
        "scenario": stem,
        "description": doc["description"],
        "system": doc["system"],
        "gpus": [
            {"slot": s, **{k: v for k, v in doc["gpus"][s].items() if k != "present"}}
            for s in slots
        ],
        "p2p": {
            cap: [
                ["X" if a == b else pairs.get(f"{a}-{b}", {}).get(cap, default[cap]) for b in slots]
                for a in slots
            ]
            for cap in P2P_CAPS
        },
        "benchmarks": doc.get("benchmarks", {}),
        "pcie_tree": doc.get("pcie_tree", {}),
    }


def resolve_to_file(name_or_path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Write the resolved scenario to ``dest`` (atomically) and return its path."""
    doc = load(name_or_path)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, sub in value.items():
            yield from _flatten(sub, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list) and value:
        for i, sub in enumerate(value):
            yield from _flatten(sub, f"{prefix}[{i}]")
    else:
        yield prefix, value


def diff(
    a: str | os.PathLike | dict,
    b: str | os.PathLike | dict,
    ignore: tuple[str, ...] = ("scenario", "description"),
) -> dict[str, tuple[Any, Any]]:
    """``{path: (value in a, value in b)}`` for every leaf that differs between two resolved
    scenarios (names, paths or dicts). A side that lacks the path shows :data:`MISSING`."""
    flat_a, flat_b = (
        {
            k: v
            for k, v in _flatten(x if isinstance(x, dict) else load(x))
            if k.split(".")[0].split("[")[0] not in ignore
        }
        for x in (a, b)
    )
    return {
        key: (flat_a.get(key, MISSING), flat_b.get(key, MISSING))
        for key in sorted(flat_a.keys() | flat_b.keys())
        if flat_a.get(key, MISSING) != flat_b.get(key, MISSING)
        or type(flat_a.get(key)) is not type(flat_b.get(key))
    }
