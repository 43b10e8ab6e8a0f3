"""gpu-burn parser: every shared sample (figures read off the files) and the error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpubox.parsers import gpu_burn
from gpubox.parsers.common import ParseError

DIR = "gpu-burn"
ROOT = Path(__file__).resolve().parents[2]
W = -524288000  # the 16-GPU sample's wrapped error count, printed with (WARNING!)


def g(index, gflops, processed, errors, temp, verdict, *, died=False, warning=False, max_temp=None):
    return {
        "index": index,
        "gflops": gflops,
        "processed": processed,
        "errors": errors,
        "died": died,
        "warning": warning,
        "temp_c": temp,
        "max_temp_c": temp if max_temp is None else max_temp,
        "verdict": verdict,
    }


# file -> expected values, read off the sample: ok, run_seconds, precision, tensor_cores,
# tested, gpus, errors (failure lines as printed), device names, progress percents.
EXPECTED = {
    "16gpu-FAIL-FAULTY-negative-error-counts-warning-exit-0.txt": dict(
        ok=False,
        run_seconds=None,
        precision=None,
        tensor_cores=None,
        tested=16,
        gpus=[
            g(i, float(gf), p, e, t, "FAULTY", warning=e != 0)
            for i, (gf, p, e, t) in enumerate(
                [
                    (6311, 18000, 0, 51),
                    (6440, 12600, W, 45),
                    (6490, 11700, W, 48),
                    (6457, 11700, W, 50),
                    (6451, 11700, W, 49),
                    (6454, 10800, 0, 46),
                    (6446, 10800, 0, 46),
                    (6461, 10800, 0, 50),
                    (6480, 10800, 0, 51),
                    (6411, 10800, W, 47),
                    (6660, 10800, 0, 46),
                    (6532, 11700, W, 50),
                    (6523, 10800, 0, 50),
                    (6490, 10800, 0, 47),
                    (6432, 10800, W, 47),
                    (6439, 10800, 0, 52),
                ]
            )
        ],
        errors=[f"GPU {i}: FAULTY" for i in range(16)],
        devices=[],
        percents=[100.0],
    ),
    "1gpu-FAIL-DIED-no-clients-alive-HAMi-core-shim-noise.txt": dict(
        ok=False,
        run_seconds=None,
        precision="single",
        tensor_cores=False,
        tested=None,
        gpus=[g(0, 0.0, -1, None, 38, None, died=True)],
        errors=["No clients are alive!  Aborting"],
        devices=[],
        percents=[50.0],
    ),
    "1xRTXA500-single-gpu-progress-only-no-verdict.txt": dict(
        ok=False,
        run_seconds=10,
        precision="single",
        tensor_cores=False,
        tested=None,
        gpus=[g(0, 3519.0, 30, 0, 53, None)],
        errors=[],
        devices=["NVIDIA RTX A500 Embedded GPU"],
        percents=[60.0, 90.0, 100.0],
    ),
    "2gpu-K40m-M4000-doubles-2018-old-format-excerpt.txt": dict(
        ok=False,
        run_seconds=None,
        precision="double",
        tensor_cores=False,
        tested=None,
        gpus=[g(0, 74.0, 446, 0, 93, None), g(1, 423.0, 6636, 0, 57, None)],
        errors=[],
        devices=["Tesla K40m", "Quadro M4000"],
        percents=[10.4],
    ),
    "2gpu-T400-TITAN-RTX-doubles-burning-first-full-run.txt": dict(
        ok=True,
        run_seconds=3600,
        precision="double",
        tensor_cores=False,
        tested=2,
        gpus=[g(0, 510.0, 106371, 0, 78, "OK"), g(1, 44.0, 8946, 0, 74, "OK")],
        errors=[],
        devices=["NVIDIA T400", "NVIDIA TITAN RTX"],
        percents=[10.0, 20.1, 30.2, 40.2, 50.3, 60.4, 70.5, 80.5, 90.6, 100.0],
    ),
    "2xGTX1080-docker-zsh-prompt-progress-excerpt.txt": dict(
        ok=False,
        run_seconds=None,
        precision=None,
        tensor_cores=None,
        tested=None,
        gpus=[g(0, 6981.0, 19366, 0, 63, None), g(1, 6485.0, 18648, 0, 83, None)],
        errors=[],
        devices=["NVIDIA GeForce GTX 1080", "NVIDIA GeForce GTX 1080"],
        percents=[11.7, 23.3, 35.0, 46.7, 58.3, 68.3, 80.0],
    ),
    "2xK80-docker-doubles-child-output-interleaved-prompt.txt": dict(
        ok=True,
        run_seconds=10,
        precision="double",
        tensor_cores=False,
        tested=2,
        gpus=[g(0, 735.0, 316, 0, 74, "OK"), g(1, 786.0, 632, 0, 53, "OK")],
        errors=[],
        devices=["Tesla K80", "Tesla K80"],
        percents=[70.0, 100.0, 100.0],
    ),
    "2xRTX3080Ti-FAIL-terminate-called-no-cuda-devices-old-run-length-msg.txt": dict(
        ok=False,
        run_seconds=10,
        precision=None,
        tensor_cores=None,
        tested=None,
        gpus=[],
        errors=[
            "terminate called after throwing an instance of 'std::__cxx11::basic_string<char, "
            "std::char_traits<char>, std::allocator<char> >'",
            "No CUDA devices",
        ],
        devices=["NVIDIA GeForce RTX 3080 Ti", "NVIDIA GeForce RTX 3080 Ti"],
        percents=[],
    ),
    "4xK80-FAIL-load-module-read-error-DIED-garbage-counts-snip.txt": dict(
        ok=False,
        run_seconds=None,
        precision="single",
        tensor_cores=False,
        tested=None,
        gpus=[
            g(0, 0.0, -1, None, 33, None, died=True),
            g(1, 0.0, 0, 0, 29, None),
            g(2, 0.0, 0, 0, 37, None),
            g(3, 0.0, 0, 0, 31, None),
        ],
        # one init failure, two 'read[0] error 0' lines of their own, three glued to progress
        errors=['Couldn\'t init a GPU test: Error in "load module":'] + ["read[0] error 0"] * 5,
        devices=["Tesla K80"] * 4,
        percents=[50.0] * 4,
    ),
    "8xA100-FAIL-cuinit-system-not-yet-initialized-no-cuda-devices.txt": dict(
        ok=False,
        run_seconds=120,
        precision=None,
        tensor_cores=None,
        tested=None,
        gpus=[],
        errors=[
            "Couldn't init CUDA: Error (gpu_burn-drv.cpp:304): system not yet initialized",
            "Couldn't init a GPU test: Error (gpu_burn-drv.cpp:112): initialization error",
            "No CUDA devices",
        ],
        devices=["NVIDIA A100-SXM4-80GB"] * 8,
        percents=[],
    ),
    "8xA100-SXM4-40GB-FAIL-no-cuda-devices-printed-before-gpu-list.txt": dict(
        ok=False,
        run_seconds=None,
        precision=None,
        tensor_cores=None,
        tested=None,
        gpus=[],
        errors=[
            "terminate called after throwing an instance of 'std::__cxx11::basic_string<char, "
            "std::char_traits<char>, std::allocator<char> >'",
            "No CUDA devices",
        ],
        devices=["A100-SXM4-40GB"] * 8,
        percents=[],
    ),
    "8xA100-SXM4-80GB-doubles-tensor-cores-raw-CR-repaints-superbench.txt": dict(
        ok=True,
        run_seconds=None,
        precision="double",
        tensor_cores=True,
        tested=8,
        # the last repaint before 'Killing processes.. '
        gpus=[
            g(0, 16942.0, 6783, 0, 62, "OK"),
            g(1, 17093.0, 6783, 0, 59, "OK"),
            g(2, 16957.0, 6783, 0, 58, "OK"),
            g(3, 16926.0, 4522, 0, 60, "OK"),
            g(4, 16890.0, 4522, 0, 60, "OK"),
            g(5, 16950.0, 6783, 0, 59, "OK"),
            g(6, 17010.0, 4522, 0, 58, "OK"),
            g(7, 16926.0, 4522, 0, 61, "OK"),
        ],
        errors=[],
        devices=["NVIDIA A100-SXM4-80GB"] * 8,
        percents=None,  # 196 repaints: checked in test_cr_repaints_are_each_a_report
    ),
    "8xV100-tc-FAIL-cuda-error-unknown-zero-gflops-verdict-OK.txt": dict(
        ok=False,
        run_seconds=None,
        precision=None,
        tensor_cores=None,
        tested=8,
        gpus=[
            g(i, 0.0, 0, 0, t, "OK" if i < 4 else None)
            for i, t in enumerate([41, 40, 45, 42, 39, 39, 43, 41])
        ],
        errors=["Couldn't init a GPU test: Error: CUDA_ERROR_UNKNOWN"],
        devices=["Tesla V100-SXM2-32GB"] * 8,
        percents=[100.0, 100.0],
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".txt"))
def test_fixture(name, fixture_text):
    exp = EXPECTED[name]
    out = gpu_burn.parse(fixture_text(f"{DIR}/{name}"))

    assert out["ok"] is exp["ok"]
    for key in ("run_seconds", "precision", "tensor_cores", "tested", "errors"):
        assert out[key] == exp[key], key
    assert out["gpus"] == exp["gpus"]
    assert [d["name"] for d in out["devices"]] == exp["devices"]
    if exp["percents"] is not None:
        assert [p["percent"] for p in out["progress"]] == exp["percents"]
    json.dumps(out)  # plain JSON-able data


def test_every_fixture_has_expectations(fixtures_dir):
    present = {p.name for p in (fixtures_dir / DIR).iterdir()}
    assert present - set(EXPECTED) == set(), "new gpu-burn fixtures need expected values here"


def test_cr_repaints_are_each_a_report(fixtures_dir, fixture_text):
    name = "8xA100-SXM4-80GB-doubles-tensor-cores-raw-CR-repaints-superbench.txt"
    text = fixture_text(f"{DIR}/{name}")
    out = gpu_burn.parse(text)
    assert len(out["progress"]) == text.count("\r") == text.count("proc'd:")
    first = out["progress"][0]
    assert first["percent"] == 50.0
    assert [x["gflops"] for x in first["gpus"]] == [7150.0] + [0.0] * 7
    assert len(out["summaries"]) == text.count("Summary at:")
    assert [i["index"] for i in out["initialized"]] == [6, 3, 7, 4, 0, 2, 5, 1]


def test_why_not_ok_is_said(fixture_text):
    v100 = gpu_burn.parse(
        fixture_text(f"{DIR}/8xV100-tc-FAIL-cuda-error-unknown-zero-gflops-verdict-OK.txt")
    )
    assert (
        "GPU 0: no work done (0 matrix multiplications) although its verdict is OK"
        in v100["warnings"]
    )
    assert "GPU 4: no verdict (the run was cut short or the output truncated)" in v100["warnings"]
    died = gpu_burn.parse(
        fixture_text(f"{DIR}/1gpu-FAIL-DIED-no-clients-alive-HAMi-core-shim-noise.txt")
    )
    assert "GPU 0: its worker DIED (proc'd -1): the burn failed on it" in died["warnings"]


# --- synthetic variants (gpu-burn's own printf formats, 9aefd7c) -------------------------------

P = "{pct}%  proc'd: {a} ({ga} Gflop/s) - {b} ({gb} Gflop/s)   errors: {ea} - {eb}   temps: 60 C - 61 C "


def line(pct, a, ga, b, gb, ea="0 ", eb="0 "):
    return P.format(pct=pct, a=a, ga=ga, b=b, gb=gb, ea=ea.rstrip(), eb=eb.rstrip())


def test_errors_are_summed_over_summary_intervals():
    text = "\n".join(
        [
            "Burning for 20 seconds.",
            line("10.0", 10, 14000, 10, 14100, ea="3  (WARNING!)"),
            "\tSummary at:   Mon Jan  1 00:00:10 UTC 2024",
            "",
            line("60.0", 20, 14000, 20, 14100, ea="1  (WARNING!)"),
            line("100.0", 30, 14000, 30, 14100, ea="2  (WARNING!)"),
            "Killing processes with SIGTERM (soft kill)",
            "done",
            "",
            "Tested 2 GPUs:",
            "\tGPU 0: FAULTY",
            "\tGPU 1: OK",
        ]
    )
    out = gpu_burn.parse(text)
    assert [x["errors"] for x in out["gpus"]] == [3 + 2, 0]
    assert out["gpus"][0]["warning"] is True and out["gpus"][0]["verdict"] == "FAULTY"
    assert out["errors"] == ["GPU 0: FAULTY"] and out["ok"] is False


def test_a_run_killed_mid_line_keeps_what_it_printed():
    text = (
        "Burning for 20 seconds.\n" + line("10.0", 10, 14000, 10, 14100) + "\r55.0%  proc'd: 20 (14"
    )
    out = gpu_burn.parse(text)
    assert [p["percent"] for p in out["progress"]] == [10.0]
    assert out["warnings"][0] == "line 2: progress line cut short"
    assert out["ok"] is False and [x["verdict"] for x in out["gpus"]] == [None, None]


def test_damaged_progress_line_names_its_line():
    text = "\n".join(
        [
            "Burning for 20 seconds.",
            "10.0%  proc'd: 10 (14000 Gflop/s)   errors: 0 - 0   temps: 60 C",
            "done",
        ]
    )
    with pytest.raises(ParseError) as info:
        gpu_burn.parse(text)
    assert info.value.line_no == 2
    assert str(info.value).startswith("gpu-burn: line 2: expected a progress line")


def test_random_text_is_a_parse_error():
    with pytest.raises(ParseError) as info:
        gpu_burn.parse("\nGPU 0: NVIDIA A100 (UUID: GPU-1)\n\tLink 0: 25 GB/s\n")
    assert str(info.value).startswith("gpu-burn: line 2: expected gpu-burn output")


def test_gpubox_parse_prints_the_documented_keys(fixtures_dir):
    path = fixtures_dir / DIR / "2gpu-T400-TITAN-RTX-doubles-burning-first-full-run.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "gpubox.cli", "parse", "gpu-burn", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["errors"] == []
    assert [(x["index"], x["gflops"], x["errors"], x["verdict"]) for x in out["gpus"]] == [
        (0, 510.0, 0, "OK"),
        (1, 44.0, 0, "OK"),
    ]
