"""Write the node spec to the node, where the clock-lock unit and the on-node checks read it."""

import json

from pyinfra.api import deploy
from pyinfra.operations import files

from gpubox.spec import NodeSpec

SPEC_PATH = "/etc/gpubox/spec.json"


@deploy("gpubox node spec")
def node_spec(spec: NodeSpec):
    """Install ``/etc/gpubox/spec.json`` (root-readable JSON, the same data the inventory holds).

    Example::

        node_spec(spec)
    """
    files.directory(name="gpubox config directory", path="/etc/gpubox", mode="755")
    files.put(
        name=f"node spec {SPEC_PATH}",
        src=_as_file(spec),
        dest=SPEC_PATH,
        mode="644",
    )


def _as_file(spec: NodeSpec):
    from io import StringIO

    data = {"host": spec.host, **spec.to_data()}
    return StringIO(json.dumps(data, indent=2, sort_keys=True) + "\n")
