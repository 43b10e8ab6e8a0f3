"""The node's manifest: what the deploy installed, from which spec, with every version and hash.

The deploy uploads the *inputs* (packages with their pinned patterns, downloads with their
sha256, build folders) and runs ``gpubox manifest write`` on the node, which reads what is
really installed and writes ``/etc/gpubox/manifest.json`` (deterministic: no timestamps, so an
unchanged node keeps a byte-identical manifest). The quick check ``test_manifest`` compares it,
and the live package versions, with the spec: the reproducible-rebuild guarantee.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
from pathlib import Path

MANIFEST = "/etc/gpubox/manifest.json"
INPUTS = "/etc/gpubox/manifest-inputs.json"
SCHEMA = "gpubox.manifest/1"


def installed_versions(packages) -> dict[str, str | None]:
    """``dpkg-query`` versions of ``packages`` (None when not installed)."""
    names = sorted(packages)
    if not names:
        return {}
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Status}\\n", *names],
        capture_output=True,
        text=True,
    )
    found = {}
    for line in result.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        found[name] = version if status == "installed" else None
    return {name: found.get(name) for name in names}


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def build(inputs: dict, spec: dict) -> dict:
    """The manifest document for ``inputs`` as the node is now."""
    versions = installed_versions(inputs.get("packages", {}))
    packages = {
        name: {
            "pattern": pattern,
            "installed": versions.get(name),
            "matches": versions.get(name) is not None
            and fnmatch.fnmatchcase(versions[name], pattern),
        }
        for name, pattern in sorted(inputs.get("packages", {}).items())
    }
    downloads = [
        {**d, "found_sha256": _sha256(Path(d["path"]))} for d in inputs.get("downloads", [])
    ]
    builds = []
    for b in inputs.get("builds", []):
        folder = Path(b["path"])
        stamp = folder / ".gpubox-build.json"
        binaries = (
            {
                p.name: _sha256(p)
                for p in sorted(folder.iterdir())
                if p.is_file() and os.access(p, os.X_OK)
            }
            if folder.is_dir()
            else {}
        )
        builds.append(
            {
                "path": b["path"],
                "inputs": json.loads(stamp.read_text()) if stamp.is_file() else None,
                "binaries": binaries,
            }
        )
    return {
        "schema": SCHEMA,
        "gpubox_version": inputs.get("gpubox_version"),
        "spec": spec,
        "packages": packages,
        "downloads": downloads,
        "builds": builds,
    }


def write(
    inputs_path: str = INPUTS, spec_path: str = "/etc/gpubox/spec.json", out_path: str = MANIFEST
) -> bool:
    """Write the manifest if it differs from the file; True when it changed."""
    inputs = json.loads(Path(inputs_path).read_text())
    spec = json.loads(Path(spec_path).read_text())
    text = json.dumps(build(inputs, spec), indent=2, sort_keys=True) + "\n"
    out = Path(out_path)
    if out.is_file() and out.read_text() == text:
        return False
    from gpubox.records import write_file_atomic as write_atomic

    write_atomic(out, text)
    return True


def is_current(
    inputs_path: str = INPUTS, spec_path: str = "/etc/gpubox/spec.json", out_path: str = MANIFEST
) -> bool:
    try:
        inputs = json.loads(Path(inputs_path).read_text())
        spec = json.loads(Path(spec_path).read_text())
        text = json.dumps(build(inputs, spec), indent=2, sort_keys=True) + "\n"
        return Path(out_path).read_text() == text
    except (OSError, ValueError):
        return False
