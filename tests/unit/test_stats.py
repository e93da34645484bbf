"""nuclab stats' arithmetic on metric text the real agents serve: three nuclab-peer processes and
two probes gossiping and probing over loopback; its percentiles checked against Prometheus' own
histogram_quantile (promtool evaluates the same buckets)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nuclab import cli, stats
from nuclab.histogram import histogram_quantile
from tests.conftest import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def _wait(what: str, predicate, seconds: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


@pytest.fixture
def three_peers(peer_binary: str, procs: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    """Three gossiping peers, 100 ms between messages; name -> metrics port."""
    ports = {n: (_free_port(), _free_port()) for n in ("p-0", "p-1", "p-2")}
    peers = [a for n, (p, _) in ports.items() for a in ("--peer", f"{n}=127.0.0.1:{p}")]
    for name, (port, metrics) in ports.items():
        env = {"NUCLAB_POD_NAME": name, "NUCLAB_EXPERIMENT": "unit", "NUCLAB_PORT": str(port),
               "NUCLAB_METRICS_PORT": str(metrics), "NUCLAB_MSG_SIZE": "1440",
               "NUCLAB_MSG_INTERVAL_MS": "100", "NUCLAB_CONNECT_TO": "2"}  # fmt: skip
        procs.append(
            subprocess.Popen(
                [peer_binary, "--bind", "127.0.0.1", *peers],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    metrics = {name: m for name, (_, m) in ports.items()}

    def received_enough() -> bool:
        scrapes = [stats.parse_metrics(_metrics(m)) for m in metrics.values()]
        return all(s.counters.get(stats.RECEIVED, 0) >= 20 for s in scrapes)

    _wait("20 messages received by every peer", received_enough)
    return metrics


def test_sums_of_real_peers_show_every_message_delivered_once(three_peers: dict[str, int]) -> None:
    scrapes = {name: stats.parse_metrics(_metrics(port)) for name, port in three_peers.items()}
    measured = stats.summarize("unit", "ns", scrapes, {}, simulated=2)
    assert (measured.peers, measured.measured, measured.simulated) == (5, 3, 2)
    assert measured.sent == sum(int(s.counters[stats.SENT]) for s in scrapes.values()) >= 30
    assert measured.expected == measured.sent * 2
    # read one after the other, 100 ms apart at most: a few messages may be in flight
    assert measured.expected - 12 <= measured.delivered <= measured.expected + 12
    assert measured.duplicates >= 0
    p50, p99 = measured.latency["p50"], measured.latency["p99"]
    assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 1.0  # loopback
    assert measured.probe is False and measured.rtt == {"p50": None, "p99": None}
    table = stats.format_stats(measured, "table")
    assert f"delivered         {measured.delivered} of {measured.expected} expected" in table
    assert "5: 3 measured, 2 simulated" in table


def _promql_quantiles(tmp_path: Path, texts: list[str], metric: str) -> dict[float, float]:
    """What Prometheus' histogram_quantile gives for the buckets in ``texts`` (via promtool),
    checked against nuclab's numbers: promtool fails a test whose expected value differs."""
    series = []
    for i, text in enumerate(texts):
        for line in text.splitlines():
            if line.startswith(f"{metric}_bucket{{"):
                labels, value = line.rsplit(" ", 1)
                series.append(
                    {"series": labels.replace("{", f'{{instance="{i}",', 1), "values": value}
                )
    summed = stats.Buckets()
    for text in texts:
        summed.merge(stats.parse_metrics(text).histograms[metric])
    ours = {q: summed.quantile(q) for q in (0.5, 0.9, 0.99)}
    tests = [
        {
            "input_series": series,
            "promql_expr_test": [
                {
                    "expr": f"histogram_quantile({q}, sum by (le) ({metric}_bucket))",
                    "eval_time": "0s",
                    "exp_samples": [{"labels": "{}", "value": value}],
                }
                for q, value in ours.items()
            ],
        }
    ]
    path = tmp_path / "quantiles.yml"
    path.write_text(yaml.safe_dump({"tests": tests}))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {q: v for q, v in ours.items() if v is not None}


def test_delivery_latency_percentiles_are_prometheus_histogram_quantile(
    three_peers: dict[str, int], tmp_path: Path
) -> None:
    texts = [_metrics(port) for port in three_peers.values()]
    got = _promql_quantiles(tmp_path, texts, stats.LATENCY)
    assert set(got) == {0.5, 0.9, 0.99}


def test_probe_rtt_of_two_real_probes(procs: list[subprocess.Popen[bytes]], tmp_path: Path) -> None:
    ports = {n: (_free_port(), _free_port()) for n in ("p-0", "p-1")}
    for name, (port, metrics) in ports.items():
        other = next(f"{n}=127.0.0.1:{p}" for n, (p, _) in ports.items() if n != name)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "nuclab.probe", "--name", name, "--experiment", "unit",
                 "--bind", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics),
                 "--target", other, "--interval", "0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip

    def probed() -> dict[str, stats.Scrape] | None:
        scrapes = {n: stats.parse_metrics(_metrics(m)) for n, (_, m) in ports.items()}
        done = all(
            s.histograms.get(stats.RTT, stats.Buckets()).total >= 10 for s in scrapes.values()
        )
        return scrapes if done else None

    scrapes = _wait("10 RTT samples per probe", probed)
    measured = stats.summarize("unit", "ns", {}, scrapes)
    assert measured.probe and measured.probed == 2
    assert measured.rtt_pairs == 2  # p-0 -> p-1 and p-1 -> p-0
    p50, p99 = measured.rtt["p50"], measured.rtt["p99"]
    assert p50 is not None and p99 is not None and 0 < p50 <= p99 < 0.1
    assert "pairs from 2 probes" in stats.format_stats(measured, "table")
    texts = [_metrics(m) for _, m in ports.values()]
    _promql_quantiles(tmp_path, texts, stats.RTT)


def test_quantile_edges_match_promql() -> None:
    bounds = [0.1, 1.0, math.inf]
    assert math.isnan(histogram_quantile(0.5, bounds, [0, 0, 0]))
    assert histogram_quantile(0.99, bounds, [1, 1, 10]) == 1.0  # in +Inf: the highest bound
    assert histogram_quantile(0.5, [-1.0, math.inf], [4, 4]) == -1.0
    assert histogram_quantile(-0.1, bounds, [1, 2, 2]) == -math.inf
    assert histogram_quantile(1.1, bounds, [1, 2, 2]) == math.inf
    assert math.isnan(histogram_quantile(0.5, [0.1, 1.0], [1, 2]))  # no +Inf bucket


def test_text_that_is_not_metrics_is_an_error() -> None:
    with pytest.raises(ValueError):
        stats.parse_metrics("<html>not found</html>\n")


@pytest.mark.parametrize(
    ("argv", "field"),
    [(["stats", "Purple"], "name"), (["stats", "a" * 42], "name")],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "-i", str(REPO / "inventory" / "sim")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"nuclab: error: {field}: ")
