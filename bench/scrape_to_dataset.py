"""Scrape to dataset on a real run: an experiment's peers on the simulated lab's real nodes, scraped
by the lab's own Prometheus, then exported four ways over the same window, side by side.

1. ``nuclab export NAME --start --end --step`` as a user runs it (the CLI process: the cluster
   read, the coverage check, the chunked fetch, Parquet, checksums and manifest);
2. the same export in this process (``nuclab.export.run.export``), without the CLI's start-up;
3. the obvious alternative: one ``query_range`` per metric name (the names from one series
   lookup), the JSON answers written to a file, with the export's own selectors and step;
4. prometheus-api-client's ``custom_query_range`` for the same queries.

Then ``nuclab report`` on the dataset. The lab must be up (``make sim-up``); the experiment runs on
the real nodes for --seconds, is exported --runs times (median) and deleted. Benchmarks never fail
on a time.

    .venv/bin/python bench/scrape_to_dataset.py [--peers 4] [--seconds 180] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from export_throughput import timed  # bench/, this script's folder, is on sys.path
from prometheus_api_client import PrometheusConnect

from nuclab import deploy
from nuclab.export.prom import Prometheus, metric_query
from nuclab.export.run import ExportOptions, default_selectors, export

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventory" / "sim"
NAME = "bench-s2d"
STEP = 5  # the simulated lab's scrape interval (inventory/sim: monitoring_scrape_interval)


NUCLAB = Path(sys.executable).with_name("nuclab")  # the CLI of this virtualenv


def nuclab(*args: str, lab: bool = True) -> subprocess.CompletedProcess[str]:
    on_lab = ("-i", str(INVENTORY)) if lab else ()
    return subprocess.run(
        [NUCLAB, *args, *on_lab], capture_output=True, text=True, check=True, cwd=REPO
    )


def queries(url: str, start: int, end: int) -> dict[str, str]:
    selectors = default_selectors(NAME)
    names = Prometheus(url).metric_names(selectors, start * 1000, end * 1000)
    return {n: metric_query(n, selectors) for n in names}


def cli_export(start: int, end: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        proc = nuclab("export", NAME, "-o", str(out), "--start", str(start), "--end", str(end),
                      "--step", str(STEP))  # fmt: skip
        said = re.search(r"([0-9,]+) samples", proc.stdout + proc.stderr)
        assert said, proc.stdout + proc.stderr
        return int(said.group(1).replace(",", ""))


def library_export(url: str, start: int, end: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = export(
            ExportOptions(
                experiment=NAME, prometheus_url=url, output=Path(tmp) / "ds", step=STEP,
                start=datetime.fromtimestamp(start, UTC), end=datetime.fromtimestamp(end, UTC),
            )
        )  # fmt: skip
        return result.samples


def per_metric_json(url: str, start: int, end: int) -> int:
    total, answers = 0, {}
    for name, query in queries(url, start, end).items():
        params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": STEP})
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=120) as resp:
            answers[name] = json.load(resp)["data"]["result"]
        total += sum(len(r["values"]) for r in answers[name])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data.json").write_text(json.dumps(answers))
    return total


def api_client(url: str, start: int, end: int) -> int:
    client = PrometheusConnect(url=url, disable_ssl=True)
    total, answers = 0, {}
    for name, query in queries(url, start, end).items():
        answers[name] = client.custom_query_range(
            query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=str(STEP),
        )
        total += sum(len(r["values"]) for r in answers[name])
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data.json").write_text(json.dumps(answers))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=180)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = deploy.lab_target(INVENTORY, REPO).prometheus_url
    nuclab("create", "--name", NAME, "--peers", str(args.peers), "--msg-rate", "500", "--cpu",
           "0.05", "--ram", "16", "--label", "node-kind=real", "--probe", "-q")  # fmt: skip
    try:
        start = int(time.time())
        print(f"{NAME}: {args.peers} peers on the real nodes for {args.seconds} s ...", flush=True)
        time.sleep(args.seconds)
        end = int(time.time()) // STEP * STEP
        time.sleep(2 * STEP)  # Prometheus has scraped past the end
        r = args.runs
        approaches: list[tuple[str, Callable[[], int]]] = [
            ("nuclab export (CLI process)", lambda: cli_export(start, end)),
            ("nuclab export (in this process)", lambda: library_export(url, start, end)),
            ("one query_range per metric, JSON", lambda: per_metric_json(url, start, end)),
            ("prometheus-api-client custom_query_range", lambda: api_client(url, start, end)),
        ]
        rows = [(name, *timed(fn, r)) for name, fn in approaches]
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ds"
            nuclab("export", NAME, "-o", str(out), "--start", str(start), "--end", str(end),
                   "--step", str(STEP))  # fmt: skip
            report, _ = timed(lambda: len(nuclab("report", str(out), lab=False).stdout), r)
            files = len(json.loads((out / "manifest.json").read_text())["files"])
    finally:
        argv = ["delete", NAME, "--no-export", "-q", "-i", str(INVENTORY)]
        subprocess.run([NUCLAB, *argv], cwd=REPO, check=False)
    print(f"\nwindow {end - start} s at step {STEP} s; {files} files; median of {r} runs")
    base = rows[0][2] / rows[0][1]
    fmt = "{:<42} {:>8} {:>9} {:>10} {:>10}"
    print(fmt.format("approach", "seconds", "samples", "samples/s", "vs CLI"))
    for name, secs, samples in rows:
        rate = samples / secs
        cells = (f"{secs:.2f}", f"{samples:,}", f"{rate:,.0f}", f"{rate / base:.2f}x")
        print(fmt.format(name, *cells))
    print(f"nuclab report on the dataset: {report:.2f} s")


if __name__ == "__main__":
    main()
