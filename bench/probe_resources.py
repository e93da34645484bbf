"""Probe footprint: RSS and CPU of one ``nuclab probe`` with 10, 100 and 300 peers.

The measured probe probes N targets once a second (UDP echo, a TCP connect every 10th round)
and, like in an experiment where every peer probes every other, answers N probes a second from
a load generator. Everything runs on loopback: N responders are one answer-only probe reached
at N loopback addresses (127.0.1.x), the load is a second probe aimed N times at the measured
one. CPU is utime+stime from /proc over the measuring window, RSS is VmRSS at its end (and the
peak, VmHWM).

    .venv/bin/python bench/probe_resources.py [--peers 10 100 300] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

NUCLAB = [sys.executable, "-m", "nuclab.probe", "--metrics-port", "0"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def memory_kib(pid: int) -> tuple[int, int]:
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def measure(peers: int, seconds: float, warmup: float, base_port: int) -> dict[str, float]:
    responder_port, measured_port = base_port, base_port + 1
    procs = []
    try:
        procs.append(subprocess.Popen(
            [*NUCLAB, "--name", "responders", "--answer-only", "--port", str(responder_port)],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        targets = [
            a for i in range(peers)
            for a in ("--target", f"peer-{i}=127.0.{1 + i // 250}.{1 + i % 250}:{responder_port}")
        ]  # fmt: skip
        measured = subprocess.Popen(
            [*NUCLAB, "--name", "measured", "--port", str(measured_port), *targets],
            stdout=subprocess.DEVNULL,
        )
        procs.append(measured)
        load = [a for i in range(peers) for a in ("--target", f"in-{i}=127.0.0.1:{measured_port}")]
        procs.append(subprocess.Popen(
            [*NUCLAB, "--name", "load", "--port", str(base_port + 2), "--tcp-every", "0", *load],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        time.sleep(warmup)
        c0, t0 = cpu_seconds(measured.pid), time.monotonic()
        time.sleep(seconds)
        c1, t1 = cpu_seconds(measured.pid), time.monotonic()
        rss, hwm = memory_kib(measured.pid)
        assert measured.poll() is None, "the measured probe died"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
    return {
        "cpu_percent": 100 * (c1 - c0) / (t1 - t0),
        "rss_mib": rss / 1024,
        "hwm_mib": hwm / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(
        f"probe footprint: {args.seconds:g} s after {args.warmup:g} s warm-up, 1 probe/s/peer, "
        f"median of {args.runs} runs"
    )
    print(f"{'peers':>6} {'CPU % of a core':>16} {'RSS MiB':>8} {'peak RSS MiB':>13}")
    for i, n in enumerate(args.peers):
        runs = [measure(n, args.seconds, args.warmup, 19500 + 10 * i) for _ in range(args.runs)]
        r = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        print(f"{n:>6} {r['cpu_percent']:>16.2f} {r['rss_mib']:>8.1f} {r['hwm_mib']:>13.1f}")


if __name__ == "__main__":
    main()
