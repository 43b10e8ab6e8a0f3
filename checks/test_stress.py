"""The stress tier, opt-in (minutes of full load): ``pytest checks/ -m stress``.

gpu-burn runs once per node (``gpubox burn --json`` on the node, ``stress.duration_s``, 300 s by
default) while every GPU is sampled through NVML once a second and the burn is stopped at any
ceiling; each test judges one GPU's share of that burn (:mod:`gpubox.judge_stress`), so every
message names the host, the GPU, expected and found. The burn document lands in the JSON
results under ``hosts[name]["burn"]`` (time series per GPU for the report).
"""

import pytest

from gpubox import judge_stress
from gpubox.checks import NodeError, check

pytestmark = pytest.mark.stress


def _baseline(node):
    """The calibrated baseline (its ``burn[gpuN]`` floors), where the plugin offers one."""
    try:
        return getattr(node, "baseline", None)
    except NodeError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None  # one line, not two


def test_burn_errors(request, node, gpu, burn):
    check(request, judge_stress.errors(node.spec, burn, gpu))


def test_burn_throughput(request, node, gpu, burn):
    check(request, judge_stress.throughput(node.spec, burn, gpu, _baseline(node)))


def test_burn_clock_held(request, node, gpu, burn):
    check(request, judge_stress.clock_held(node.spec, burn, gpu))


def test_burn_temperature(request, node, gpu, burn):
    check(request, judge_stress.temperature(node.spec, burn, gpu))


def test_burn_power(request, node, gpu, burn):
    check(request, judge_stress.power(node.spec, burn, gpu))


def test_burn_supply_budget(request, node, burn):
    check(request, judge_stress.supply_budget(node.spec, burn))
