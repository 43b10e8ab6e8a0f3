"""The install manifest on the node (``/etc/gpubox/manifest.json``): the reproducible-rebuild record."""

from __future__ import annotations

import json
from io import StringIO

from pyinfra.api import FactBase, deploy
from pyinfra.operations import files, server

from gpubox import __version__, manifest
from gpubox.spec import NodeSpec
from tasks import gpu_burn
from tasks.platforms import platform


class ManifestCurrent(FactBase):
    """Whether the node's manifest already describes it as it is (``gpubox manifest check``)."""

    def command(self, gpubox):
        return f"{gpubox} manifest check 2>/dev/null || echo stale"

    def process(self, output):
        return bool(output) and output[0].strip() == "current"


def manifest_inputs(spec: NodeSpec) -> dict:
    """What the manifest records: every pinned package, download and build of this spec."""
    sw, plat = spec.software, platform(spec)
    packages = {**plat.driver, **plat.cuda, **plat.nccl, **plat.samples_package}
    downloads = [
        {
            "url": sw.nccl_tests.resolved_url,
            "sha256": sw.nccl_tests.sha256,
            "path": f"{sw.install_dir}/src/nccl-tests-{sw.nccl_tests.version}.tar.gz",
        }
    ]
    builds = [{"path": f"{sw.install_dir}/nccl-tests/{sw.nccl_tests.version}"}]
    samples = f"{sw.install_dir}/cuda-samples/"
    if plat.samples_package:
        samples += next(iter(plat.samples_package.values())).rstrip("*")
    else:
        samples += sw.cuda_samples.version
        downloads.append(
            {
                "url": sw.cuda_samples.resolved_url,
                "sha256": sw.cuda_samples.sha256,
                "path": f"{sw.install_dir}/src/cuda-samples-{sw.cuda_samples.version}.tar.gz",
            }
        )
    builds.append({"path": samples})
    if sw.source == "debian":
        packages.update(gpu_burn.DEBIAN_PACKAGE)
    else:
        downloads.append(
            {
                "url": sw.gpu_burn.resolved_url,
                "sha256": sw.gpu_burn.sha256,
                "path": gpu_burn.tarball(spec),
            }
        )
        builds.append({"path": gpu_burn.prefix(spec)})
    if plat.keyring_url:
        downloads.append(
            {"url": plat.keyring_url, "sha256": plat.keyring_sha256, "path": plat.keyring_deb}
        )
    return {
        "gpubox_version": __version__,
        "packages": packages,
        "downloads": downloads,
        "builds": builds,
    }


@deploy("install manifest")
def install_manifest(spec: NodeSpec):
    """Upload the manifest inputs and (re)write ``/etc/gpubox/manifest.json`` when stale.

    Example::

        install_manifest(spec)
    """
    from pyinfra import host

    gpubox = f"{spec.software.install_dir}/venv/bin/gpubox"
    text = json.dumps(manifest_inputs(spec), indent=2, sort_keys=True) + "\n"
    inputs = files.put(name="manifest inputs", src=StringIO(text), dest=manifest.INPUTS)
    current = host.get_fact(ManifestCurrent, gpubox=gpubox)
    server.shell(
        name=f"write {manifest.MANIFEST}",
        commands=[f"{gpubox} manifest write"],
        _if=lambda: inputs.did_change() or not current,
    )
