"""The node spec: valid data round-trips; every kind of bad data names host, field and value."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox import busid
from gpubox.inventory import load
from gpubox.spec import NodeSpec, SpecError, parse_size, reference, reference_markdown

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "gpus": [{"bus_id": "04:00.0"}, {"bus_id": "05:00.0"}, {"bus_id": "0F:00.0"}],
    "clocks": {"graphics_mhz": 1140},
}


def data(**changes):
    out = copy.deepcopy(BASE)
    out.update(changes)
    return out


# (id, data, field path, bad value as it must appear in the message, words of the expectation)
BAD = [
    ("not-a-mapping", ["gpus"], "<spec>", "['gpus']", "mapping"),
    ("unknown-top-key", data(clokcs={}), "clokcs", "'clokcs'", "did you mean 'clocks'"),
    (
        "unknown-nested-key",
        data(clocks={"graphic_mhz": 1}),
        "clocks.graphic_mhz",
        "'graphic_mhz'",
        "did you mean 'graphics_mhz'",
    ),
    ("gpus-not-a-list", data(gpus="04:00.0"), "gpus", "'04:00.0'", "a list"),
    ("gpu-entry-not-mapping", data(gpus=["04:00.0"]), "gpus[0]", "'04:00.0'", "mapping"),
    (
        "malformed-bus-id",
        data(gpus=[{"bus_id": "04:00"}, {"bus_id": "zz:1.0"}]),
        "gpus[1].bus_id",
        "'zz:1.0'",
        "PCI bus id",
    ),
    (
        "bus-id-device-too-big",
        data(gpus=[{"bus_id": "04:20.0"}]),
        "gpus[0].bus_id",
        "'04:20.0'",
        "PCI bus id",
    ),
    ("bus-id-wrong-type", data(gpus=[{"bus_id": 4}]), "gpus[0].bus_id", "4", "PCI bus id"),
    ("missing-bus-id", data(gpus=[{"name": "x"}]), "gpus[0].bus_id", "None", "required"),
    (
        "duplicate-bus-id",
        data(gpus=[{"bus_id": "04:00.0"}, {"bus_id": "0000:04:00.0"}]),
        "gpus[1].bus_id",
        "'0000:04:00.0'",
        "not already used by gpus[0]",
    ),
    (
        "gpus-out-of-pci-order",
        data(gpus=[{"bus_id": "05:00.0"}, {"bus_id": "04:00.0"}]),
        "gpus[0].bus_id",
        "'0000:05:00.0'",
        "PCI bus order",
    ),
    ("count-mismatch", data(gpu_count=4), "gpu_count", "4", "the number of entries in `gpus`"),
    ("count-wrong-type", data(gpu_count="4"), "gpu_count", "'4'", "an integer"),
    ("count-bool", data(gpu_count=True), "gpu_count", "True", "an integer"),
    ("no-gpus-at-all", data(gpus=[]), "gpus", "[]", "at least one GPU"),
    (
        "pair-names-absent-gpu",
        data(p2p={"pairs": {"gpu0-gpu7": "OK"}}),
        "p2p.pairs.gpu0-gpu7",
        "'gpu7'",
        "below the GPU count 3",
    ),
    (
        "pair-with-itself",
        data(p2p={"pairs": {"gpu1-gpu1": "OK"}}),
        "p2p.pairs.gpu1-gpu1",
        "'gpu1-gpu1'",
        "two different GPUs",
    ),
    (
        "pair-given-twice",
        data(p2p={"pairs": {"gpu0-gpu1": "OK", "gpu1-gpu0": "CNS"}}),
        "p2p.pairs.gpu1-gpu0",
        "'gpu1-gpu0'",
        "each pair once",
    ),
    (
        "p2p-bad-code",
        data(p2p={"default": {"read": "YES"}}),
        "p2p.default.read",
        "'YES'",
        "one of OK, CNS",
    ),
    ("nvlink-bad-choice", data(nvlink="off"), "nvlink", "'off'", "unsupported, active"),
    (
        "clock-too-high",
        data(clocks={"graphics_mhz": 9000}),
        "clocks.graphics_mhz",
        "9000",
        "1..3000",
    ),
    ("clock-zero", data(clocks={"graphics_mhz": 0}), "clocks.graphics_mhz", "0", "1..3000"),
    (
        "clock-not-number",
        data(clocks={"graphics_mhz": "1140MHz"}),
        "clocks.graphics_mhz",
        "'1140MHz'",
        "an integer",
    ),
    (
        "memory-lock-without-graphics",
        data(clocks={"memory_mhz": 1215}),
        "clocks.memory_mhz",
        "1215",
        "graphics lock too",
    ),
    (
        "negative-h2d-floor",
        data(floors={"h2d_gbps": -3}),
        "floors.h2d_gbps",
        "-3",
        "positive number",
    ),
    (
        "zero-floor-for-one-gpu",
        data(floors={"d2h_gbps": {"gpu1": 0}}),
        "floors.d2h_gbps.gpu1",
        "0",
        "positive number",
    ),
    (
        "floor-for-absent-gpu",
        data(floors={"h2d_gbps": {"gpu9": 3}}),
        "floors.h2d_gbps.gpu9",
        "'gpu9'",
        "below the GPU count",
    ),
    (
        "floor-bad-key",
        data(floors={"p2p_gbps": {"gpu0+gpu1": 3}}),
        "floors.p2p_gbps.gpu0+gpu1",
        "'gpu0+gpu1'",
        "gpuI-gpuJ",
    ),
    (
        "allreduce-one-gpu",
        data(floors={"allreduce": [{"gpus": [0], "size": "32M", "busbw_gbps": 1}]}),
        "floors.allreduce[0].gpus",
        "[0]",
        "two or more different GPU",
    ),
    (
        "allreduce-absent-gpu",
        data(floors={"allreduce": [{"gpus": [0, 5], "size": "32M", "busbw_gbps": 1}]}),
        "floors.allreduce[0].gpus",
        "'gpu5'",
        "below the GPU count",
    ),
    (
        "allreduce-bad-size",
        data(floors={"allreduce": [{"gpus": [0, 1], "size": "32X", "busbw_gbps": 1}]}),
        "floors.allreduce[0].size",
        "'32X'",
        "message size",
    ),
    (
        "allreduce-negative-busbw",
        data(floors={"allreduce": [{"gpus": [0, 1], "size": 1024, "busbw_gbps": -1}]}),
        "floors.allreduce[0].busbw_gbps",
        "-1",
        "positive number",
    ),
    (
        "link-factor-out-of-range",
        data(floors={"link_factor": 1.5}),
        "floors.link_factor",
        "1.5",
        "0.05..1.0",
    ),
    (
        "temp-ceiling-absurd",
        data(limits={"hbm_temp_c": 500}),
        "limits.hbm_temp_c",
        "500",
        "20..120",
    ),
    ("power-negative", data(limits={"power_w": -250}), "limits.power_w", "-250", "positive"),
    ("pcie-width-bad", data(pcie={"min_width": 64}), "pcie.min_width", "64", "1..32"),
    ("os-unknown", data(software={"os": "arch"}), "software.os", "'arch'", "debian-13"),
    (
        "source-os-mismatch",
        data(software={"os": "ubuntu-24.04"}),
        "software.os",
        "'ubuntu-24.04'",
        "for source 'debian'",
    ),
    (
        "driver-version-malformed",
        data(software={"driver_version": "latest!"}),
        "software.driver_version",
        "'latest!'",
        "a version like",
    ),
    (
        "sha256-malformed",
        data(
            software={
                "nccl_tests": {
                    "version": "2.13.9",
                    "sha256": "abc",
                    "url": "https://x/{version}.tgz",
                }
            }
        ),
        "software.nccl_tests.sha256",
        "'abc'",
        "64 lower-case hex",
    ),
    (
        "download-missing-sha",
        data(software={"nccl_tests": {"version": "2.14.1", "url": "https://x/{version}.tgz"}}),
        "software.nccl_tests.sha256",
        "None",
        "required",
    ),
    (
        "bool-as-string",
        data(software={"build_kernel_modules": "yes"}),
        "software.build_kernel_modules",
        "'yes'",
        "true or false",
    ),
    (
        "relative-nvml-path",
        data(software={"nvml_library": "lib/libnvidia-ml.so.1"}),
        "software.nvml_library",
        "'lib/libnvidia-ml.so.1'",
        "absolute path",
    ),
    (
        "compute-capability-bad",
        data(software={"compute_capability": "sm_80"}),
        "software.compute_capability",
        "'sm_80'",
        "compute capability like 8.0",
    ),
    (
        "slurm.node_state",
        data(slurm={"node_state": "sometimes"}),
        "slurm.node_state",
        "'sometimes'",
        "HealthCheckNodeState: one or more of ALLOC, ANY, CYCLE",
    ),
    (
        "slurm.timeout_s",
        data(slurm={"timeout_s": 90}),
        "slurm.timeout_s",
        "90",
        "a number in 5..55",
    ),
    (
        "slurm.program",
        data(slurm={"program": "gpubox-health"}),
        "slurm.program",
        "'gpubox-health'",
        "an absolute path",
    ),
]


@pytest.mark.parametrize(
    ("bad", "path", "shown", "expected"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_input_names_host_field_value_and_expectation(bad, path, shown, expected):
    with pytest.raises(SpecError) as info:
        NodeSpec.from_data(bad, host="rig7")
    message = str(info.value)
    assert message.startswith(f"host 'rig7': {path}: "), message
    assert shown in message, message
    assert expected in message, message
    assert info.value.host == "rig7" and info.value.path == path


def test_there_are_at_least_twenty_distinct_bad_inputs():
    assert len({b[0] for b in BAD}) >= 20


def test_defaults_fill_everything_and_count_comes_from_the_list():
    spec = NodeSpec.from_data(BASE, host="rig7")
    assert spec.gpu_count == 3
    assert [g.bus_id for g in spec.gpus] == ["0000:04:00.0", "0000:05:00.0", "0000:0f:00.0"]
    assert spec.software.source == "debian" and spec.software.os == "debian-13"
    assert spec.nvlink == "unsupported"
    assert spec.p2p.expected(2, 0).read == "OK"
    assert spec.pairs() == [(0, 1), (0, 2), (1, 2)]


def test_spec_is_immutable():
    spec = NodeSpec.from_data(BASE, host="rig7")
    with pytest.raises(AttributeError):
        spec.gpu_count = 8  # type: ignore[misc]


def test_pyinfra_connection_keys_are_ignored():
    spec = NodeSpec.from_data(data(ssh_port=2222, ssh_user="root", _sudo=True), host="rig7")
    assert spec.gpu_count == 3


def test_to_data_round_trips_through_json():
    rich = data(
        p2p={"pairs": {"gpu2-gpu1": {"read": "CNS", "write": "CNS"}}},
        floors={
            "h2d_gbps": {"gpu0": 11.1, "default": 1.2},
            "p2p_gbps": 3.4,
            "allreduce": [{"gpus": [0, 1], "size": "32M", "busbw_gbps": 4.7}],
        },
        limits={"power_w": 300},
    )
    spec = NodeSpec.from_data(rich, host="rig7")
    again = NodeSpec.from_data(json.loads(json.dumps(spec.to_data())), host="rig7")
    assert again == spec
    assert spec.p2p.expected(1, 2).read == "CNS" and spec.p2p.expected(0, 1).read == "OK"
    assert spec.floors.h2d_gbps.get(0) == 11.1 and spec.floors.h2d_gbps.get(2) == 1.2
    assert spec.floors.p2p_gbps.get(2, 0) == 3.4
    assert spec.floors.allreduce[0].size == 32 * 1024 * 1024
    assert spec.floors.allreduce[0].id == "gpu0+gpu1"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("4:0.0", "0000:04:00.0"),
        ("04:00.0", "0000:04:00.0"),
        ("0000:04:00.0", "0000:04:00.0"),
        ("00000000:04:00.0", "0000:04:00.0"),
        ("00000000:0F:00.0", "0000:0f:00.0"),
        ("0001:81:00.1", "0001:81:00.1"),
    ],
)
def test_bus_ids_are_normalised(text, canonical):
    assert busid.normalise(text) == canonical


def test_sizes():
    assert parse_size("32M") == 33554432 and parse_size("1G") == 1 << 30
    assert parse_size(8) == 8 and parse_size("0") is None and parse_size("3Q") is None


def test_home_inventory_validates_with_the_first_users_node():
    (home,) = load(ROOT / "inventories" / "home.py")
    spec = home.spec
    assert spec.gpu_count == 4 and spec.gpu_name == "NVIDIA DRIVE-PG199-PROD"
    assert [busid.short(g.bus_id) for g in spec.gpus] == [
        "04:00.0",
        "05:00.0",
        "0f:00.0",
        "10:00.0",
    ]
    assert spec.nvlink == "unsupported" and spec.clocks.graphics_mhz == 1140
    assert spec.software.driver_version == "570.124.06"
    assert spec.floors.p2p_gbps.get(0, 1) > spec.floors.p2p_gbps.get(2, 3)
    assert home.data["ssh_hostname"] == "gpubox-home"


def test_home_host_name_comes_from_the_environment(tmp_path):
    code = (
        "from gpubox.inventory import load; "
        f"print(load({str(ROOT / 'inventories' / 'home.py')!r})[0].data['ssh_hostname'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"GPUBOX_HOME_HOST": "10.0.0.7", "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "10.0.0.7"


def test_reference_covers_every_field_and_the_readme_shows_it():
    paths = [row[0] for row in reference()]
    for needle in (
        "software.driver_version",
        "gpus[].bus_id",
        "p2p.pairs",
        "clocks.graphics_mhz",
        "floors.allreduce[].busbw_gbps",
        "limits.hbm_temp_c",
        "nvlink",
    ):
        assert needle in paths
    readme = (ROOT / "README.md").read_text()
    assert reference_markdown() in readme, (
        "README's inventory reference is stale: regenerate it with `gpubox spec --reference --update README.md`"
    )


def test_inventory_data_precedence_host_over_groups_over_all(tmp_path, monkeypatch):
    """The loader merges like pyinfra: host data > its groups (later wins) > group_data/all.py."""
    inv = tmp_path / "inventories"
    (inv / "group_data").mkdir(parents=True)
    (inv / "group_data" / "all.py").write_text("gpu_name = 'NVIDIA *'\nnvlink = 'active'\n")
    (inv / "group_data" / "rack.py").write_text("gpu_memory_mib = 81559\n")
    (inv / "lab.py").write_text(
        "rack = ([('n1', {'gpus': [{'bus_id': '01:00.0'}], 'nvlink': 'unsupported'}),\n"
        "         ('n2', {'gpus': [{'bus_id': '02:00.0'}]})], {'clocks': {'graphics_mhz': 1410}})\n"
    )
    monkeypatch.chdir(tmp_path)
    found = {h.name: h.spec for h in load(inv / "lab.py")}
    assert found["n1"].nvlink == "unsupported" and found["n2"].nvlink == "active"
    assert found["n1"].gpu_memory_mib == 81559 and found["n2"].clocks.graphics_mhz == 1410
    assert found["n1"].gpu_name == "NVIDIA *"
    assert [h.name for h in load(inv / "lab.py", limit=["n2"])] == ["n2"]
    with pytest.raises(KeyError, match="n9"):
        load(inv / "lab.py", limit=["n9"])


def test_slurm_is_off_by_default_with_documented_defaults():
    slurm = NodeSpec.from_data(data(), host="rig7").slurm
    assert (slurm.enabled, slurm.interval_s, slurm.node_state, slurm.program) == (
        False,
        300,
        "ANY",
        None,
    )
    assert slurm.conf_file == "/etc/slurm/slurm.conf.d/gpubox-health.conf"
    assert slurm.timeout_s == 40


def test_the_readmes_several_nodes_inventory_is_valid(tmp_path):
    """README's "Growing to several nodes" example loads as written: two hosts, one group, the
    multi-node floor on the launching host, Slurm on both."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("# inventories/lab.py\n")
    (tmp_path / "lab.py").write_text(readme[start : readme.index("```", start)])
    found = {h.name: h.spec for h in load(tmp_path / "lab.py")}
    assert sorted(found) == ["box1", "box2"]
    assert [tuple(f.hosts) for f in found["box1"].floors.multinode] == [("box1", "box2")]
    assert found["box1"].bench.mpirun.enabled and not found["box2"].floors.multinode
    assert all(s.slurm.enabled and s.software.mpi for s in found.values())
