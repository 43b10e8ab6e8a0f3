"""Floors: the PCIe table, the pass/warn/fail rule, and where each floor comes from."""

from __future__ import annotations

import pytest

from gpubox import floors
from gpubox.baseline import Baseline, build
from gpubox.spec import NodeSpec


def bare_spec(**data) -> NodeSpec:
    return NodeSpec.from_data({"gpu_count": 4, **data}, host="box")


@pytest.mark.parametrize(
    ("gen", "width", "gbps"),
    [(1, 16, 4.0), (2, 16, 8.0), (3, 16, 15.76), (3, 8, 7.88), (3, 4, 3.94), (4, 16, 31.5),
     (5, 16, 63.01), (6, 16, 126.03)],
)  # fmt: skip
def test_theoretical_per_direction_bandwidth_of_a_link(gen, width, gbps):
    assert floors.link_gbps(gen, width) == gbps


def test_unknown_link_has_no_bandwidth():
    assert floors.link_gbps(None, 16) is None and floors.link_gbps(3, None) is None
    assert floors.link_gbps(9, 16) is None


@pytest.mark.parametrize(
    ("measured", "level"),
    [(9.99, "fail"), (10.0, "warn"), (10.49, "warn"), (10.5, "pass"), (40.0, "pass")],
)
def test_pass_at_105_percent_warn_between_fail_below(measured, level):
    assert floors.level(measured, 10.0) == level


def test_equivalent_width_names_the_link_a_figure_fits():
    assert floors.equivalent_width(13.1, 3) == 16
    assert floors.equivalent_width(6.5, 3) == 8
    assert floors.equivalent_width(3.3, 3) == 4
    assert floors.equivalent_width(3.3, 4) == 2


def test_keys_and_sizes():
    spec = bare_spec(floors={"allreduce": [{"gpus": [0, 1], "size": "32M", "busbw_gbps": 5}]})
    assert floors.host_key("h2d", 2) == "h2d[gpu2]"
    assert floors.p2p_key(3, 1) == "p2p[gpu1-gpu3]"
    assert floors.allreduce_key(spec.floors.allreduce[0]) == "allreduce[gpu0+gpu1]@32M"
    assert [floors.format_size(s) for s in (1024, 3 * 1024**3, 1000)] == ["1K", "3G", "1000"]


def test_explicit_per_gpu_floor_then_the_spec_default(snap):
    spec = bare_spec(floors={"h2d_gbps": {"gpu0": 11.0, "default": 2.0}, "d2h_gbps": 9.0})
    first = floors.host_floor(spec, snap(), "h2d", 0)
    assert (first.gbps, first.source, first.detail) == (11.0, "spec", "spec floors.h2d_gbps.gpu0")
    other = floors.host_floor(spec, snap(), "h2d", 2)
    assert (other.gbps, other.detail) == (2.0, "spec floors.h2d_gbps")
    assert floors.host_floor(spec, snap(), "d2h", 3).gbps == 9.0


def test_link_derived_floor_uses_the_current_link_times_the_factor(snap):
    spec = bare_spec()
    floor = floors.host_floor(spec, snap(widths={1: 8}), "h2d", 1)
    assert floor.source == "link" and floor.gbps == round(7.88 * 0.75, 2)
    assert floor.detail == "Gen3 x8 link: 7.88 GB/s x link_factor 0.75"
    wide = floors.host_floor(bare_spec(floors={"link_factor": 0.8}), snap(), "d2h", 0)
    assert wide.gbps == round(15.76 * 0.8, 2)


def test_p2p_floor_follows_the_slower_link_of_the_pair(snap):
    floor = floors.p2p_floor(bare_spec(), snap(widths={3: 4}), 2, 3)
    assert floor.gbps == round(3.94 * 0.75, 2)
    assert "gpu3 Gen3 x4" in floor.detail
    explicit = bare_spec(floors={"p2p_gbps": {"gpu0-gpu1": 10.0, "default": 3.0}})
    assert floors.p2p_floor(explicit, snap(), 1, 0).detail == "spec floors.p2p_gbps.gpu0-gpu1"
    assert floors.p2p_floor(explicit, snap(), 2, 3).detail == "spec floors.p2p_gbps"


def test_no_floor_without_spec_baseline_or_readable_link():
    floor = floors.host_floor(bare_spec(), None, "h2d", 0)
    assert floor.gbps is None and floor.source == "none"
    assert floors.p2p_floor(bare_spec(), None, 0, 1).gbps is None


def test_baseline_floor_applies_where_the_spec_gives_none(snap):
    doc = build({"h2d[gpu0]": [13.0, 13.2, 13.1], "p2p[gpu0-gpu1]": [12.9]}, 0.15, 3, "box")
    baseline = Baseline.from_document(doc, "box", "/etc/gpubox/baseline.json")
    floor = floors.host_floor(bare_spec(), snap(), "h2d", 0, baseline)
    assert floor.source == "baseline" and floor.gbps == pytest.approx(13.1 * 0.85)
    assert "median 13.1 GB/s - 15%" in floor.detail
    assert floors.p2p_floor(bare_spec(), snap(), 0, 1, baseline).source == "baseline"
    # no baseline entry for gpu1: the link
    assert floors.host_floor(bare_spec(), snap(), "h2d", 1, baseline).source == "link"
    # an explicit floor beats the baseline
    spec = bare_spec(floors={"h2d_gbps": 5.0})
    assert floors.host_floor(spec, snap(), "h2d", 0, baseline).source == "spec"


def test_allreduce_floors_are_explicit():
    spec = bare_spec(floors={"allreduce": [{"gpus": [0, 1], "size": 1024, "busbw_gbps": 5}]})
    floor = floors.allreduce_floor(spec, spec.floors.allreduce[0])
    assert (floor.gbps, floor.detail) == (5.0, "spec floors.allreduce[0]")
