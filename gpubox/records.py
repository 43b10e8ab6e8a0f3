"""Boot records: one folder per boot, written so that a crash never corrupts an earlier one.

``gpubox accept`` (the boot-time acceptance unit) keeps each run under the boot id
(``/proc/sys/kernel/random/boot_id``)::

    /var/lib/gpubox/runs/
        .lock                      flock: one writer at a time (readers need none)
        <boot_id>/
            record.json            schema gpubox.record/1: when, which tiers, counts, baseline
            results.json           the checks' JSON results (gpubox.results/1)
            junit.xml              the checks' JUnit XML
            logs/                  pytest's output; the raw benchmark logs (logs/bench/)
        .tmp-<boot_id>-<pid>/      a run in progress (or one killed): readers skip it

A run writes into its ``.tmp-`` folder, fsyncs every file and folder, then renames the folder
into place (``os.rename`` is atomic), so a record is either complete or absent. A second run in
the same boot replaces that boot's record atomically too (``renameat2(RENAME_EXCHANGE)``; the
previous one stays readable until the swap). Pruning renames a record out of the listing before
deleting it, so a killed prune never leaves half a record listed.

>>> records = list_records("/var/lib/gpubox/runs")              # doctest: +SKIP
>>> records[-1].boot_id, records[-1].meta["counts"]             # doctest: +SKIP
('0b5e...', {'passed': 42})
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "gpubox.record/1"
DEFAULT_RUNS_DIR = "/var/lib/gpubox/runs"
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
RECORD, RESULTS, JUNIT, LOGS = "record.json", "results.json", "junit.xml", "logs"
TMP_PREFIX, OLD_PREFIX = ".tmp-", ".old-"
# Test hook, for the kill-mid-write test only: seconds to pause half-way through writing
# record.json (after the first half is on disk), announced on stderr so a test knows when to
# SIGKILL the writer. Never set it in production.
PAUSE_ENV = "GPUBOX_TEST_RECORD_PAUSE"


class RecordError(RuntimeError):
    """A record folder that cannot be written; names the folder and why."""


def boot_id(path: str = BOOT_ID_FILE) -> str:
    """This boot's id (a UUID the kernel picks at boot; nspawn gives each container boot its own)."""
    with open(path) as f:
        return f.read().strip()


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


def short_boot_id(boot: str) -> str:
    """A boot id as people read it: a kernel UUID's first 8 hex digits (enough to tell boots
    apart), any other id (``gpubox accept --boot-id``) whole.

    >>> short_boot_id("c5775118-3f0e-4b1c-9a51-0d6c1f2e7a44"), short_boot_id("real-boot-0001")
    ('c5775118', 'real-boot-0001')
    """
    return boot[:8] if _UUID.match(boot) else boot


@dataclass
class Record:
    """One finished boot record: its folder and ``record.json``; ``results`` loads on demand."""

    path: Path
    meta: dict[str, Any]
    _results: dict | None = field(default=None, repr=False)

    @property
    def boot_id(self) -> str:
        return self.meta.get("boot_id") or self.path.name

    @property
    def results(self) -> dict | None:
        """The checks' JSON results, or None when the run wrote none (pytest crashed)."""
        if self._results is None:
            try:
                self._results = json.loads((self.path / RESULTS).read_text())
            except (OSError, ValueError):
                return None
        return self._results

    def sort_key(self) -> tuple:
        # The sequence number first: at boot the clock may not be synchronised yet.
        return (self.meta.get("seq") or 0, self.meta.get("started") or "", self.path.name)


def load(path: Path) -> Record | None:
    """The record in ``path``; None when it is not a complete record."""
    try:
        meta = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        return None
    return Record(path, meta)


def list_records(runs_dir: str | os.PathLike) -> list[Record]:
    """Every complete record under ``runs_dir``, oldest first. Temp and pruned folders are
    skipped; a boot whose record was moved aside mid-replace (only without RENAME_EXCHANGE) is
    read from where it was moved."""
    root = Path(runs_dir)
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    found: dict[str, Record] = {}
    aside: dict[str, Path] = {}
    for entry in entries:
        if entry.name.startswith(OLD_PREFIX + "replace-"):
            aside[entry.name.removeprefix(OLD_PREFIX + "replace-").rsplit("-", 1)[0]] = entry
            continue
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        record = load(entry)
        if record is not None:
            found[entry.name] = record
    for name, path in aside.items():
        if name not in found and (record := load(path)) is not None:
            found[name] = record
    return sorted(found.values(), key=Record.sort_key)


@contextlib.contextmanager
def locked(runs_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the runs folder's writer lock (released by the kernel if the holder dies)."""
    root = Path(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def clean(runs_dir: str | os.PathLike) -> list[str]:
    """Remove what killed runs left (call with the lock held); returns the names removed.

    A record moved aside by an interrupted replace goes back into place first.
    """
    root = Path(runs_dir)
    removed = []
    for entry in sorted(root.glob(OLD_PREFIX + "replace-*")):
        name = entry.name.removeprefix(OLD_PREFIX + "replace-").rsplit("-", 1)[0]
        if not (root / name).exists() and load(entry) is not None:
            os.rename(entry, root / name)
            _fsync_dir(root)
    for entry in sorted(root.iterdir()):
        if entry.name.startswith((TMP_PREFIX, OLD_PREFIX)):
            _remove(entry)
            removed.append(entry.name)
    return removed


class Draft:
    """A record being written: pytest writes into :attr:`path`; :meth:`commit` publishes it."""

    def __init__(self, runs_dir: str | os.PathLike, boot: str):
        self.root = Path(runs_dir)
        self.boot_id = boot
        self.final = self.root / boot
        self.path = self.root / f"{TMP_PREFIX}{boot}-{os.getpid()}"
        if self.path.exists():
            _remove(self.path)
        self.path.mkdir(parents=True, mode=0o755)
        (self.path / LOGS).mkdir()

    @property
    def results_json(self) -> Path:
        return self.path / RESULTS

    @property
    def junit_xml(self) -> Path:
        return self.path / JUNIT

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    def commit(self, meta: dict[str, Any]) -> Record:
        """Write ``record.json``, make everything durable, and move the folder into place."""
        meta = {"schema": SCHEMA, **meta, "boot_id": self.boot_id}
        _write_durably(self.path / RECORD, json.dumps(meta, indent=2, default=str) + "\n")
        _fsync_tree(self.path)
        if self.final.exists():
            _replace_dir(self.path, self.final)
        else:
            os.rename(self.path, self.final)
        _fsync_dir(self.root)
        return Record(self.final, meta)

    def abandon(self) -> None:
        _remove(self.path)


def prune(runs_dir: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` records (call with the lock held); the names removed."""
    records = list_records(runs_dir)
    gone = []
    for record in records[: max(0, len(records) - keep)]:
        if record.path.parent != Path(runs_dir) or record.path.name.startswith("."):
            continue
        aside = record.path.with_name(f"{OLD_PREFIX}prune-{record.path.name}")
        os.rename(record.path, aside)  # out of the listing first: never half a record listed
        _fsync_dir(record.path.parent)
        _remove(aside)
        gone.append(record.path.name)
    return gone


# ---- durable file system operations ---------------------------------------------------------


def _write_durably(path: Path, text: str) -> None:
    data = text.encode()
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    with open(path, "wb") as f:
        if pause > 0:  # test hook: half the file on disk, then wait to be killed
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            print(
                f"gpubox records: test hook {PAUSE_ENV}: pausing {pause:g} s half-way through "
                f"{path}",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(pause)
            data = data[len(data) // 2 :]
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_file_atomic(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    """Write a single file via a temp file in its folder, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def _replace_dir(new: Path, final: Path) -> None:
    """Put the folder ``new`` at ``final`` (which exists) and delete the old one."""
    if _exchange(new, final):
        _fsync_dir(final.parent)
        _remove(new)  # now holds the previous record
        return
    # No RENAME_EXCHANGE (old kernel or file system): move the old record aside first; readers
    # and clean() know where to find it if this is interrupted between the two renames.
    aside = final.with_name(f"{OLD_PREFIX}replace-{final.name}-{os.getpid()}")
    os.rename(final, aside)
    os.rename(new, final)
    _fsync_dir(final.parent)
    _remove(aside)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
