"""gpubox: provision home-built multi-GPU nodes; prove after every boot that they work as built.

One node spec (:mod:`gpubox.spec`) drives both the deploy (``deploy.py``, ``tasks/``) and the
acceptance checks (``checks/``).
"""


def __getattr__(name: str):
    # Looked up on first use: importlib.metadata costs ~40 ms at start-up, and the probe runs
    # at every boot and every check run.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("gpubox")
        except PackageNotFoundError:  # running from a source tree without an install
            return "0.0.0+src"
    raise AttributeError(f"module 'gpubox' has no attribute {name!r}")
