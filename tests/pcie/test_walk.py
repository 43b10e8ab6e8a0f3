"""The PCIe path walk (gpubox.pcie_path) over sysfs trees: the simulated node's (rendered by
gpubox.sim.sysfs from a scenario), trees with what real systems lack (no root for the config
space, no AER, a VM's flat bus, a second switch level), and this machine's own /sys."""

from __future__ import annotations

import copy
import os
import struct
from pathlib import Path

import pytest

from gpubox import pcie_path
from gpubox.sim import scenario, sysfs

HEALTHY = "pg199-quad-debian13"
GPUS = ("0000:04:00.0", "0000:05:00.0", "0000:0f:00.0", "0000:10:00.0")


def tree(tmp_path: Path, doc: dict | str = HEALTHY) -> str:
    doc = scenario.load(doc) if isinstance(doc, str) else doc
    return str(sysfs.render(doc, tmp_path / "sys"))


def roles(path: dict) -> list[tuple[str, str]]:
    return [(h["bus_id"], h["role"]) for h in path["hops"]]


def test_the_first_users_two_switches(tmp_path):
    root, cache = tree(tmp_path), {}
    paths = [pcie_path.walk(bus, root, cache) for bus in GPUS]
    assert roles(paths[0]) == [
        ("0000:04:00.0", "gpu"),
        ("0000:03:08.0", "switch_downstream"),
        ("0000:02:00.0", "switch_upstream"),
        ("0000:00:01.1", "root_port"),
    ]
    assert roles(paths[3]) == [
        ("0000:10:00.0", "gpu"),
        ("0000:0e:10.0", "switch_downstream"),
        ("0000:0d:00.0", "switch_upstream"),
        ("0000:00:01.2", "root_port"),
    ]
    assert all(p["available"] and p["host_bridge"] == "pci0000:00" for p in paths)
    assert all(h["role_from"] == "config" for p in paths for h in p["hops"][1:])
    up = paths[2]["hops"][2]
    assert up["vendor"] == "10b5" and up["class"] == "060400" and up["missing"] == []
    assert up["link"] == {
        "gen": 3,
        "width": 4,
        "max_gen": 3,
        "max_width": 16,
        "speed": "8.0 GT/s PCIe",
        "max_speed": "8.0 GT/s PCIe",
    }
    # A link shows at both of its ends: the root port reads the x4 it leads to.
    assert paths[2]["hops"][3]["link"]["width"] == 4
    assert paths[2]["hops"][3]["link"]["max_width"] == 4
    # ACS: present and off on the switch's downstream ports and the root port, absent upstream.
    assert paths[2]["hops"][1]["acs"]["enabled"] == [] and up["acs"] == {"capable": False}
    assert paths[2]["hops"][0]["aer"]["correctable"] == {"total": 0, "by": {}}
    assert [lo["bus_id"] for lo, _ in pcie_path.upstream_links(paths[2])] == ["0000:0d:00.0"]
    # A switch shared by two GPUs is read once.
    assert set(cache) >= {"0000:0d:00.0", "0000:00:01.2"} and len(cache) == 12


def test_the_files_are_the_kernels(tmp_path):
    root = Path(tree(tmp_path, "fault-pcie-aer-fatal"))
    dev = root / "bus/pci/devices/0000:0e:10.0"
    assert os.readlink(dev) == "../../../devices/pci0000:00/0000:00:01.2/0000:0d:00.0/0000:0e:10.0"
    fatal = (dev / "aer_dev_fatal").read_text().splitlines()
    assert fatal[0] == "Undefined 0" and "SDES 1" in fatal and fatal[-1] == "TOTAL_ERR_FATAL 1"
    assert (dev / "current_link_speed").read_text() == "8.0 GT/s PCIe\n"
    config = (dev / "config").read_bytes()
    assert len(config) == 4096 and struct.unpack_from("<HH", config, 0) == (0x10B5, 0x8747)
    assert config[0x19:0x1B] == bytes((0x10, 0x10))  # secondary / subordinate bus: GPU3's


def test_counters_acs_and_a_narrowed_uplink(tmp_path):
    acs = pcie_path.walk("0000:0f:00.0", tree(tmp_path / "a", "fault-pcie-acs-on"))
    assert acs["hops"][1]["acs"]["enabled"] == ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"]
    assert acs["hops"][1]["acs"]["control"] == "0x001d"
    aer = pcie_path.walk("0000:05:00.0", tree(tmp_path / "b", "fault-pcie-aer-correctable"))
    assert aer["hops"][0]["aer"]["correctable"] == {
        "total": 508,
        "by": {"BadTLP": 412, "BadDLLP": 96},
    }
    assert aer["hops"][1]["aer"]["correctable"]["by"] == {"RxErr": 230}
    narrow = pcie_path.walk("0000:04:00.0", tree(tmp_path / "c", "fault-pcie-uplink-x8"))
    assert [h["link"]["width"] for h in narrow["hops"]] == [16, 16, 8, 8]


def test_roles_from_the_position_when_the_config_space_is_cut_short(tmp_path):
    """Without root, reading ``config`` gives its first 64 bytes: no PCIe capability, no ACS."""
    root = Path(tree(tmp_path))
    for config in root.glob("devices/**/config"):
        config.write_bytes(config.read_bytes()[:64])
    path = pcie_path.walk("0000:0f:00.0", str(root))
    assert roles(path)[1:] == [
        ("0000:0e:08.0", "switch_downstream"),
        ("0000:0d:00.0", "switch_upstream"),
        ("0000:00:01.2", "root_port"),
    ]
    assert {h["role_from"] for h in path["hops"][1:]} == {"position"}
    assert all(h["acs"] is None and h["port_type"] is None for h in path["hops"])


def test_two_switch_levels(tmp_path):
    """GPUs behind a switch that hangs off another switch (a chipset's, a backplane's)."""
    doc = copy.deepcopy(scenario.load(HEALTHY))
    t = doc["pcie_tree"]
    t["cs-up"] = {**t["sw-b-up"], "bus_id": "0000:0b:00.0", "parent": "rp-b", "device": "43f4"}
    t["cs-dn"] = {**t["sw-b-dn0"], "bus_id": "0000:0c:08.0", "parent": "cs-up", "device": "43f5"}
    t["sw-b-up"]["parent"] = "cs-dn"
    root = Path(tree(tmp_path, doc))
    path = pcie_path.walk("0000:10:00.0", str(root))
    expected = [
        ("0000:10:00.0", "gpu"),
        ("0000:0e:10.0", "switch_downstream"),
        ("0000:0d:00.0", "switch_upstream"),
        ("0000:0c:08.0", "switch_downstream"),
        ("0000:0b:00.0", "switch_upstream"),
        ("0000:00:01.2", "root_port"),
    ]
    assert roles(path) == expected
    assert len(pcie_path.upstream_links(path)) == 2
    for config in root.glob("devices/**/config"):
        config.write_bytes(config.read_bytes()[:64])
    assert roles(pcie_path.walk("0000:10:00.0", str(root))) == expected


def test_a_vm_bus_without_link_files_and_a_device_sysfs_does_not_show(tmp_path):
    dev = tmp_path / "sys/devices/pci0000:00/0000:00:06.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x10de\n")
    (dev / "numa_node").write_text("-1\n")
    links = tmp_path / "sys/bus/pci/devices"
    links.mkdir(parents=True)
    (links / "0000:00:06.0").symlink_to("../../../devices/pci0000:00/0000:00:06.0")
    path = pcie_path.walk("0000:00:06.0", str(tmp_path / "sys"))
    (gpu,) = path["hops"]
    assert path["available"] and gpu["role"] == "gpu" and gpu["link"] is None
    assert gpu["aer"] is None and gpu["acs"] is None and gpu["numa_node"] is None
    assert {"current_link_speed", "aer_dev_fatal", "config", "device"} <= set(gpu["missing"])
    assert pcie_path.upstream_links(path) == []
    gone = pcie_path.walk("0000:04:00.0", str(tmp_path / "sys"))
    assert gone["available"] is False and gone["hops"] == []
    assert gone["reason"].startswith(f"no {tmp_path}/sys/bus/pci/devices/0000:04:00.0")


def test_a_missing_gpu_leaves_its_port_with_a_link_that_is_down(tmp_path):
    root = tree(tmp_path, "fault-gpu-missing")
    assert not os.path.exists(os.path.join(root, "bus/pci/devices/0000:10:00.0"))
    port = pcie_path.read_device(
        os.path.join(root, "devices/pci0000:00/0000:00:01.2/0000:0d:00.0/0000:0e:10.0")
    )
    assert port["link"]["width"] == 0 and port["link"]["gen"] is None


def test_every_device_of_this_machine_walks(tmp_path):
    """The real sysfs of whatever runs the tests (a VM here): no device makes the walk fail."""
    devices = (
        sorted(os.listdir("/sys/bus/pci/devices")) if os.path.isdir("/sys/bus/pci/devices") else []
    )
    if not devices:
        pytest.skip("this machine's sysfs lists no PCI device")
    cache: dict = {}
    for bus in devices:
        path = pcie_path.walk(bus, "/sys", cache)
        assert path["available"] and path["hops"][0]["bus_id"] == bus
        assert all(h["role"] for h in path["hops"])
        assert path["host_bridge"]


@pytest.mark.parametrize(
    ("text", "gen"),
    [("8.0 GT/s PCIe", 3), ("8 GT/s", 3), ("2.5 GT/s PCIe", 1), ("16.0 GT/s PCIe", 4), ("Unknown", None), (None, None)],
)  # fmt: skip
def test_link_speed_as_a_generation(text, gen):
    assert pcie_path.generation(text) == gen


def test_aer_counters_and_a_config_space_too_short_to_read():
    text = "RxErr 3\nBadTLP 0\nBadDLLP 2\nTOTAL_ERR_COR 5\n"
    assert pcie_path.parse_aer(text, "TOTAL_ERR_COR") == {
        "total": 5,
        "by": {"RxErr": 3, "BadDLLP": 2},
    }
    assert pcie_path.parse_aer("RxErr 3\n", "TOTAL_ERR_COR")["total"] == 3  # an older kernel
    assert pcie_path.parse_config(b"\xff" * 10) == {
        "bytes": 10,
        "port_type": None,
        "acs": None,
        "aer_cap": None,
    }


def test_the_config_space_is_read_by_the_register_not_whole(tmp_path):
    """Reading all 4 KiB of ``config`` costs a config cycle per dword (19 ms for one device on
    this test machine's VM); the walk reads only the registers it needs, through a reader."""
    root = Path(tree(tmp_path, "fault-pcie-acs-on"))
    data = (root / "bus/pci/devices/0000:0e:08.0/config").read_bytes()
    asked: list[tuple[int, int]] = []

    def read(offset: int, n: int) -> bytes:
        asked.append((offset, n))
        return data[offset : offset + n]

    whole = pcie_path.parse_config(data)
    assert pcie_path.parse_config(read) == whole
    assert whole["port_type"] == "switch_downstream" and whole["acs"]["control"] == "0x001d"
    assert sum(n for _, n in asked) <= 64, asked
