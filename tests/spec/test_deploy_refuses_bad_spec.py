"""A broken inventory field stops ``pyinfra INVENTORY deploy.py`` before it connects or changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def run_deploy(inventory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYINFRA, "-y", str(inventory), "deploy.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "GPUBOX_HOME_HOST": "gpubox-home.invalid"},
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            '"graphics_mhz": 1140',
            '"graphics_mhz": 9000',
            "host 'home': clocks.graphics_mhz: expected a number in 1..3000; got 9000",
        ),
        (
            '{"bus_id": "0F:00.0", ',
            '{"bus_id": "0F:0G.0", ',
            "host 'home': gpus[2].bus_id: expected a PCI bus id",
        ),
        (
            '"nvlink": "unsupported"',
            '"nvlnk": "unsupported"',
            "host 'home': nvlnk: unknown key 'nvlnk'",
        ),
    ],
    ids=["clock-out-of-range", "malformed-bus-id", "misspelt-key"],
)
def test_broken_field_fails_while_loading_the_inventory(tmp_path, old, new, message):
    text = (ROOT / "inventories" / "home.py").read_text()
    assert old in text
    broken = tmp_path / "inventories" / "home.py"
    broken.parent.mkdir()
    broken.write_text(text.replace(old, new))
    result = run_deploy(broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output
    assert "Connecting to hosts" not in output, "pyinfra got as far as connecting"
    assert "Traceback" not in output, "a spec error must read as one line"


def test_valid_inventory_gets_past_validation_to_connecting():
    result = run_deploy(ROOT / "inventories" / "home.py")
    output = result.stdout + result.stderr
    assert "Connecting to hosts" in output, output
    assert "gpubox-home.invalid" in output or "Could not resolve" in output, output
