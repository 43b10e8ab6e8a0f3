"""Acceptance checks for GPU nodes: ``pytest checks/`` (see gpubox.checks for the options)."""

from gpubox.checks import *  # noqa: F401,F403  (hooks and fixtures of the gpubox pytest plugin)
