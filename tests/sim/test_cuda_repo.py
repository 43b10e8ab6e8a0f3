"""The stand-in of NVIDIA's CUDA repository (gpubox.sim.cuda_repo): built for real with dpkg-deb,
gcc and gpg on this machine, then read with Debian's own tools (dpkg-deb, gpgv)."""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gpubox.inventory import load as load_inventory
from gpubox.sim import cuda_repo

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tasks.platforms import platform  # noqa: E402

pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in (*cuda_repo.HOST_TOOLS, "gpgv")),
    reason="needs dpkg-deb, gcc, ar, gpg and gpgv (scripts/host-setup.sh)",
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return cuda_repo.build(tmp_path_factory.mktemp("cuda-repo-cache"))


def stanzas(text: str) -> list[dict[str, str]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line
            else:
                key, _, value = line.partition(": ")
                fields[key] = value
        out.append(fields)
    return out


def contents(deb: Path) -> list[str]:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    return [line.split()[5] for line in listing.splitlines()]


def test_the_same_inputs_build_the_same_bytes(repo, tmp_path):
    again = cuda_repo.build(tmp_path)

    def digests(path):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.iterdir()}

    assert digests(again.path) == digests(repo.path)
    assert again.path.name == repo.path.name  # cached under the hash of its inputs
    assert cuda_repo.build(tmp_path).path == again.path  # and found there the next time


def test_it_is_a_flat_repository_whose_index_lists_every_deb_with_its_hashes(repo):
    files = {p.name for p in repo.path.iterdir() if not p.name.startswith(".")}
    assert {"Packages", "Packages.gz", "Release", "Release.gpg", "InRelease"} <= files
    assert f"{repo.fingerprint[-8:].lower()}.pub" in files  # as NVIDIA's 3bf863cc.pub
    packages = (repo.path / "Packages").read_text()
    assert gzip.decompress((repo.path / "Packages.gz").read_bytes()).decode() == packages
    entries = stanzas(packages)
    debs = {p.name for p in repo.path.glob("*.deb")}
    assert {e["Filename"] for e in entries} == {f"./{name}" for name in debs}
    for entry in entries:
        data = (repo.path / entry["Filename"][2:]).read_bytes()
        assert entry["Size"] == str(len(data))
        assert entry["SHA256"] == hashlib.sha256(data).hexdigest()
        assert entry["MD5sum"] == hashlib.md5(data).hexdigest()
    release = (repo.path / "Release").read_text()
    for name in ("Packages", "Packages.gz"):
        data = (repo.path / name).read_bytes()
        assert f" {hashlib.sha256(data).hexdigest()} {len(data):>8} {name}" in release
    assert "Label: NVIDIA CUDA" in release  # what Ubuntu's cuda-repository-pin-600 matches


def test_the_stand_in_keyring_installs_its_key_and_nvidia_s_sources_entry(repo, tmp_path):
    deb = repo.path / "cuda-keyring_1.1-1_all.deb"
    assert hashlib.sha256(deb.read_bytes()).hexdigest() == repo.keyring_sha256
    assert [p for p in contents(deb) if not p.endswith("/")] == [
        "./etc/apt/sources.list.d/cuda-debian12-x86_64.list",
        "./usr/share/keyrings/cuda-archive-keyring.gpg",
    ]
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    entry = (tmp_path / "etc/apt/sources.list.d/cuda-debian12-x86_64.list").read_text()
    assert entry == (
        "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] "
        "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/ /\n"
    )
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    assert b"conffiles" in conffiles
    # The key it installs verifies the repository's signatures, as apt does (gpgv).
    keyring = tmp_path / "usr/share/keyrings/cuda-archive-keyring.gpg"
    for args in (["InRelease"], ["Release.gpg", "Release"]):
        check = subprocess.run(
            ["gpgv", "--keyring", str(keyring), *[str(repo.path / a) for a in args]],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0 and "Good signature" in check.stderr, check.stderr
    # ...and a tampered index does not.
    tampered = tmp_path / "Release"
    tampered.write_text((repo.path / "Release").read_text().replace("NVIDIA CUDA", "X"))
    bad = subprocess.run(
        ["gpgv", "--keyring", str(keyring), str(repo.path / "Release.gpg"), str(tampered)],
        capture_output=True,
    )
    assert bad.returncode != 0


def test_it_publishes_home_py_s_pins_and_what_an_upgrade_would_be_offered(repo):
    (home,) = load_inventory(ROOT / "inventories" / "home.py")
    spec = home.spec.__class__.from_data(
        {**home.data, "software": {**home.data["software"], "os": "debian-12"}}, host="home"
    )
    plat = platform(spec)
    published = [tuple(p.split(" ", 1)) for p in repo.packages]
    for name, pattern in {**plat.driver, **plat.cuda, **plat.nccl}.items():
        matching = [v for n, v in published if n == name and fnmatch.fnmatchcase(v, pattern)]
        assert len(matching) == 1, (name, pattern, matching)
    versions = {n: sorted(v for m, v in published if m == n) for n, _ in published}
    assert versions["cuda-drivers"] == ["570.124.06-1", "570.148.08-1", "575.57.08-1"]
    assert versions["libcuda1"] == ["570.124.06-1", "570.148.08-1", "575.57.08-1"]
    assert versions["libnccl2"] == ["2.26.2-1+cuda12.8", "2.27.3-1+cuda12.9"]
    assert versions["cuda-toolkit-12-9"] == ["12.9.1-1"]
    assert versions["cuda-toolkit-config-common"] == ["12.8.90-1", "12.9.79-1"]
    # Every driver part the pin file's globs cover: the parts are pinned by name, not by list.
    parts = {n for n, v in published if v.startswith("570.124.06") and not n.startswith("cuda-")}
    for name in parts:
        assert any(fnmatch.fnmatchcase(name, g) for g in plat.driver_globs), name


def test_cuda_drivers_570_depends_on_its_parts_with_at_least(repo):
    entries = {
        (e["Package"], e["Version"]): e for e in stanzas((repo.path / "Packages").read_text())
    }
    meta = entries[("cuda-drivers-570", "570.124.06-1")]["Depends"]
    assert "nvidia-driver (>= 570.124.06)" in meta and "libcuda1 (>= 570.124.06)" in meta
    driver = entries[("nvidia-driver", "570.124.06-1")]["Depends"]
    assert "nvidia-kernel-dkms (= 570.124.06-1) | nvidia-kernel-570.124.06" in driver
    assert entries[("cuda-drivers", "575.57.08-1")]["Depends"] == "cuda-drivers-575 (= 575.57.08-1)"
    assert (
        entries[("libnccl-dev", "2.26.2-1+cuda12.8")]["Depends"] == "libnccl2 (= 2.26.2-1+cuda12.8)"
    )


def test_every_dependency_is_published_here_or_provided(repo):
    entries = stanzas((repo.path / "Packages").read_text())
    names = {e["Package"] for e in entries}
    names |= {p.split()[0] for e in entries for p in e.get("Provides", "").split(", ") if p}
    for entry in entries:
        for clause in filter(None, entry.get("Depends", "").split(", ")):
            alternatives = [re.sub(r"\s*\(.*\)", "", a).strip() for a in clause.split("|")]
            assert any(a in names for a in alternatives), (entry["Package"], clause)


def test_no_package_puts_an_nvml_library_anywhere(repo):
    for deb in repo.path.glob("*.deb"):
        assert not [p for p in contents(deb) if "libnvidia-ml" in p], deb.name
    nvml = repo.path / "libnvidia-ml1_570.124.06-1_amd64.deb"
    assert [p for p in contents(nvml) if not p.endswith("/")] == []  # an empty shell


def test_headers_and_nvcc_carry_their_package_s_versions(repo, tmp_path):
    for deb in ("libnccl-dev_2.27.3-1+cuda12.9_amd64.deb", "cuda-nvcc-12-8_12.8.93-1_amd64.deb"):
        subprocess.run(["dpkg-deb", "-x", str(repo.path / deb), str(tmp_path)], check=True)
    nccl = (tmp_path / "usr/include/nccl.h").read_text()
    assert "#define NCCL_MAJOR 2\n#define NCCL_MINOR 27\n#define NCCL_PATCH 3\n" in nccl
    nvcc = (tmp_path / "usr/local/cuda-12.8/bin/nvcc").read_text()
    assert "release 12.8, V12.8.93" in nvcc and "@" not in nvcc


def test_the_stub_libraries_need_no_c_library(repo, tmp_path):
    deb = repo.path / "libcuda1_570.124.06-1_amd64.deb"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    lib = tmp_path / "usr/lib/x86_64-linux-gnu/libcuda.so.1"
    dynamic = subprocess.run(["readelf", "-dW", str(lib)], capture_output=True, text=True).stdout
    assert "Library soname: [libcuda.so.1]" in dynamic
    assert "NEEDED" not in dynamic  # loads on any x86-64 Linux, whatever its glibc


def test_the_server_answers_as_a_web_server_would(repo):
    server = cuda_repo.Server(repo)
    try:
        # apt's spellings of Packages' "./x.deb" and of "+" in a version
        for path in ("./cuda-keyring_1.1-1_all.deb", "./libnccl2_2.26.2-1%2bcuda12.8_amd64.deb"):
            with urllib.request.urlopen(server.url + path) as answer:
                assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(server.url + "no-such.deb")
        data = server.spec_data()
        assert data["cuda_repo"] == {
            "url": server.url,
            "keyring": {"sha256": repo.keyring_sha256},
        }
        with urllib.request.urlopen(
            data["gpu_burn"]["url"].replace("{version}", data["gpu_burn"]["version"])
        ) as answer:
            assert hashlib.sha256(answer.read()).hexdigest() == data["gpu_burn"]["sha256"]
    finally:
        server.stop()
