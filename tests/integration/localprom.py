"""A real Prometheus (Debian package) on loopback, loaded with known samples.

The samples are written as OpenMetrics and backfilled with ``promtool tsdb create-blocks-from
openmetrics``; the server scrapes nothing, so what it answers is exactly what was loaded.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nuclab.net import free_port

Series = dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]]


def openmetrics(data: Series) -> str:
    lines = []
    for name in sorted({k[0] for k in data}):
        lines.append(f"# TYPE {name} gauge")
        for (metric, labels), points in sorted(data.items()):
            if metric != name:
                continue
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.extend(f"{name}{{{lab}}} {v!r} {t}" for t, v in points)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@contextmanager
def local_prometheus(work: Path, data: Series) -> Iterator[str]:
    """Prometheus serving ``data`` from ``work``; yields its base URL, stops it after."""
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    assert binary and promtool, "needs prometheus and promtool (Debian package; run make setup)"
    (work / "data.om").write_text(openmetrics(data))
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(work / "data.om"),
         str(work / "tsdb")],
        check=True, capture_output=True,
    )  # fmt: skip
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=subprocess.DEVNULL, stderr=(work / "prometheus.log").open("w"),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (work / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "Prometheus did not become ready"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
