"""Provision a GPU node from its spec: ``pyinfra inventories/home.py deploy.py``.

The inventory already validated every host's data while it loaded (before connecting); this file
validates once more, because ``--data`` and group data can still change a host's data, and then
composes one ``@deploy`` task per job from ``tasks/``.
"""

import sys
from pathlib import Path

from pyinfra import host

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so `tasks` imports from any cwd

from gpubox.spec import NodeSpec  # noqa: E402
from tasks.node_spec import node_spec  # noqa: E402

spec = NodeSpec.from_data(host.data.dict(), host=host.name)

node_spec(spec)
