"""Deploy wall times against a fresh simulated node: first run, then a no-op re-run.

    uv run python benchmarks/deploy.py            # boots, deploys twice, purges (needs root)

Target: no-op re-run under 10 s. The first run's time depends on the apt archive cache
(/var/cache/gpubox/sim/apt-archives): ~2 GB of Debian packages are downloaded once per machine.
"""

from __future__ import annotations

import os
import time

from gpubox.sim import target
from gpubox.sim.standin import Server
from gpubox.sim.testing import STANDIN_PORT, changed_ops, deploy


def main() -> None:
    os.environ.setdefault("GPUBOX_SIM_HOME", "/var/lib/gpubox-bench")
    name = "deploybench"
    target.down(name, purge=True)
    server = Server(port=STANDIN_PORT - 2)  # beside a test session's
    env = {**os.environ, **server.env()}
    try:
        t0 = time.perf_counter()
        target.up(name)
        up_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        first = deploy(env, "--json")
        first_s = time.perf_counter() - t0
        assert first.returncode == 0, first.stdout[-3000:]
        t0 = time.perf_counter()
        again = deploy(env, "--json")
        again_s = time.perf_counter() - t0
        assert again.returncode == 0, again.stdout[-3000:]
    finally:
        server.stop()
        target.down(name, purge=True)
    print(f"sim up (fresh node)      {up_s:7.1f} s")
    print(
        f"first deploy             {first_s:7.1f} s  ({len(changed_ops(first))} operations changed)"
    )
    print(
        f"no-op re-run             {again_s:7.1f} s  ({len(changed_ops(again))} changed; target < 10 s)"
    )


if __name__ == "__main__":
    main()
