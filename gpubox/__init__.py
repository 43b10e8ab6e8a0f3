"""gpubox: provision home-built multi-GPU nodes; prove after every boot that they work as built.

One node spec (:mod:`gpubox.spec`) drives both the deploy (``deploy.py``, ``tasks/``) and the
acceptance checks (``checks/``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("gpubox")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
