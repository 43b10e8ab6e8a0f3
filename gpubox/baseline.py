"""Calibrated baselines: each bandwidth measurement's median on a known-good node, and its floor.

``gpubox calibrate`` runs the bandwidth tier N times and writes one JSON file::

    {
      "schema": "gpubox.baseline/1",
      "gpubox_version": "0.1.0",
      "hosts": {
        "home": {
          "created": "2025-11-26T07:00:00+00:00",
          "runs": 5,
          "margin": 0.15,
          "measurements": {
            "h2d[gpu0]": {"median": 13.1, "floor": 11.135, "min": 13.0, "max": 13.2,
                          "samples": [13.1, 13.0, 13.2, 13.1, 13.1], "unit": "GB/s"},
            "allreduce[gpu0+gpu1]@32M": {...}
          }
        }
      }
    }

``floor = median x (1 - margin)``. The checks load the file the spec names (``bench.baseline``;
default ``/etc/gpubox/baseline.json`` on the node when present): its floors apply where the spec
gives none, and every bandwidth message reports the drift from the median.

>>> b = Baseline.from_document(build({"h2d[gpu0]": [13.1, 13.0, 13.2]}, 0.15, 3, "home"), "home")
>>> b.get("h2d[gpu0]")["median"], b.get("h2d[gpu0]")["floor"]
(13.1, 11.135)
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA = "gpubox.baseline/1"
DEFAULT_PATH = "/etc/gpubox/baseline.json"


class BaselineError(ValueError):
    """A baseline file that cannot be used: names the file and what is wrong."""


@dataclass(frozen=True)
class Baseline:
    """One host's calibrated measurements from a baseline file."""

    path: str
    host: str
    margin: float
    runs: int
    created: str
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.measurements.get(key)

    def median(self, key: str) -> float | None:
        entry = self.get(key)
        return entry["median"] if entry else None

    @classmethod
    def from_document(cls, doc: Any, host: str, path: str = "<baseline>") -> Baseline:
        """The entry for ``host`` in a parsed baseline document (BaselineError if unusable)."""
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise BaselineError(f"{path}: not a gpubox baseline (expected schema {SCHEMA!r})")
        hosts = doc.get("hosts")
        if not isinstance(hosts, dict) or host not in hosts:
            known = ", ".join(sorted(hosts)) if isinstance(hosts, dict) else "none"
            raise BaselineError(
                f"{path}: no baseline for host {host!r} (has: {known}); run `gpubox calibrate` "
                "for it"
            )
        entry = hosts[host] if isinstance(hosts[host], dict) else {}
        measurements = entry.get("measurements")
        if not isinstance(measurements, dict):
            raise BaselineError(f"{path}: hosts.{host}.measurements: expected an object")
        for key, value in measurements.items():
            ok = isinstance(value, dict) and all(
                isinstance(value.get(k), int | float) and value[k] > 0 for k in ("median", "floor")
            )
            if not ok:
                raise BaselineError(
                    f"{path}: hosts.{host}.measurements.{key}: expected positive median and floor"
                )
        return cls(
            path=path,
            host=host,
            margin=float(entry.get("margin", 0.0)),
            runs=int(entry.get("runs", 0)),
            created=str(entry.get("created", "")),
            measurements=measurements,
        )

    @classmethod
    def from_text(cls, text: str, host: str, path: str) -> Baseline:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BaselineError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_document(doc, host, path)


def summarize(samples: list[float], margin: float) -> dict[str, Any]:
    """Median, the floor it implies, the spread and the samples of one measurement."""
    median = statistics.median(samples)
    return {
        "median": round(median, 4),
        "floor": round(median * (1 - margin), 4),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
        "unit": "GB/s",
    }


def build(
    samples: dict[str, list[float]],
    margin: float,
    runs: int,
    host: str,
    previous: dict | None = None,
) -> dict[str, Any]:
    """A baseline document for ``host``; other hosts of ``previous`` (an earlier file) are kept."""
    from gpubox import __version__

    hosts = dict((previous or {}).get("hosts") or {})
    hosts[host] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
        "margin": margin,
        "measurements": {k: summarize(v, margin) for k, v in sorted(samples.items())},
    }
    return {"schema": SCHEMA, "gpubox_version": __version__, "hosts": dict(sorted(hosts.items()))}
