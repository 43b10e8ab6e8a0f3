"""What gpubox installs where: the node's venv gets only what runs on the node, the controller
extra the deploy's and the workstation's tools, the dev environment everything; the wheel states
its license the PEP 639 way. Built for real (``uv build``, ``uv export``), as the deploy does."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what runs on the node (jinja2: `gpubox report` renders its page there too)
NODE = {"nvidia-ml-py", "pytest", "pytest-testinfra", "jinja2", "markupsafe"}
CONTROLLER_ONLY = {
    "pyinfra", "paramiko", "pytest-xdist", "gevent", "cryptography", "bcrypt", "pynacl",
    "execnet", "click", "pydantic", "invoke", "typeguard",
}  # fmt: skip

uv = shutil.which("uv")
needs_uv = pytest.mark.skipif(uv is None, reason="needs uv (the deploy builds with it)")


def names(requirements: str) -> set[str]:
    return {
        m.group(1).lower()
        for line in requirements.splitlines()
        if (m := re.match(r"([A-Za-z0-9_.-]+)==", line))
    }


@pytest.fixture(scope="module")
def artifacts():
    sys.path.insert(0, str(ROOT))
    from tasks.gpubox_venv import artifacts

    return artifacts()


@needs_uv
def test_the_node_venv_gets_only_what_runs_on_the_node(artifacts):
    _, requirements = artifacts
    found = names(requirements)
    assert found >= NODE, found
    assert not found & CONTROLLER_ONLY, found & CONTROLLER_ONLY
    blocks = re.split(r"\n(?=\S)", requirements.strip())
    pinned = [b for b in blocks if "==" in b.split()[0]]
    assert pinned and all("--hash=sha256:" in b for b in pinned), pinned  # --require-hashes


@needs_uv
def test_the_wheel_states_its_license_the_pep_639_way(artifacts):
    wheel, _ = artifacts
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = z.read(meta).decode()
        licenses = [n for n in z.namelist() if "/licenses/" in n]
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert any(n.endswith("/licenses/LICENSE") for n in licenses), licenses
    requires = {
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    }
    assert any(r.startswith("pyinfra") and "extra == 'controller'" in r for r in requires), requires
    assert "Provides-Extra: controller" in metadata


@needs_uv
def test_the_dev_environment_has_everything():
    out = subprocess.run(
        [uv, "export", "--frozen", "--no-emit-project", "--no-header"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = names(out.stdout)
    assert NODE | {"pyinfra", "pytest-xdist", "jinja2", "ruff", "prometheus-client"} <= found


def test_the_deploy_tasks_do_not_import_the_pytest_plugin():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import pkgutil, importlib; "
        "[importlib.import_module('tasks.' + m.name) for m in pkgutil.iter_modules([sys.argv[1] + '/tasks'])]; "
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith(('gpubox.checks', '_pytest'))))"
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


@needs_uv
def test_the_wheel_carries_the_report_templates(artifacts):
    wheel, _ = artifacts
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    folder = ROOT / "gpubox" / "templates" / "report"
    templates = {f"gpubox/templates/report/{p.name}" for p in folder.iterdir()}
    assert templates and templates <= names, templates - names
