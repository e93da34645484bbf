"""The probe's Prometheus metrics (names are shared with the Grafana dashboards: keep them)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

# 100 us .. 2.5 s: a LAN hop is ~0.1-1 ms, a shaped or relayed path up to seconds.
RTT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
LABELS = ("experiment", "source", "target")


@dataclass(slots=True)
class ProbeMetrics:
    registry: CollectorRegistry
    rtt: Histogram
    sent: Counter
    lost: Counter
    tcp_connect: Histogram
    tcp_failed: Counter
    refused: Counter


def probe_metrics() -> ProbeMetrics:
    registry = CollectorRegistry(auto_describe=False)
    return ProbeMetrics(
        registry=registry,
        rtt=Histogram(
            "nuclab_peer_rtt_seconds",
            "Round-trip time of UDP echo probes between peers.",
            LABELS,
            buckets=RTT_BUCKETS,
            registry=registry,
        ),
        sent=Counter(
            "nuclab_peer_probe_sent",
            "UDP echo probes sent.",
            LABELS,
            registry=registry,
        ),
        lost=Counter(
            "nuclab_peer_probe_lost",
            "UDP echo probes without an answer within the timeout.",
            LABELS,
            registry=registry,
        ),
        tcp_connect=Histogram(
            "nuclab_peer_tcp_connect_seconds",
            "Time to complete a TCP connect (SYN to SYN-ACK: one round trip) to the peer's probe.",
            LABELS,
            buckets=RTT_BUCKETS,
            registry=registry,
        ),
        tcp_failed=Counter(
            "nuclab_peer_tcp_connect_failed",
            "TCP connects to the peer's probe that failed or timed out.",
            LABELS,
            registry=registry,
        ),
        refused=Counter(
            "nuclab_probe_answers_refused",
            "Echo requests not answered: their source address was over the reply rate.",
            registry=registry,
        ),
    )
