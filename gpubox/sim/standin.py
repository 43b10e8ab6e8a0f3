"""A stand-in nccl-tests source release, served over HTTP on loopback, for the simulated node.

Upstream nccl-tests cannot be downloaded where gpubox's tests run, so they (and the demo) point
the spec's ``software.nccl_tests`` at this tarball instead: same build interface (``make
CUDA_HOME=... NCCL_HOME=... CXX=... NVCC_GENCODE=...`` -> ``build/*_perf``), none of its code. It
goes through the deploy's real download, sha256 check and build. Never used outside a simulation.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "standin" / "nccl-tests"
VERSION = "0.0.0-standin"


def tarball(version: str = VERSION, project: str = "nccl-tests") -> bytes:
    """A byte-for-byte reproducible ``PROJECT-VERSION.tar.gz`` of a stand-in source tree
    (``gpubox/sim/standin/PROJECT``: nccl-tests, cuda-samples, gpu-burn), laid out like GitHub's
    archive of a tag (one top folder ``PROJECT-VERSION/``)."""
    source = SOURCE.parent / project
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{project}-{version}/{path.relative_to(source)}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class Server:
    """Serves the stand-in tarball (or any bytes) at ``url`` until :meth:`stop`."""

    def __init__(self, version: str = VERSION, port: int = 0, data: bytes | None = None):
        self.version = version
        self.data = tarball(version) if data is None else data
        self.name = f"nccl-tests-{version}.tar.gz"
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        body, filename = self.data, self.name

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.lstrip("/") != filename:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        # A fixed port keeps the URL (which the node spec records) the same across deploys.
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/{self.name}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def spec_data(self) -> dict:
        """The ``software.nccl_tests`` entry pointing at this server."""
        return {"version": self.version, "sha256": self.sha256, "url": self.url}

    def env(self, sha256: str | None = None) -> dict[str, str]:
        """The variables ``inventories/sim.py`` reads to use this release (``sha256`` overrides)."""
        return {
            "GPUBOX_NCCL_TESTS_URL": self.url,
            "GPUBOX_NCCL_TESTS_SHA256": sha256 or self.sha256,
            "GPUBOX_NCCL_TESTS_VERSION": self.version,
        }

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
