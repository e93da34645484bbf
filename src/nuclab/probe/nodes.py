"""Node-to-node latency percentiles: what the reference lab got from netperf, from our probe.

Each node's probe keeps a window of its latest RTT samples per destination and, every push
interval, pushes p50/p90/p99 to the Pushgateway as ``nuclab_node_rtt_seconds{origin,
destination, quantile}`` and writes the same numbers as CSV rows
``origin,destination,p50_us,p90_us,p99_us`` (the reference's results.csv shape).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from nuclab.histogram import quantile

QUANTILES = (0.5, 0.9, 0.99)
CSV_HEADER = ("origin", "destination", "p50_us", "p90_us", "p99_us")
PUSH_JOB = "nuclab_node_probe"


class LatencyWindow:
    """The last ``size`` RTT samples per destination, safe to feed from the probe loop."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, destination: str, seconds: float) -> None:
        with self._lock:
            window = self._samples.get(destination)
            if window is None:
                window = self._samples[destination] = deque(maxlen=self._size)
            window.append(seconds)

    def percentiles(self) -> dict[str, tuple[float, float, float]]:
        """destination -> (p50, p90, p99) in seconds, for destinations with samples."""
        with self._lock:
            snapshot = {d: sorted(w) for d, w in self._samples.items() if w}
        return {
            d: (quantile(v, 0.5), quantile(v, 0.9), quantile(v, 0.99)) for d, v in snapshot.items()
        }


def csv_rows(origin: str, table: dict[str, tuple[float, float, float]]) -> list[tuple[str, ...]]:
    return [(origin, dest, *(str(round(v * 1e6)) for v in table[dest])) for dest in sorted(table)]


def write_csv(path: Path, rows: Iterable[Sequence[str]]) -> None:
    """Write the CSV atomically: readers see the previous or the new file, never half of one."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, path)


def push(gateway: str, origin: str, table: dict[str, tuple[float, float, float]]) -> None:
    """Replace this origin's group on the Pushgateway with the current percentiles."""
    registry = CollectorRegistry(auto_describe=False)
    gauge = Gauge(
        "nuclab_node_rtt_seconds",
        "Node-to-node round-trip time percentiles measured by the nuclab node probe.",
        ("destination", "quantile"),
        registry=registry,
    )
    for dest, values in table.items():
        for q, value in zip(QUANTILES, values, strict=True):
            gauge.labels(dest, str(q)).set(value)
    push_to_gateway(gateway, job=PUSH_JOB, registry=registry, grouping_key={"origin": origin})
