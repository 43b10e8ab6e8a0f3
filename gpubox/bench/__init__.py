"""Measuring, the first of the bandwidth tier's three parts (measure, parse, judge).

* :mod:`gpubox.bench.commands`: the tier's command lines, built from the node spec;
* :mod:`gpubox.bench.wrapper`: runs one tool as a subprocess (streamed output, timeout, raw
  log, parsed result, exit code interpreted): :func:`run_bandwidth_test`, :func:`run_p2p`,
  :func:`run_nccl_tests`;
* :mod:`gpubox.bench.tier`: every run the spec needs, as one JSON document
  (``gpubox bench run --json``, what the checks judge);
* :mod:`gpubox.bench.results`: reading figures back out of that document.

Parsing lives in :mod:`gpubox.parsers`, judging in :mod:`gpubox.judge_bandwidth`, floors in
:mod:`gpubox.floors`.
"""

from gpubox.bench.wrapper import ToolResult, run, run_bandwidth_test, run_nccl_tests, run_p2p

__all__ = ["ToolResult", "run", "run_bandwidth_test", "run_nccl_tests", "run_p2p"]
