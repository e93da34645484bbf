"""The probe sidecar and ``nuclab stats`` on the simulated lab's real nodes (nuc-2, nuc-4).

Acceptance 6 of issue 10: the probe sidecar runs beside the Go peer within its limits (48 MiB,
0.02 CPU) and serves RTT histograms measured between real pods. ``nuclab stats`` reads the
peers' and the probes' own endpoints through the API server's pod proxy: what it prints is
compared with the endpoints read directly from the pods' IPs (the host reaches them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.realnodes import REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods
from tests.integration.scrape import get, samples, scrape, total

PEERS = 4


@pytest.fixture(scope="module")
def rtt(core_api: Any) -> Iterator[Any]:
    """Experiment ``rtt``: 4 reference peers (16 MiB, 0.05 CPU, 16/16 Mbit/s) with the probe, on
    the real nodes, 500 ms between messages."""
    proc = nuclab(
        "create", "--name", "rtt", "--peers", str(PEERS), "--msg-rate", "500", "--cpu", "0.05",
        "--ram", "16", "--uplink-bw", "16", "--downlink-bw", "16", "--label", "node-kind=real",
        "--probe", "-q", check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    yield core_api
    nuclab("delete", "rtt", "--no-export", "-q", check=False)


def _rtt_series(text: str) -> dict[tuple[str, str], float]:
    """(source, target) -> observations of the probe's RTT histogram."""
    return {
        (s.labels["source"], s.labels["target"]): s.value
        for s in samples(text)
        if s.name == "nuclab_peer_rtt_seconds_count"
    }


def test_the_probe_sidecar_runs_beside_the_peer_and_measures_rtt_between_real_pods(
    rtt: Any,
) -> None:
    pods = wait_for(
        lambda: (
            p
            if len(p := [x for x in peer_pods(rtt, "rtt") if x.status.phase == "Running"]) == PEERS
            else None
        ),
        120,
        f"{PEERS} running peers",
    )
    names = {p.metadata.name for p in pods}
    for pod in pods:
        assert pod.spec.node_name in REAL
        containers = {c.name: c for c in pod.spec.containers}
        assert set(containers) == {"peer", "probe"}, set(containers)
        limits = containers["probe"].resources.limits
        assert (limits["memory"], limits["cpu"]) == ("48Mi", "20m")
        assert containers["peer"].command == ["nuclab-peer"]

    def all_pairs_measured() -> dict[str, dict[tuple[str, str], float]] | None:
        seen = {}
        for pod in pods:
            try:
                seen[pod.metadata.name] = _rtt_series(
                    get(f"http://{pod.status.pod_ip}:9465/metrics")
                )
            except OSError:
                return None
        measured = {pair for series in seen.values() for pair, n in series.items() if n > 0}
        return seen if len(measured) == PEERS * (PEERS - 1) else None

    seen = wait_for(all_pairs_measured, 120, "RTT samples for every pair of real peers")
    for source, series in seen.items():
        # every other real pod, by its pod name; never itself
        assert {t for (s, t), n in series.items() if n > 0} == names - {source}
    for pod in peer_pods(rtt, "rtt"):
        for status in pod.status.container_statuses:
            assert status.ready and status.restart_count == 0, (pod.metadata.name, status)


def test_stats_reads_the_real_peers_and_probes_through_the_api(rtt: Any) -> None:
    def stats_with_rtt() -> dict[str, Any] | None:
        proc = nuclab("stats", "rtt", "-o", "json", check=False)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        complete = data["rtt"]["p50"] is not None and data["delivered"] > 40
        return data if complete and data["rtt_pairs"] == PEERS * (PEERS - 1) else None

    data = wait_for(stats_with_rtt, 120, "stats with delivered messages and RTT of every pair")
    assert (data["peers"], data["measured"], data["simulated"]) == (PEERS, PEERS, 0)
    assert data["unreachable"] == {}
    assert data["expected"] == data["sent"] * (PEERS - 1)
    # read one peer after the other: messages sent in between may still be on their way
    assert data["expected"] - 3 * PEERS <= data["delivered"] <= data["expected"] + 3 * PEERS
    for key in ("latency", "rtt"):
        p50, p99 = data[key]["p50"], data[key]["p99"]
        assert 0 < p50 <= p99 < 1.0, (key, data[key])
    assert data["probe"] is True and data["probed"] == PEERS

    # the same counters, read directly from the pods now, are at least what stats saw
    sent_now = 0.0
    for pod in peer_pods(rtt, "rtt"):
        found = scrape(f"http://{pod.status.pod_ip}:9464/metrics")
        sent_now += total(found, "nuclab_peer_messages_sent_total")
    # 2 messages a second a peer, a few seconds later
    assert data["sent"] <= sent_now <= data["sent"] + PEERS * 2 * 30

    table = nuclab("stats", "rtt").stdout
    assert f"{PEERS}: {PEERS} measured, 0 simulated" in table
    assert "probe RTT         p50 " in table and "delivery latency  p50 " in table


def test_stats_counts_peers_on_kwok_nodes_as_simulated(core_api: Any) -> None:
    proc = nuclab("create", "--name", "mixed", "--peers", "6", "--probe", "-q", check=False)
    try:
        assert proc.returncode == 0, proc.stderr
        pods = peer_pods(core_api, "mixed")
        on_kwok = [p for p in pods if p.spec.node_name not in REAL]
        assert on_kwok, "the spread put no peer on a kwok node"
        data = json.loads(nuclab("stats", "mixed", "-o", "json").stdout)
        assert data["peers"] == 6
        assert data["simulated"] == len(on_kwok)
        assert data["measured"] + len(data["unreachable"]) == 6 - len(on_kwok)
    finally:
        nuclab("delete", "mixed", "--no-export", "-q", check=False)


def test_stats_of_an_experiment_that_does_not_exist_exits_3(sim_lab: Path) -> None:
    proc = nuclab("stats", "nosuch", check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith("nuclab: error: experiment 'nosuch' does not exist")
    assert proc.stderr.count("\n") == 1
