"""A real Loki on loopback: the single binary ``make setup`` builds from Loki's Go module
(``tools/setup-tests.d/40-loki.sh``, version ``lab_loki_version``), run as ``-target=all`` with auth
off, an in-memory ring and filesystem storage (TSDB, schema v13) in a temporary directory.

Lines go in through Loki's push API, so what the export reads back is what Loki stored.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nuclab.net import free_port
from tests.conftest import tool

# {label: value} of a stream, and its (timestamp ns, line) entries.
Stream = tuple[dict[str, str], list[tuple[int, str]]]

CONFIG = """\
auth_enabled: false
server:
  http_listen_address: 127.0.0.1
  http_listen_port: {http}
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: {grpc}
  log_level: warn
common:
  instance_addr: 127.0.0.1
  path_prefix: {dir}
  storage:
    filesystem:
      chunks_directory: {dir}/chunks
      rules_directory: {dir}/rules
  replication_factor: 1
  ring:
    kvstore:
      store: inmemory
schema_config:
  configs:
    - from: 2020-10-24
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h
ingester:
  lifecycler:
    min_ready_duration: 0s
    final_sleep: 0s
  # The tests' lines are a day old: keep them in the ingester for the whole run and let queries
  # of any age reach it (with -target=all it answers for the last max_chunk_age + 41 min).
  chunk_idle_period: 1h
  max_chunk_age: 24h
  query_store_max_look_back_period: -1ns  # "-1 for infinite": minus one nanosecond, exactly
analytics:
  reporting_enabled: false
"""
RETENTION = """\
compactor:
  working_directory: {dir}/compactor
  retention_enabled: true
  delete_request_store: filesystem
limits_config:
  retention_period: {period}
"""


@contextmanager
def local_loki(work: Path, retention: str = "") -> Iterator[str]:
    """Loki storing under ``work``, ready (``/ready`` answers 200); yields its base URL. With
    ``retention`` (a duration), its compactor deletes what is older (Loki's retention)."""
    http_port, grpc_port = free_port(), free_port()
    config = work / "loki.yaml"
    text = CONFIG.format(http=http_port, grpc=grpc_port, dir=work / "data")
    if retention:
        text += RETENTION.format(dir=work / "data", period=retention)
    config.write_text(text)
    log = work / "loki.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [tool("loki"), f"-config.file={config}", "-target=all"],
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"Loki exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Loki not ready within 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push(url: str, streams: list[Stream]) -> None:
    """Send ``streams`` through Loki's push API (JSON); Loki answers 204 when it took them all."""
    body = {
        "streams": [
            {"stream": labels, "values": [[str(ts), line] for ts, line in entries]}
            for labels, entries in streams
        ]
    }
    req = urllib.request.Request(
        f"{url}/loki/api/v1/push", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 204, resp.read()


def query_range_requests(url: str) -> int:
    """How many query_range requests Loki's HTTP server has received, from its own /metrics
    (``loki_request_message_bytes``: outer requests only; ``loki_request_duration_seconds`` also
    counts the querier's internal sub-requests)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    pattern = re.compile(
        r'^loki_request_message_bytes_count\{[^}]*route="loki_api_v1_query_range"[^}]*\}'
        r"\s+(\d+)",
        re.MULTILINE,
    )
    return sum(int(n) for n in pattern.findall(text))
