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
import hashlib
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from gpubox.spec import NodeSpec
from tasks.platforms import platform

ROOT = Path(__file__).resolve().parent.parent


@cache
def artifacts() -> tuple[Path, str]:
    """Build the wheel and the hashed requirements once per deploy run (controller side)."""
    uv = shutil.which("uv")
    if uv is None:
        # Planning too (--dry): the plan compares the wheel's checksum with the node's copy.
        raise PyinfraError(
            "the deploy (--dry too) builds gpubox's wheel for the node with `uv`, which is not "
            "on PATH here: install it (https://docs.astral.sh/uv/) or run `uv run pyinfra ...`"
        )
    out = Path(tempfile.mkdtemp(prefix="gpubox-wheel-"))
    atexit.register(shutil.rmtree, out, True)  # the wheel is uploaded by then
    build = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)], capture_output=True, text=True
    )
    if build.returncode != 0:
        raise PyinfraError(f"building gpubox's wheel failed: {build.stderr[-800:]}")
    (wheel,) = out.glob("gpubox-*.whl")
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
    return wheel, export.stdout


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
    server.shell(
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
    files.sync(
        name="the checks",
        src=str(ROOT / "checks"),
        dest=f"{sw.install_dir}/checks",
        exclude=["*.pyc", "__pycache__"],
        delete=True,
    )


def _text_file(text: str):
    from io import StringIO

    return StringIO(text)
