"""Acceptance checks for GPU nodes: ``pytest checks/`` (see gpubox.checks for the options).

The gpubox pytest plugin comes in through its ``pytest11`` entry point; this file makes the folder
a checks folder: ``host`` here is the node under test (gpubox.node_host), and a run writes its
results under ``results/`` unless told otherwise.
"""

from gpubox.node_host import host  # noqa: F401


def pytest_addhooks(pluginmanager):
    """Load the plugin where its entry point did not (gpubox on PYTHONPATH only, not installed)."""
    if not pluginmanager.has_plugin("gpubox.checks"):
        import gpubox.checks

        pluginmanager.register(gpubox.checks, "gpubox.checks")
