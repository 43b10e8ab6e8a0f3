"""``host`` in a checks folder is the node under test: the fixture its ``conftest.py`` imports.

pytest-testinfra's own ``host`` is the machine pytest runs on (or ``--hosts``). A checks folder's
conftest overrides it there, and only there (a fixture in a conftest applies below it)::

    # checks/conftest.py
    from gpubox.node_host import host  # noqa: F401

so a check of your own, in that folder, runs once per inventory node, against that node, with
every command under a timeout (:mod:`gpubox.remote`)::

    def test_sshd_runs(host):
        assert host.service("ssh").is_running

It is not part of the plugin module itself: a plugin's fixtures apply to every pytest run in the
environment, and testinfra users elsewhere keep their ``host``.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def host(node):
    """The node under test as a pytest-testinfra host (``local://`` on the node itself)."""
    from gpubox.checks import NodeError

    try:
        node.ensure_reachable()
    except NodeError as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None  # one line, not two
    return node.host
