"""gpubox's own pyinfra operations and facts: the few things pyinfra's stock operations don't do.

Like pyinfra's operations, each reads facts first and yields commands only when something must
change, so a second deploy yields nothing:

* :func:`apt_pinned`: install packages at version *patterns* (``nvidia-driver=550.163.01-*``)
  and hold them; stock ``apt.packages`` compares exact versions only. An install that was cut
  short (dpkg killed, a power cut) is repaired first.
* :func:`repository_reachable`: stop before a repository is used when the node cannot reach it.
* :func:`verified_download`: download into a temporary file, compare sha256, and only then move
  into place; a mismatch stops the deploy showing both hashes and leaves nothing behind.
* :func:`build_once`: run a build script into a versioned folder unless a stamp file records the
  same inputs; builds land in a temporary folder and are renamed, so a killed build is redone.
* :func:`synced_folder`: ``files.sync`` for a small folder of files in one fact (stock sync reads
  a few per file: a round trip each).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shlex

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.exceptions import OperationError
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, Sha256File

APT_ENV = "DEBIAN_FRONTEND=noninteractive"
APT_INSTALL = (
    f"{APT_ENV} apt-get install -y --allow-downgrades --allow-change-held-packages "
    "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
)


class HeldPackages(FactBase):
    """Packages marked held (``apt-mark showhold``)."""

    default = set

    def command(self):
        return "apt-mark showhold 2>/dev/null || true"

    def process(self, output):
        return {line.strip() for line in output if line.strip()}


class DpkgInterrupted(FactBase):
    """What an interrupted dpkg left behind, or None: pending journal entries (numbered files in
    ``/var/lib/dpkg/updates``, which is how apt tells "dpkg was interrupted") and the packages
    ``dpkg --audit`` finds half installed, unpacked or half configured."""

    def command(self):
        return (
            "{ ls /var/lib/dpkg/updates 2>/dev/null | grep -qE '^[0-9]+$' "
            "&& echo 'dpkg journal pending'; "
            "dpkg --audit 2>/dev/null | grep -E '^ [a-z0-9]' ; } || true"
        )

    def process(self, output):
        lines = [line.strip() for line in output if line.strip()]
        return "; ".join(lines) if lines else None


class AptState(FactBase):
    """What :func:`apt_pinned` reads, in one round trip: ``(DpkgInterrupted, DebPackages,
    HeldPackages)``, each as its own fact gives it."""

    _MARK = "--gpubox-apt-state--"

    def command(self):
        return (
            f"{DpkgInterrupted().command()}; echo {self._MARK}; "
            f"{DebPackages().command()} 2>/dev/null || true; echo {self._MARK}; "
            f"{HeldPackages().command()}"
        )

    def process(self, output):
        parts: list[list[str]] = [[]]
        for line in output:
            if line.strip() == self._MARK:
                parts.append([])
            else:
                parts[-1].append(line)
        if len(parts) != 3:
            raise OperationError(f"unexpected output from the apt state fact: {output[:5]}")
        interrupted, installed, held = parts
        return (
            DpkgInterrupted().process(interrupted),
            DebPackages().process(installed) if installed else {},
            HeldPackages().process(held),
        )


class UrlProblem(FactBase):
    """Why the node cannot fetch ``url`` (curl's or wget's error), or None when it can."""

    def command(self, url):
        q = shlex.quote(url)
        if url.startswith("file://"):  # a copy on the node: no curl needed (a netinst has none)
            path = shlex.quote(url[len("file://") :])
            return f'test -r {path} && echo ok || echo "no readable file {url[len("file://") :]}"'
        return (
            "if command -v curl >/dev/null; then "
            f"out=$(curl -sSf -o /dev/null --connect-timeout 10 --max-time 60 {q} 2>&1) "
            '&& echo ok || echo "${out:-curl: exit $?}"; '
            f"else wget -q -O /dev/null --timeout=30 --tries=1 {q} && echo ok "
            '|| echo "wget: exit $?"; fi'
        )

    def process(self, output):
        text = " ".join(line.strip() for line in output if line.strip())
        return None if text == "ok" else (text or "no answer")


class FileText(FactBase):
    """A small file's text, or None when it does not exist."""

    def command(self, path):
        q = shlex.quote(path)
        return f"test -f {q} && cat {q} || true"

    def process(self, output):
        return "\n".join(output) if output else None


# Finish an interrupted dpkg run (see apt_pinned). A status whose second letter is H (half
# installed) or whose third is R (reinstall required) cannot be configured, only reinstalled.
REPAIR_DPKG = (
    f"export {APT_ENV}; "
    "dpkg --configure -a --force-confdef --force-confold || true; "
    "broken=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' "
    "| awk '$1 ~ /^.H/ || $1 ~ /^..R/ {print $2}'); "
    'if [ -n "$broken" ]; then '
    f"{APT_INSTALL.split(' ', 1)[1]} --reinstall $broken; fi; "
    f"{APT_INSTALL.split(' ', 1)[1]} -f"
)

# An NVIDIA driver build's version (570.124.06-1, 570.124.06-0ubuntu1, 575.57.08-1): what `align`
# moves. Other packages whose names match a driver glob (nvidia-container-toolkit 1.17.4-1, ...)
# are not parts of the driver and are left alone.
_DRIVER_BUILD = re.compile(r"\d{3}\.\d{2,3}(\.\d{2})?-")


@operation()
def apt_pinned(packages: dict[str, str], hold: bool = True, align: dict[str, str] | None = None):
    """Install each package at a version matching its pattern, then hold it.

    + packages: ``{name: version pattern}``, e.g. ``{"nvidia-driver": "550.163.01-*"}``
    + hold: ``apt-mark hold`` them, so ``apt upgrade`` cannot move them
    + align: ``{name glob: version pattern}``: every *installed* driver part whose name matches
      a glob and whose version does not match is requested at the pattern too. Meta-packages
      depend on their parts with ``>=``, so going back to an older build (or repairing a part
      moved by hand) would otherwise move the meta-packages only.

    **Example:**

    .. code:: python

        apt_pinned(name="NCCL", packages={"libnccl2": "2.22.3-*", "libnccl-dev": "2.22.3-*"})
    """
    # One round trip for the usual case; after a repair the packages are read again.
    interrupted, installed, held = host.get_fact(AptState)
    if interrupted:
        # apt refuses to install anything until dpkg finishes what it was doing ("dpkg was
        # interrupted, you must manually run 'dpkg --configure -a'"). That configures what was
        # unpacked; a package caught half-way through its unpack ("very bad inconsistent state:
        # reinstall it") can only be reinstalled, at the version the pins now choose; then
        # `apt-get -f install` settles the rest and the install below does what is left.
        yield StringCommand("sh", "-c", shlex.quote(REPAIR_DPKG))
        installed = host.get_fact(DebPackages)
    wrong = []
    for name, pattern in packages.items():
        versions = installed.get(name, set())
        if not any(fnmatch.fnmatchcase(v, pattern) for v in versions):
            wrong.append(f"{name}={pattern}")
    for glob, pattern in (align or {}).items():
        for name, versions in sorted(installed.items()):
            if name in packages or not fnmatch.fnmatchcase(name, glob):
                continue
            if any(_DRIVER_BUILD.match(v) for v in versions) and not any(
                fnmatch.fnmatchcase(v, pattern) for v in versions
            ):
                wrong.append(f"{name}={pattern}")
    if wrong:
        yield f"{APT_INSTALL} " + " ".join(shlex.quote(w) for w in dict.fromkeys(wrong))
    if hold:
        if interrupted or wrong:
            # Read again after an install: `apt-get install NAME=VERSION` of a held package
            # (--allow-change-held-packages) sets its selection back to "install", i.e. unholds it.
            held = host.get_fact(HeldPackages)
        unheld = sorted(set(packages) - held)
        if unheld:
            yield "apt-mark hold " + " ".join(unheld)


@operation()
def verified_download(url: str, dest: str, sha256: str, mode: str = "644"):
    """Download ``url`` to ``dest`` only if ``dest`` is missing or its sha256 differs.

    + url: where to download from
    + dest: final path on the node
    + sha256: the pinned hash; a mismatch fails with both hashes and removes the download

    **Example:**

    .. code:: python

        verified_download(url="https://example.org/x-1.0.tar.gz", dest="/opt/src/x-1.0.tar.gz",
                          sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    """
    if host.get_fact(File, path=dest) and host.get_fact(Sha256File, path=dest) == sha256:
        return
    tmp = f"{dest}.part"
    if url.startswith("file://"):  # a local copy (an air-gapped node's mirror): no curl needed
        fetch = f"cp {shlex.quote(url[len('file://') :])} {shlex.quote(tmp)} "
    else:
        fetch = (
            f"if command -v curl >/dev/null; then curl -sSLf --retry 3 -o {shlex.quote(tmp)} "
            f"{shlex.quote(url)}; else wget -q -O {shlex.quote(tmp)} {shlex.quote(url)}; fi "
        )
    script = (
        "set -e; "
        f"mkdir -p {shlex.quote(dest.rsplit('/', 1)[0])}; "
        f"rm -f {shlex.quote(tmp)}; "
        + fetch
        + f'|| {{ rm -f {shlex.quote(tmp)}; echo "gpubox: downloading {url} failed; nothing was '
        f'installed from it" >&2; exit 1; }}; '
        f"got=$(sha256sum {shlex.quote(tmp)} | cut -d' ' -f1); "
        f'if [ "$got" != {shlex.quote(sha256)} ]; then rm -f {shlex.quote(tmp)}; '
        f'echo "gpubox: sha256 mismatch for {url}: expected {sha256}, got $got; nothing was '
        f'installed from it" >&2; exit 1; fi; '
        f"chmod {mode} {shlex.quote(tmp)}; mv -f {shlex.quote(tmp)} {shlex.quote(dest)}"
    )
    yield StringCommand("sh", "-c", shlex.quote(script))


@operation()
def build_once(stamp: str, inputs: dict, script: str, prefix: str):
    """Run ``script`` (sh) to build into ``prefix`` unless ``stamp`` records the same ``inputs``.

    The script builds into ``$STAGE`` (a fresh temporary folder next to ``prefix``); when it
    succeeds the stage is renamed to ``prefix`` and the stamp written, so an interrupted build is
    simply redone on the next deploy and a half-built tree is never used.

    **Example:**

    .. code:: python

        build_once(stamp="/opt/gpubox/tools/x/.stamp.json", inputs={"version": "1.0"},
                   script="make -C /opt/src/x && cp /opt/src/x/bin/* $STAGE/",
                   prefix="/opt/gpubox/tools/x")
    """
    wanted = json.dumps(inputs, sort_keys=True)
    current = host.get_fact(FileText, path=stamp)
    if current is not None and current.strip() == wanted:
        return
    stage = f"{prefix}.stage"
    body = (
        "set -e; "
        f"rm -rf {shlex.quote(stage)}; mkdir -p {shlex.quote(stage)}; "
        f"export STAGE={shlex.quote(stage)}; "
        f"( {script} ); "
        f"printf '%s\\n' {shlex.quote(wanted)} > {shlex.quote(stage)}/{shlex.quote(stamp.rsplit('/', 1)[1])}; "
        f"rm -rf {shlex.quote(prefix)}; mv {shlex.quote(stage)} {shlex.quote(prefix)}"
    )
    if not stamp.startswith(prefix + "/"):
        raise OperationError(f"build_once: stamp {stamp} must live inside {prefix}")
    yield StringCommand("sh", "-c", shlex.quote(body))


@operation()
def repository_reachable(url: str, sources_list: str | None = None):
    """Fail, naming the URL and the host, unless the node can fetch ``{url}Release``.

    + url: base URL of an apt repository (a flat one: ``deb URL /``)
    + sources_list: the sources entry that names it, to say whether an earlier deploy left it

    Yields nothing when the repository answers, so it never counts as a change.

    **Example:**

    .. code:: python

        repository_reachable(url="https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/")
    """
    problem = host.get_fact(UrlProblem, url=f"{url}Release")
    if problem is None:
        return
    earlier = host.get_fact(FileText, path=sources_list) if sources_list else None
    left = (
        f"apt's sources are as an earlier deploy left them ({sources_list}: {earlier.strip()})"
        if earlier
        else "nothing was added to apt's sources"
    )
    message = (
        f"gpubox: host {host.name} cannot reach the CUDA repository {url} ({problem}), expected "
        f"{url}Release to download: check the URL (software.cuda_repo.url) and the node's "
        f"network or proxy; {left}, and nothing was installed from it"
    )
    yield StringCommand("sh", "-c", shlex.quote(f"echo {shlex.quote(message)} >&2; exit 1"))


class FolderState(FactBase):
    """What :func:`synced_folder` compares, in one round trip: ``{relative path: (kind, mode,
    sha1)}`` below ``path`` (kind ``d``, ``f`` or ``l``; ``""`` is ``path`` itself), leaving
    out bytecode (``__pycache__``, ``*.pyc``); None when ``path`` is not a folder."""

    def command(self, path):
        q = shlex.quote(path)
        return (
            f"cd {q} 2>/dev/null || exit 0; "
            "find . -name __pycache__ -prune -o -type d -printf 'd %m - %P\\n' "
            "-o -type l -printf 'l - - %P\\n' -o -type f ! -name '*.pyc' -printf 'f %m - %P\\n'; "
            "find . -name __pycache__ -prune -o -type f ! -name '*.pyc' -exec sha1sum {} + "
            "| sed 's/^/s /'"
        )

    def process(self, output):
        if not output:
            return None
        state, sums = {}, {}
        for line in output:
            if line.startswith("s "):
                digest, name = line[2:].split(None, 1)
                sums[name.lstrip("*").removeprefix("./")] = digest
            elif line[:2] in ("d ", "f ", "l "):
                parts = line.split(" ", 3)  # the folder itself: no name (and no trailing space)
                state[parts[3] if len(parts) > 3 else ""] = (parts[0], parts[1], None)
        return {
            name: (kind, mode, sums.get(name) if kind == "f" else None)
            for name, (kind, mode, _) in state.items()
        }


@operation()
def synced_folder(src: str, dest: str):
    """Make ``dest`` a copy of the local folder ``src`` (files and folders, with their modes),
    deleting what ``src`` does not have; bytecode (``__pycache__``, ``*.pyc``) is neither copied
    nor deleted. One fact for the whole folder, where ``files.sync`` reads several per file.

    **Example:**

    .. code:: python

        synced_folder(name="the checks", src="checks", dest="/opt/gpubox/checks")
    """
    local: dict[str, tuple[str, str, str | None]] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, src)
        rel = "" if rel == "." else rel
        local[rel] = ("d", _mode(dirpath), None)
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.endswith(".pyc"):
                continue
            if os.path.islink(path):
                raise OperationError(f"synced_folder: {path} is a link; only files are copied")
            with open(path, "rb") as f:
                digest = hashlib.sha1(f.read()).hexdigest()
            local[os.path.join(rel, name)] = ("f", _mode(path), digest)
    remote = host.get_fact(FolderState, path=dest) or {}
    for name in sorted(set(remote) - set(local), reverse=True):  # files before their folders
        yield f"rm -rf {shlex.quote(_join(dest, name))}"
    for name, (kind, mode, digest) in local.items():
        there = remote.get(name)
        path = _join(dest, name)
        if kind == "d":
            if there is None or there[0] != "d":
                yield f"rm -rf {shlex.quote(path)}; mkdir -p {shlex.quote(path)}"
            if there is None or there[1] != mode:
                yield f"chmod {mode} {shlex.quote(path)}"
            continue
        if there is None or there[0] != "f" or there[2] != digest:
            yield FileUploadCommand(os.path.join(src, name), path)
        if there is None or there[1] != mode:
            yield f"chmod {mode} {shlex.quote(path)}"


def _mode(path: str) -> str:
    return oct(os.stat(path).st_mode & 0o7777)[2:]


def _join(dest: str, name: str) -> str:
    return f"{dest}/{name}" if name else dest
