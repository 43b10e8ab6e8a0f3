"""gpubox itself on the node, in its own venv: the exact controller version, every wheel hashed.

The controller builds gpubox's wheel (reproducible: same source, same bytes) and exports the
locked dependencies with their sha256s from ``uv.lock``; the node installs them with
``pip --require-hashes`` into ``{install_dir}/venv``: only what runs on the node (NVML bindings,
pytest, testinfra: gpubox's own dependencies), not the ``controller`` extra (pyinfra, xdist and
what they pull). Both need ``uv`` on the controller, a ``--dry`` plan too (it says so in one
line where ``uv`` is missing). The checks folder is copied beside it, so
``pytest checks/`` runs on the node too.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from gpubox.spec import NodeSpec
from tasks.ops import synced_folder
from tasks.platforms import platform

ROOT = Path(__file__).resolve().parent.parent


@cache
def artifacts() -> tuple[Path, str]:
    """The wheel and the hashed requirements (controller side), built once per source.

    The wheel is reproducible (same source, same bytes), so it is kept under
    ``$GPUBOX_CACHE_DIR/wheels`` keyed by a hash of what goes into it, and a deploy of unchanged
    sources skips ``uv build`` (about a second) and ``uv export``.
    """
    uv = shutil.which("uv")
    if uv is None:
        # Planning too (--dry): the plan compares the wheel's checksum with the node's copy.
        raise PyinfraError(
            "the deploy (--dry too) builds gpubox's wheel for the node with `uv`, which is not "
            "on PATH here: install it (https://docs.astral.sh/uv/) or run `uv run pyinfra ...`"
        )
    base = Path(os.environ.get("GPUBOX_CACHE_DIR") or Path.home() / ".cache" / "gpubox")
    kept = base / "wheels" / _source_key(uv)
    if kept.is_dir():
        wheels = list(kept.glob("gpubox-*.whl"))
        if len(wheels) == 1 and (kept / "requirements.txt").is_file():
            return wheels[0], (kept / "requirements.txt").read_text()
    kept.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="gpubox-wheel-", dir=kept.parent))
    atexit.register(shutil.rmtree, out, True)  # gone at exit unless kept below
    build = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)], capture_output=True, text=True
    )
    if build.returncode != 0:
        raise PyinfraError(f"building gpubox's wheel failed: {build.stderr[-800:]}")
    export = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-header",
            "--format",
            "requirements-txt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if export.returncode != 0:
        raise PyinfraError(f"exporting the locked requirements failed: {export.stderr[-800:]}")
    (out / "requirements.txt").write_text(export.stdout)
    with contextlib.suppress(OSError):  # another deploy kept the same one first: use either
        out.rename(kept)
        out = kept
    (wheel,) = out.glob("gpubox-*.whl")
    return wheel, export.stdout


def _source_key(uv: str) -> str:
    """A hash of everything the wheel and the requirements are made from (and of uv's path)."""
    h = hashlib.sha256(uv.encode())
    paths = [ROOT / name for name in ("pyproject.toml", "uv.lock", "README.md", "LICENSE")]
    paths += sorted(
        p
        for p in (ROOT / "gpubox").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    for p in paths:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"(none)")
        h.update(b"\0")
    return h.hexdigest()[:32]


@deploy("gpubox on the node")
def gpubox_venv(spec: NodeSpec):
    """Install this gpubox (same version, hash-checked dependencies) and the checks on the node.

    Example::

        gpubox_venv(spec)   # -> /opt/gpubox/venv/bin/gpubox, /opt/gpubox/checks/
    """
    sw, plat = spec.software, platform(spec)
    wheel, requirements = artifacts()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    wheels = f"{sw.install_dir}/wheels"
    venv = f"{sw.install_dir}/venv"
    remote_wheel = f"{wheels}/{wheel.name}"
    pinned = requirements + f"gpubox @ file://{remote_wheel} \\\n    --hash=sha256:{digest}\n"
    put_wheel = files.put(name=f"upload {wheel.name}", src=str(wheel), dest=remote_wheel)
    put_req = files.put(
        name="upload the hashed requirements",
        src=_text_file(pinned),
        dest=f"{wheels}/requirements.txt",
    )
    make_venv = server.shell(
        name=f"create {venv}",
        # --clear: new locked requirements get a fresh venv, so nothing they no longer list
        # (pyinfra and the rest of an older gpubox's dependencies) stays installed on the node.
        commands=[f"{plat.python} -m venv --clear {venv}"],
        _if=lambda: (
            not host.get_fact(File, path=f"{venv}/pyvenv.cfg") or put_req.did_change()
        ),  # bin/python is a link: pyvenv.cfg says a venv is there
    )
    install = server.shell(
        name="install gpubox and its locked dependencies (--require-hashes)",
        commands=[
            # pip keeps an installed gpubox of the same version number: the wheel changed, so
            # take the old one out first.
            f"{venv}/bin/pip uninstall --quiet --yes gpubox || true",
            f"{venv}/bin/pip install --quiet --disable-pip-version-check --require-hashes "
            f"--no-deps -r {wheels}/requirements.txt",
            f"{venv}/bin/gpubox --version",
        ],
        _if=[
            lambda: (
                put_wheel.did_change()
                or put_req.did_change()
                or make_venv.did_change()
                or not host.get_fact(File, path=f"{venv}/bin/gpubox")
            )
        ],
    )
    checks = f"{sw.install_dir}/checks"
    sync = synced_folder(name="the checks", src=str(ROOT / "checks"), dest=checks)
    # Bytecode for everything a check run or the probe imports, written now rather than at
    # every start (where the image sets PYTHONDONTWRITEBYTECODE nothing else ever writes it):
    # the venv's modules, and the checks as pytest rewrites them (its own .pyc names, which a
    # collection writes). A collection that fails here (no spec yet) is the checks' to report.
    server.shell(
        name="compile gpubox's bytecode",
        commands=[
            f"{venv}/bin/python -m compileall -q -j 0 {venv}/lib >/dev/null",
            f"cd {checks} && env -u PYTHONDONTWRITEBYTECODE {venv}/bin/pytest --collect-only -q "
            "-p no:cacheprovider >/dev/null 2>&1 || true",
        ],
        _if=lambda: (
            install.did_change()
            or sync.did_change()
            or not host.get_fact(Bytecode, venv=venv, checks=checks)
        ),
    )


class Bytecode(FactBase):
    """Whether the node venv's gpubox and the checks (as pytest rewrites them) are compiled."""

    def command(self, venv, checks):
        return (
            f"ls {venv}/lib/python3*/site-packages/gpubox/__pycache__/probe.*.pyc "
            f"{checks}/__pycache__/test_quick.*-pytest-*.pyc >/dev/null 2>&1 "
            "&& echo yes || echo no"
        )

    def process(self, output):
        return "yes" in output


def _text_file(text: str):
    from io import StringIO

    return StringIO(text)
