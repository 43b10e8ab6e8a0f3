"""Fixtures for the parser tests: the shared real-output samples, read with headers stripped.

The samples live outside the repo in ``../shared/fixtures`` (or wherever ``GPUBOX_FIXTURES``
points); tests that need them are skipped with the reason when the folder is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from gpubox.parsers.common import strip_fixture_header


def fixtures_root() -> Path:
    env = os.environ.get("GPUBOX_FIXTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def read_raw(path: Path) -> str:
    # newline="" keeps '\r' so the parsers see exactly what the tool printed.
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    root = fixtures_root()
    if not root.is_dir():
        pytest.skip(f"shared fixtures folder not found at {root} (set GPUBOX_FIXTURES)")
    return root


@pytest.fixture
def fixture_text(fixtures_dir: Path) -> Callable[[str], str]:
    """``fixture_text("nccl-tests/x.txt")`` -> the tool's output without the fixture header."""

    def load(relative: str) -> str:
        return strip_fixture_header(read_raw(fixtures_dir / relative))

    return load
