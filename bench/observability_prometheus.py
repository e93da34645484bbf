"""How much Prometheus nuclab's stack needs: series per peer and node, memory per 100 peers,
bytes per sample and the retention a default volume holds.

A real Prometheus (Debian package) on loopback scrapes the simulated cluster of
tests.harness.simlab (6 nodes, one experiment of N peers) with nuclab's recording rules,
for N = 0, 100 and 200. Memory is Prometheus' own process_resident_memory_bytes once the head
holds every series. Bytes per sample come from the blocks Prometheus cuts (1-minute blocks here)
as `promtool tsdb list` reports them.

    python bench/observability_prometheus.py
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.harness: the test equipment, outside the nuclab package
from tests.harness.prometheus import Prometheus  # noqa: E402
from tests.harness.simlab import Exporter, World, scrape_config  # noqa: E402

RULES = REPO / "roles/monitoring/files/rules/nuclab.rules.yml"
NODES = ["nuc-master", "nuc-1", "nuc-2", "nuc-3", "nuc-4", "nuc-5"]
PEERS = (0, 50, 100)
SETTLE_S = 60
INTERVAL = "5s"
VARS = yaml.safe_load((REPO / "roles/monitoring/vars/main.yml").read_text())


def _config(exporter: Exporter, interval: str = INTERVAL) -> dict:
    return scrape_config(
        exporter,
        peer_relabelings=VARS["_monitoring_experiment_relabelings"],
        peer_metric_relabelings=VARS["_monitoring_experiment_metric_relabelings"],
        node_exporter_relabelings=VARS["_monitoring_node_exporter_relabelings"],
        rule_files=[str(RULES)],
        interval=interval,
    )


def _scalar(prom: Prometheus, expr: str) -> float:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else 0.0


def measure(peers: int, workdir: Path, seconds: float = SETTLE_S) -> dict[str, float]:
    world = World(nodes=NODES, experiments={"bench": peers} if peers else {})
    exporter = Exporter(world)
    prom = Prometheus(workdir, _config(exporter))
    try:
        time.sleep(seconds)
        memory = [
            _scalar(prom, 'process_resident_memory_bytes{job="prometheus"}') for _ in range(3)
        ]
        return {
            "peers": peers,
            "head_series": _scalar(prom, "prometheus_tsdb_head_series"),
            "node_series": _scalar(prom, 'count({job=~"node-exporter|kepler|kubelet"})'),
            "rtt_series": _scalar(prom, 'count({__name__=~"nuclab_peer_rtt_seconds.*"})'),
            "targets_up": _scalar(prom, "sum(up)"),
            "targets": _scalar(prom, "count(up)"),
            "rss_bytes": statistics.median(memory),
        }
    finally:
        prom.stop()
        exporter.close()


def bytes_per_sample(peers: int, workdir: Path) -> float:
    """Samples and bytes of the blocks cut from 3 minutes of scraping (1-minute blocks)."""
    world = World(nodes=NODES, experiments={"bench": peers})
    exporter = Exporter(world)
    flags = ["--storage.tsdb.min-block-duration=1m", "--storage.tsdb.max-block-duration=1m"]
    prom = Prometheus(workdir, _config(exporter, "1s"), flags)
    try:
        time.sleep(200)
    finally:
        prom.stop()
        exporter.close()
    promtool = shutil.which("promtool") or "promtool"
    out = subprocess.run(
        [promtool, "tsdb", "list", str(prom.data)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    total_samples = total_bytes = 0
    for line in out[1:]:
        cols = line.split("\t") if "\t" in line else line.split()
        # BLOCK ULID, MIN TIME, MAX TIME, DURATION, NUM SAMPLES, NUM CHUNKS, NUM SERIES, SIZE
        total_samples += int(cols[4])
        total_bytes += _size(cols[7])
    if total_samples == 0:
        raise SystemExit("no block was cut: run longer")
    return total_bytes / total_samples


def _size(text: str) -> int:
    units = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
    for unit, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(n, Path(tmp) / f"p{n}") for n in PEERS]
        for run in runs:
            print(
                f"peers={run['peers']:4d} head_series={run['head_series']:7.0f} "
                f"rtt_series={run['rtt_series']:7.0f} node_series={run['node_series']:6.0f} "
                f"up={run['targets_up']:.0f}/{run['targets']:.0f} "
                f"rss={run['rss_bytes'] / 2**20:7.1f} MiB"
            )
        base, top = runs[0], runs[-1]
        series_per_peer = (top["head_series"] - base["head_series"]) / top["peers"]
        flat = (top["head_series"] - top["rtt_series"] - base["head_series"]) / top["peers"]
        print(f"series per peer without the RTT matrix: {flat:.1f}")
        print(
            f"RTT matrix series per (source, target) pair: "
            f"{top['rtt_series'] / (top['peers'] * (top['peers'] - 1)):.1f}"
        )
        mib_per_100 = (top["rss_bytes"] - base["rss_bytes"]) / 2**20 / top["peers"] * 100
        print(f"series per peer: {series_per_peer:.1f}")
        print(f"series per node (simulated exporters): {base['node_series'] / len(NODES):.1f}")
        print(f"Prometheus memory per 100 peers: {mib_per_100:.1f} MiB")
        bps = bytes_per_sample(20, Path(tmp) / "blocks")
        print(f"bytes per sample (blocks): {bps:.2f}")
        volume = 20 * 2**30 * 0.85  # default: 20Gi volume, TSDB capped at 85%
        interval = 30  # monitoring_scrape_interval default; experiments every 15 s
        for peers in (100, 200):
            # The RTT matrix grows with pairs of peers, the rest with peers.
            pair_series = top["rtt_series"] / (top["peers"] * (top["peers"] - 1))
            series = base["head_series"] + flat * peers + pair_series * peers * (peers - 1)
            per_day = series * 86400 / interval * bps
            print(
                f"{peers} peers: {series:.0f} series, {per_day / 2**30:.2f} GiB/day, "
                f"default volume holds {volume / per_day:.0f} days"
            )


if __name__ == "__main__":
    main()
