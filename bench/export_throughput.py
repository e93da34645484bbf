"""Export throughput: a day of 1 s data of 100 peers, three ways, on the same Prometheus.

1. nuclab: ``query_range`` in chunks of <= 11,000 points per series, 4 in parallel (the
   fetch alone, and the whole ``nuclab export`` with Parquet and manifest);
2. naive: one unchunked ``query_range`` per metric. At a 1 s step a day is 86,400 points, which
   Prometheus refuses (11,000 at most), so the naive call must coarsen the step and returns
   only part of the samples: its completeness is printed next to its speed;
3. prometheus-api-client's ``get_metric_range_data`` (range-vector queries, chunk_size=11,000 s).

The data (one counter per peer) is generated here, backfilled with promtool once and cached under
$NUCLAB_CACHE/bench/. Prometheus (Debian package) runs on loopback. Median of --runs runs.

    .venv/bin/python bench/export_throughput.py [--peers 100] [--hours 24] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_api_client import PrometheusConnect

from nuclab import paths
from nuclab.export.prom import Prometheus
from nuclab.export.run import ExportOptions, export

METRIC = "nuclab_peer_messages_received_total"
CACHE = paths.cache_dir() / "bench"


def build_tsdb(peers: int, hours: int, start: int) -> Path:
    tsdb = CACHE / f"export-{peers}p-{hours}h-{start}" / "tsdb"
    if (tsdb / ".complete").exists():
        return tsdb
    shutil.rmtree(tsdb.parent, ignore_errors=True)
    tsdb.parent.mkdir(parents=True)
    om = tsdb.parent / "data.om"
    points = hours * 3600
    print(f"generating {peers * points:,} samples and backfilling with promtool (once)...")
    with om.open("w") as fh:
        fh.write(f"# TYPE {METRIC.removesuffix('_total')} counter\n")
        for p in range(peers):
            labels = f'experiment="bench",peer="nuclab-exp-bench-{p}"'
            fh.writelines(
                f"{METRIC}{{{labels}}} {i * (p + 1)} {start + i}\n" for i in range(points)
            )
        fh.write("# EOF\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=24h",
         str(om), str(tsdb)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    om.unlink()
    (tsdb / ".complete").touch()
    return tsdb


def start_prometheus(tsdb: Path, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    data = work / "tsdb"
    shutil.copytree(tsdb, data)
    (work / "p.yml").write_text("global: {scrape_interval: 1h}\nscrape_configs: []\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'p.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=3650d"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.2)
    raise SystemExit("Prometheus did not become ready")


def nuclab_fetch(url: str, start: int, end: int, workers: int) -> int:
    prom = Prometheus(url)
    query = f'{METRIC}{{experiment="bench"}}'
    got = dict(prom.fetch({METRIC: query}, start * 1000, end * 1000, 1000, workers=workers))
    return sum(len(s.values) for s in got[METRIC])


def nuclab_export(url: str, start: int, end: int, workers: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = export(
            ExportOptions(
                experiment="bench", prometheus_url=url, output=Path(tmp) / "ds", step=1,
                start=datetime.fromtimestamp(start, UTC), end=datetime.fromtimestamp(end, UTC),
                workers=workers,
            )
        )  # fmt: skip
        return result.samples


def naive(url: str, start: int, end: int, step: int) -> int:
    params = urllib.parse.urlencode(
        {"query": f'{METRIC}{{experiment="bench"}}', "start": start, "end": end, "step": step}
    )
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=600) as resp:
        body = json.load(resp)
    return sum(len(r["values"]) for r in body["data"]["result"])


def api_client(url: str, start: int, end: int) -> int:
    client = PrometheusConnect(url=url, disable_ssl=True)
    data = client.get_metric_range_data(
        metric_name=METRIC,
        label_config={"experiment": "bench"},
        start_time=datetime.fromtimestamp(start, UTC),
        end_time=datetime.fromtimestamp(end + 1, UTC),
        chunk_size=timedelta(seconds=min(11_000, end + 1 - start)),
    )
    return sum(len(r["values"]) for r in data)


def timed(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    times, samples = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        samples = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    # A fixed day, 3 days back (inside retention), on the hour: the cache key stays stable.
    start = (int(time.time()) // 86400 - 3) * 86400
    end = start + args.hours * 3600 - 1
    expected = args.peers * args.hours * 3600
    tsdb = build_tsdb(args.peers, args.hours, start)
    with tempfile.TemporaryDirectory() as work:
        proc, url = start_prometheus(tsdb, Path(work))
        try:
            step = math.ceil((end - start) / 11_000)
            try:
                naive(url, start, end, 1)
                refused = "accepted (!)"
            except urllib.error.HTTPError as exc:
                refused = f"refused: HTTP {exc.code}"
            w, r = args.workers, args.runs
            rows = [
                ("nuclab fetch (chunked, parallel)",
                 *timed(lambda: nuclab_fetch(url, start, end, w), r)),
                ("nuclab export (fetch + Parquet + manifest)",
                 *timed(lambda: nuclab_export(url, start, end, w), r)),
                (f"naive: one query_range, step {step} s",
                 *timed(lambda: naive(url, start, end, step), r)),
                ("prometheus-api-client get_metric_range_data",
                 *timed(lambda: api_client(url, start, end), r)),
            ]  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"\n{args.peers} peers x {args.hours} h of 1 s data = {expected:,} samples; "
          f"median of {args.runs} runs; naive query at step 1 s: {refused}")  # fmt: skip
    base = rows[0][2] / rows[0][1]
    fmt = "{:<46} {:>8} {:>12} {:>9} {:>11} {:>9}"
    print(fmt.format("approach", "seconds", "samples", "complete", "samples/s", "vs nuclab"))
    for name, secs, samples in rows:
        rate = samples / secs
        cells = (f"{secs:.2f}", f"{samples:,}", f"{samples / expected:.1%}", f"{rate:,.0f}")
        print(fmt.format(name, *cells, f"{rate / base:.2f}x"))


if __name__ == "__main__":
    main()
