"""gpu-fryer parser: every shared sample (figures read off the files) and the error paths."""

from __future__ import annotations

import json

import pytest

from gpubox.parsers import gpu_fryer
from gpubox.parsers.common import ParseError

DIR = "gpu-fryer"
NO_THROTTLING = {"hw": False, "thermal_sw": False, "thermal_hw": False}


def report(index, gflops, low, high, dev, temp, tmin, tmax, verdict):
    return {
        "index": index,
        "gflops": gflops,
        "gflops_min": low,
        "gflops_max": high,
        "gflops_dev": dev,
        "temp_c": temp,
        "temp_min_c": tmin,
        "temp_max_c": tmax,
        "throttling": NO_THROTTLING,
        "errors": None,
        "verdict": verdict,
    }


def progress_only(index, gflops, temp):
    return {
        "index": index,
        "gflops": gflops,
        "gflops_min": None,
        "gflops_max": None,
        "gflops_dev": None,
        "temp_c": temp,
        "temp_min_c": None,
        "temp_max_c": None,
        "throttling": None,
        "errors": None,
        "verdict": None,
    }


# file -> expected values, read off the sample.
EXPECTED = {
    "1xT4-final-report-tail-real-stddev.txt": dict(
        ok=True,
        healthy=True,
        gpus=[report(0, 4444.0, 4398.05, 5497.56, 224.44, 35.58, 32.0, 38.0, "OK")],
        n_progress=0,
        errors=[],
    ),
    "4gpu-FAIL-zero-gflops-u64max-min-wrongly-healthy.txt": dict(
        ok=False,
        healthy=True,
        gpus=[
            report(i, 0.0, 18446744073.71, 0.0, 0.0, 0.0, 18446744073709551616.0, 0.0, "OK")
            for i in range(4)
        ],
        n_progress=0,
        errors=[],
    ),
    "8gpu-bf16-progress-lines-only-excerpt.txt": dict(
        ok=False,
        healthy=None,
        # the fourth (last) progress line
        gpus=[
            progress_only(i, float(gf), t)
            for i, (gf, t) in enumerate(
                [
                    (763061, 58),
                    (763061, 60),
                    (753165, 60),
                    (753165, 55),
                    (755364, 52),
                    (755364, 59),
                    (763061, 57),
                    (753165, 59),
                ]
            )
        ],
        n_progress=4,
        errors=[],
    ),
    "readme-gpu7-fp32-final-report-elided.txt": dict(
        ok=True,
        healthy=True,
        gpus=[report(7, 51494.0, 50577.53, 51677.05, 51493.79, 48.83, 47.0, 50.0, "OK")],
        n_progress=0,
        errors=[],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = gpu_fryer.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is exp["ok"]
    assert out["healthy"] is exp["healthy"]
    assert out["gpus"] == exp["gpus"]
    assert len(out["progress"]) == exp["n_progress"]
    assert out["errors"] == exp["errors"]
    json.dumps(out)


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new gpu-fryer fixtures need expected values here"


def test_zero_work_is_flagged_although_called_healthy(fixture_text):
    out = gpu_fryer.parse(
        fixture_text(f"{DIR}/4gpu-FAIL-zero-gflops-u64max-min-wrongly-healthy.txt")
    )
    assert "GPU 0: no work done (0 Gflops/s) although gpu-fryer calls it healthy" in out["warnings"]
    assert (
        "GPU 3: min 18446744073.71 above max 0.0: the run collected no samples" in out["warnings"]
    )


def test_progress_lines(fixture_text):
    out = gpu_fryer.parse(fixture_text(f"{DIR}/8gpu-bf16-progress-lines-only-excerpt.txt"))
    first = out["progress"][0]["gpus"]
    assert (first[0]["ops"], first[0]["gflops"], first[0]["temp_c"]) == (692, 760862.0, 57)
    assert {g["throttling"] for p in out["progress"] for g in p["gpus"]} == {None}
    assert "no health verdict (the run was cut short or the output truncated)" in out["warnings"]


# --- synthetic variants (gpu-fryer's own formats, src/logging.rs at 704ba85) ---------------------

RUN = """Detected GPU #0: "NVIDIA H100 80GB HBM3" (GPU-1234)
Detected GPU #1: "NVIDIA H100 80GB HBM3" (GPU-5678)
Creating random matrices
Matrices created
Using precision(s):  BF16
GPU #0: Using 75000 MB
GPU #1: Using 75000 MB
700 (770000 Gflops/s) - 500 (550000 Gflops/s) | Temperatures: 61°C - 88°C | Throttling: None - Thermal SW
GPU #0: 770000 Gflops/s (min: 760000.00, max: 780000.00, dev: 1000.00)
         Temperature: 61.00°C (min: 50.00, max: 62.00)
         Throttling HW: false, Thermal SW: false, Thermal HW: false
GPU #1: 550000 Gflops/s (min: 500000.00, max: 600000.00, dev: 9000.00)
         Temperature: 88.00°C (min: 50.00, max: 89.00)
         Throttling HW: false, Thermal SW: true, Thermal HW: false
Some GPUs are not healthy. Reasons:
  - GPU 1 - GPU is throttled. Check the throttling reasons and temperatures
Freeing GPUs...
Error: Some GPUs are not healthy
"""


def test_unhealthy_gpu_is_named():
    out = gpu_fryer.parse(RUN)
    assert out["ok"] is False and out["healthy"] is False
    assert out["precisions"] == ["BF16"] and out["memory_mb"] == {0: 75000, 1: 75000}
    assert [d["uuid"] for d in out["devices"]] == ["GPU-1234", "GPU-5678"]
    assert [(x["index"], x["verdict"]) for x in out["gpus"]] == [(0, None), (1, "FAULTY")]
    assert out["gpus"][1]["throttling"]["thermal_sw"] is True
    assert out["progress"][0]["gpus"][1]["throttling"] == "Thermal SW"
    assert out["problems"] == [
        {"gpu": 1, "reason": "GPU is throttled. Check the throttling reasons and temperatures"}
    ]
    assert out["errors"][-1] == "Error: Some GPUs are not healthy"


def test_json_lines():
    lines = [
        {"type": "detected_gpus", "detected_gpus": [{"index": 0, "name": "H100", "uuid": "GPU-1"}]},
        {
            "type": "progress",
            "gpus": [{"gpu_idx": 0, "nops": 5, "flops": 7.5e14, "temp_celsius": 60}],
        },
        {"type": "results", "gpus": [{"burn_result": {"gpu_idx": 0}, "flops_avg": 7.4e14}]},
        {"type": "problems", "problems": []},
    ]
    out = gpu_fryer.parse("\n".join(json.dumps(x) for x in lines) + "\nFreeing GPUs...\n")
    assert out["ok"] is True
    assert [(x["index"], x["gflops"], x["verdict"]) for x in out["gpus"]] == [(0, 740000.0, "OK")]


def test_damaged_progress_line_names_its_line():
    with pytest.raises(ParseError) as info:
        gpu_fryer.parse("Matrices created\n700 (770000 Gflops/s) - 5 | Temperatures: 61°C\n")
    assert info.value.line_no == 2
    assert str(info.value).startswith("gpu-fryer: line 2: expected a progress line")


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError, match=r"gpu-fryer: line 1: expected gpu-fryer output"):
        gpu_fryer.parse("lorem ipsum\n")
