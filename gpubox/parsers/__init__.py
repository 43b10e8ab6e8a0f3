"""Parsers for benchmark tools' console output: text in, plain JSON-able dict out.

``PARSERS`` maps the tool name used on the command line (``gpubox parse TOOL FILE``) to its
parse function, so other code (e.g. a subprocess wrapper) can reuse the same table:

>>> from gpubox.parsers import PARSERS, parse
>>> sorted(PARSERS)
['bandwidthTest', 'gpu-burn', 'gpu-fryer', 'nccl-tests', 'nvbandwidth', 'p2pBandwidthLatencyTest']
>>> parse("bandwidthTest", "Result = PASS\\n")["errors"]
['no measurement in the output (the tool said Result = PASS): no table and no CSV line']

Every parser takes the raw output (no fixture header; see
:func:`gpubox.parsers.common.strip_fixture_header`), returns a dict with at least ``ok``,
``errors`` and ``warnings``, and raises :class:`~gpubox.parsers.common.ParseError` when the
text is not that tool's output or is damaged where it matters.
"""

from __future__ import annotations

from collections.abc import Callable

from gpubox.parsers import (
    bandwidth_test,
    gpu_burn,
    gpu_fryer,
    nccl_tests,
    nvbandwidth,
    p2p_bandwidth,
)
from gpubox.parsers.common import ParseError, strip_fixture_header

__all__ = ["PARSERS", "ParseError", "parse", "strip_fixture_header"]

# Tool name -> parse(text) -> dict.
PARSERS: dict[str, Callable[[str], dict]] = {
    "nccl-tests": nccl_tests.parse,
    "bandwidthTest": bandwidth_test.parse,
    "p2pBandwidthLatencyTest": p2p_bandwidth.parse,
    "nvbandwidth": nvbandwidth.parse,
    "gpu-burn": gpu_burn.parse,
    "gpu-fryer": gpu_fryer.parse,
}


def parse(tool: str, text: str) -> dict:
    """Parse ``text`` as the output of ``tool`` (a key of :data:`PARSERS`)."""
    try:
        parser = PARSERS[tool]
    except KeyError:
        raise KeyError(f"no parser for {tool!r}; known: {', '.join(PARSERS)}") from None
    return parser(text)
