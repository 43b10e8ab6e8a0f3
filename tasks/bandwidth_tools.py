"""bandwidthTest and p2pBandwidthLatencyTest, built from pinned CUDA samples sources."""

from __future__ import annotations

import shlex

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.spec import NodeSpec
from tasks.ops import apt_pinned, build_once, verified_download
from tasks.platforms import gencode, platform

# Paths inside a cuda-samples tree (upstream tags up to 12.4, and Debian's package).
SAMPLES = {
    "bandwidthTest": "Samples/1_Utilities/bandwidthTest/bandwidthTest.cu",
    "p2pBandwidthLatencyTest": "Samples/5_Domain_Specific/p2pBandwidthLatencyTest/p2pBandwidthLatencyTest.cu",
}
TOOLS = ("bandwidthTest", "p2pBandwidthLatencyTest")


@deploy("bandwidth tools")
def bandwidth_tools(spec: NodeSpec):
    """Build the two CUDA samples into ``{install_dir}/cuda-samples/{version}`` and link them.

    Debian 13 ships their sources (``nvidia-cuda-samples``); on the ``cuda-repo`` path the
    pinned upstream release is downloaded and sha256-verified.

    Example::

        bandwidth_tools(spec)
    """
    sw, plat = spec.software, platform(spec)
    if plat.samples_package:
        apt_pinned(name="CUDA samples sources", packages=plat.samples_package)
        version = next(iter(plat.samples_package.values())).rstrip("*")
        unpack = f"root={shlex.quote(plat.samples_root)}; "
        inputs = {"source": plat.samples_package}
    else:
        release = sw.cuda_samples
        version = release.version
        tarball = f"{sw.install_dir}/src/cuda-samples-{version}.tar.gz"
        verified_download(
            name=f"cuda-samples {version} source (sha256-verified)",
            url=release.resolved_url,
            dest=tarball,
            sha256=release.sha256,
        )
        unpack = (
            "root=$(mktemp -d); trap 'rm -rf \"$root\"' EXIT; "
            f'tar -xzf {shlex.quote(tarball)} -C "$root" --strip-components=1; '
        )
        inputs = {"version": version, "sha256": release.sha256}
    prefix = f"{sw.install_dir}/cuda-samples/{version}"
    nvcc = f"{plat.cuda_home}/bin/nvcc"
    compile_each = "; ".join(
        f'{nvcc} -ccbin {plat.cxx} -O2 -I "$root/Common" {gencode(spec)} '
        f'-o "$STAGE/{tool}" "$root/{path}"'
        for tool, path in SAMPLES.items()
    )
    build_once(
        name=f"build bandwidthTest and p2pBandwidthLatencyTest for {gencode(spec)}",
        stamp=f"{prefix}/.gpubox-build.json",
        inputs={**inputs, "gencode": gencode(spec), "cuda": sw.cuda_version, "cxx": plat.cxx},
        script=unpack + compile_each,
        prefix=prefix,
    )
    for tool in TOOLS:
        files.link(
            name=f"link {tool}", path=f"{sw.install_dir}/bin/{tool}", target=f"{prefix}/{tool}"
        )
