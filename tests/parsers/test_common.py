"""Shared parser pieces: fixture headers, line cleaning, prompts, ParseError, the registry."""

from __future__ import annotations

import doctest
import importlib

import pytest

from gpubox import parsers
from gpubox.parsers.common import (
    ParseError,
    clean_line,
    fixture_header_length,
    is_prompt_line,
    parse_number,
    strip_fixture_header,
)


def test_strip_fixture_header_keeps_tool_comment_lines():
    text = (
        "# source: https://example.org/x\n"
        "# fixture-note: something\n"
        "# truncated-in-source\n"
        "# truncated-by-collector: the tail\n"
        "# nThread 1 nGpus 1\n"
        "# source: not a header any more\n"
    )
    assert fixture_header_length(text) == 4
    assert strip_fixture_header(text) == "# nThread 1 nGpus 1\n# source: not a header any more\n"


def test_strip_fixture_header_leaves_raw_output_alone():
    text = "# nvidia-smi topo -m\n\tGPU0\n"
    assert strip_fixture_header(text) == text
    assert fixture_header_length(text) == 0


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("\x1b[4mGPU0\x1b[0m\tGPU1  ", "GPU0\tGPU1"),
        ("10%\r20%\r100% done\r", "100% done"),
        ("[1,0]<stdout>:#  Rank  0", "#  Rank  0"),
        ("[1,12]<stderr>:boom", "boom"),
        ("[2025-06-12 16:57:52] host:1:2 [0] NCCL WARN x", "host:1:2 [0] NCCL WARN x"),
        ("[1,0]<stdout>:[2025-06-12T16:57:52.123] ok", "ok"),
        ("   32000000\t\t\t12.3", "   32000000\t\t\t12.3"),
    ],
    ids=["ansi", "cr-repaint", "mpi-tag", "mpi-tag-stderr", "timestamp", "tag-then-ts", "plain"],
)
def test_clean_line(raw, clean):
    assert clean_line(raw) == clean


@pytest.mark.parametrize(
    ("line", "prompt"),
    [
        ("root@autodl-container-xxxxx:~/nccl-tests# ./build/all_reduce_perf -g 2", True),
        ("ecs-user@iZ2ze59179jmm5xn1azmthZ:/tmp/cuda-samples/bandwidthTest$", True),
        ("[root@pit101-xea1002 release]# ./bandwidthTest --memory=pageable", True),
        ("$ NCCL_DEBUG=TRACE ./build/all_reduce_perf", True),
        ("> ./bandwidthTest", True),
        ("# ./bandwidthTest --memory=pinned --mode=quick", True),
        ("# nThread 1 nGpus 8 minBytes 8", False),
        ("#  Rank  0 Group  0 Pid 1 on host device 0 [0x21] GPU", False),
        ("Device 0: NVIDIA A100", False),
    ],
)
def test_is_prompt_line(line, prompt):
    assert is_prompt_line(line) is prompt


def test_parse_error_message_and_shift():
    err = ParseError("nvbandwidth", 7, "a row", "x" * 200)
    msg = str(err)
    assert msg.startswith("nvbandwidth: line 7: expected a row, found 'xxx")
    assert msg.endswith("...'")
    shifted = err.shifted(3)
    assert (shifted.tool, shifted.line_no, shifted.expected) == ("nvbandwidth", 10, "a row")


def test_parse_number():
    assert parse_number("1e+06") == 1e6
    assert parse_number("11061") == 11061.0
    assert parse_number("N/A") is None
    with pytest.raises(ValueError):
        parse_number("12.3GB")


def test_registry_lists_the_six_tools():
    assert set(parsers.PARSERS) == {
        "nccl-tests",
        "bandwidthTest",
        "p2pBandwidthLatencyTest",
        "nvbandwidth",
        "gpu-burn",
        "gpu-fryer",
    }
    # A PASS that measured nothing is not ok (issue 16).
    assert parsers.parse("bandwidthTest", "Result = PASS\n")["ok"] is False
    with pytest.raises(KeyError, match="no parser for 'nvidia-smi'"):
        parsers.parse("nvidia-smi", "")


@pytest.mark.parametrize(
    "module",
    [
        "__init__",
        "common",
        "nccl_tests",
        "bandwidth_test",
        "p2p_bandwidth",
        "nvbandwidth",
        "gpu_burn",
        "gpu_fryer",
    ],
)
def test_docstring_examples(module):
    name = "gpubox.parsers" if module == "__init__" else f"gpubox.parsers.{module}"
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


FOLDER_OF = {
    "nccl-tests": "nccl-tests",
    "bandwidthTest": "bandwidthTest",
    "p2pBandwidthLatencyTest": "p2pBandwidthLatencyTest",
    "nvbandwidth": "nvbandwidth",
    "gpu-burn": "gpu-burn",
    "gpu-fryer": "gpu-fryer",
}


@pytest.mark.parametrize("tool", sorted(FOLDER_OF))
def test_other_tools_output_is_a_parse_error(tool, fixtures_dir, fixture_text):
    """Every shared sample of another tool (nvidia-smi, gpu-burn, ...) is rejected, not misread."""
    others = [
        p
        for folder in sorted(fixtures_dir.iterdir())
        if folder.is_dir() and folder.name != FOLDER_OF[tool]
        for p in sorted(folder.iterdir())
    ]
    assert others
    accepted = []
    for path in others:
        try:
            parsers.parse(tool, fixture_text(f"{path.parent.name}/{path.name}"))
        except ParseError as exc:
            assert exc.line_no >= 1 and exc.tool == tool
        else:
            accepted.append(f"{path.parent.name}/{path.name}")
    assert accepted == []
