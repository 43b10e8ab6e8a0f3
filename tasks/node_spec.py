"""Write the node spec to the node, where the clock-lock unit and the on-node checks read it."""

import json
from io import StringIO

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.layout import NODE_SPEC
from gpubox.spec import NodeSpec


@deploy("gpubox node spec")
def node_spec(spec: NodeSpec):
    """Install ``/etc/gpubox/spec.json``: the same data the inventory holds, validated.

    Example::

        node_spec(spec)
    """
    files.directory(name="gpubox config directory", path="/etc/gpubox", mode="755")
    text = json.dumps({"host": spec.host, **spec.to_data()}, indent=2, sort_keys=True) + "\n"
    return files.put(name=f"node spec {NODE_SPEC}", src=StringIO(text), dest=NODE_SPEC, mode="644")
