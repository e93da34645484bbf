"""Benchmark: `nuclab loadgen produce` vs Apache's kafka-producer-perf-test on one local broker.

Prints, for 1 KiB and 100 KiB messages, the maximum sustained produce throughput of each
(messages/s, MB/s; median of RUNS runs, alternating) and their ratio, then the rate-accuracy
table of `nuclab loadgen` across a grid of rates and sizes. Both producers use the same
settings: acks=all, linger.ms=5, 32 MiB of client buffer, and batches of up to 1,000,000 bytes
(librdkafka's default batch.size; the Java producer's own default is 16384, which
``--perf-batch-size 16384`` measures). Not a test: it never fails on a time.

    .venv/bin/python bench/loadgen_kafka.py [--runs 3] [--seconds 30]

Each run lasts ``--seconds`` (30 by default, so that perf-test's JVM start and JIT warm-up do not
dominate its figure); the load average is printed beside every row (2 shared cores here).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from confluent_kafka.admin import AdminClient

from nuclab.loadgen.kafka_common import quiet_logger

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.harness: test equipment
from tests.harness.kafka import LocalBroker

NUCLAB = [sys.executable, "-m", "nuclab.cli", "loadgen", "produce"]


def nuclab_max(broker: LocalBroker, topic: str, size: int, seconds: int, out: Path) -> float:
    subprocess.run(
        [
            *NUCLAB,
            "--bootstrap",
            broker.bootstrap,
            "--topic",
            topic,
            "--rate",
            "max",
            "--duration",
            f"{seconds}s",
            "--size",
            str(size),
            "--results",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.read_text())["messages_per_s"]


def perf_test(
    broker: LocalBroker, topic: str, size: int, seconds: int, guess: float, *, batch_size: int
) -> float:
    records = max(int(guess * seconds), 1000)
    cmd = broker.java(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={broker.bootstrap}",
        "acks=all",
        "linger.ms=5",
        "buffer.memory=33554432",
        f"batch.size={batch_size}",
        heap="512m",
    )
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    last = out.strip().splitlines()[-1]
    return float(re.search(r"([\d.]+) records/sec", last).group(1))


def drop(broker: LocalBroker, topic: str) -> None:
    """Delete a measured topic: at ~100 MB/s, 30 s runs would otherwise fill the disk."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "logger": quiet_logger()})
    for future in admin.delete_topics([topic], operation_timeout=30).values():
        future.result()


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--perf-batch-size", type=int, default=1_000_000)
    ap.add_argument("--skip-accuracy", action="store_true", help="only the throughput table")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nuclab-bench-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    with LocalBroker(work / "kafka", heap="1g") as broker:
        out = work / "r.json"
        nuclab_max(broker, "warmup", 1024, 5, out)  # JIT warm-up of the broker
        print(
            "## max sustained produce throughput (same broker, acks=all, linger.ms=5, "
            f"perf-test batch.size={args.perf_batch_size})"
        )
        print("| size | nuclab loadgen msg/s | MB/s | perf-test msg/s | MB/s | ratio | load avg |")
        print("|---|---|---|---|---|---|---|")
        for size in (1024, 100 * 1024):
            ours, theirs = [], []
            for i in range(args.runs):
                ours.append(nuclab_max(broker, f"n{size}-{i}", size, args.seconds, out))
                drop(broker, f"n{size}-{i}")
                guess = statistics.median(ours)
                theirs.append(
                    perf_test(
                        broker,
                        f"p{size}-{i}",
                        size,
                        args.seconds,
                        guess,
                        batch_size=args.perf_batch_size,
                    )
                )
                drop(broker, f"p{size}-{i}")
            a, b = statistics.median(ours), statistics.median(theirs)
            ratios = " ".join(f"{x / y:.2f}" for x, y in zip(ours, theirs, strict=True))
            print(
                f"| {size // 1024} KiB | {a:,.0f} | {a * size / 1e6:,.1f} | {b:,.0f} | "
                f"{b * size / 1e6:,.1f} | {a / b:.2f} | {_load()} |",
                flush=True,
            )
            print(f"<!-- runs: nuclab {ours}, perf-test {theirs}, ratios {ratios} -->", flush=True)
        if args.skip_accuracy:
            return
        print("\n## rate accuracy of nuclab loadgen (achieved / target, 5 s runs)")
        print("| rate msg/s | size | achieved msg/s | error |")
        print("|---|---|---|---|")
        for rate in (500, 2000, 8000):
            for size in (1024, 8192):
                proc = subprocess.run(
                    [
                        *NUCLAB,
                        "--bootstrap",
                        broker.bootstrap,
                        "--topic",
                        f"acc-{rate}-{size}",
                        "--rate",
                        str(rate),
                        "--duration",
                        "5s",
                        "--size",
                        str(size),
                        "--results",
                        str(out),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                res = json.loads(out.read_text())
                drop(broker, f"acc-{rate}-{size}")
                err = res["achieved_rate"] / rate - 1
                print(
                    f"| {rate} | {size // 1024} KiB | {res['achieved_rate']:,.1f} | "
                    f"{err * 100:+.2f} %{'' if proc.returncode == 0 else ' (not held)'} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
