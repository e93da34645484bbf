"""What a running experiment's peers measured, from their own metrics endpoints (``nuclab stats``).

Each peer serves its counters and histograms (``nuclab-peer``, port ``metrics``) and, with the
spec's ``probe``, the probe sidecar its RTT histograms (port ``probe-metrics``). They are read
through the API server's pod proxy (``/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/metrics``),
which works wherever the CLI reaches the API: a K3s lab and the simulated one alike. Peers on
kwok nodes are simulated (nothing runs there): they are counted, not read.

Delivery: every message a peer sends should reach every other measured peer once, so expected =
sum(sent) x (measured peers - 1); delivered is the sum of the peers' first receptions.
Percentiles come from the summed histogram buckets, interpolated as PromQL's histogram_quantile.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from nuclab.histogram import histogram_quantile

SENT = "nuclab_peer_messages_sent_total"
RECEIVED = "nuclab_peer_messages_received_total"
DUPLICATE = "nuclab_peer_messages_duplicate_total"
LATENCY = "nuclab_peer_delivery_latency_seconds"
RTT = "nuclab_peer_rtt_seconds"
PEER_PORT = ("metrics", 9464)
PROBE_PORT = ("probe-metrics", 9465)
QUANTILES = (0.5, 0.99)
OUTPUTS = ("table", "json")


@dataclass
class Buckets:
    """A classic histogram summed over series: upper bound -> cumulative count."""

    counts: dict[float, float] = field(default_factory=dict)

    def add(self, bound: float, count: float) -> None:
        self.counts[bound] = self.counts.get(bound, 0.0) + count

    def merge(self, other: Buckets) -> None:
        for bound, count in other.counts.items():
            self.add(bound, count)

    @property
    def total(self) -> float:
        return self.counts.get(math.inf, 0.0)

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, None without observations."""
        bounds = sorted(self.counts)
        value = histogram_quantile(q, bounds, [self.counts[b] for b in bounds])
        return None if math.isnan(value) else value


@dataclass
class Scrape:
    """One endpoint's text, summed over its series: counters by sample name, histograms by family;
    ``pairs`` counts the (source, target) series of a histogram that have observations."""

    counters: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Buckets] = field(default_factory=dict)
    pairs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


def parse_metrics(text: str) -> Scrape:
    """Prometheus text exposition -> a ``Scrape`` (raises ``ValueError`` on text that is not)."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.type == "histogram" and sample.name == f"{family.name}_bucket":
                le = sample.labels.get("le", "+Inf")
                bound = math.inf if le in ("+Inf", "Inf") else float(le)
                scrape.histograms.setdefault(family.name, Buckets()).add(bound, sample.value)
                if bound == math.inf and sample.value > 0 and "source" in sample.labels:
                    pair = (sample.labels["source"], sample.labels.get("target", ""))
                    scrape.pairs.setdefault(family.name, set()).add(pair)
            elif family.type == "counter" and sample.name.endswith("_total"):
                scrape.counters[sample.name] = scrape.counters.get(sample.name, 0.0) + sample.value
    return scrape


@dataclass
class Stats:
    """The experiment's measurements as ``nuclab stats`` prints them (seconds, counts)."""

    experiment: str
    namespace: str
    peers: int = 0
    measured: int = 0
    simulated: int = 0
    unreachable: dict[str, str] = field(default_factory=dict)
    sent: int = 0
    delivered: int = 0
    expected: int = 0
    duplicates: int = 0
    latency: dict[str, float | None] = field(default_factory=dict)
    probe: bool = False
    probed: int = 0
    rtt_pairs: int = 0
    rtt: dict[str, float | None] = field(default_factory=dict)

    @property
    def delivered_ratio(self) -> float | None:
        return self.delivered / self.expected if self.expected else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivered_ratio"] = self.delivered_ratio
        return data


def _percentiles(buckets: Buckets | None) -> dict[str, float | None]:
    return {f"p{round(q * 100)}": buckets.quantile(q) if buckets else None for q in QUANTILES}


def summarize(
    experiment: str,
    namespace: str,
    peers: Mapping[str, Scrape],
    probes: Mapping[str, Scrape],
    *,
    simulated: int = 0,
    unreachable: Mapping[str, str] | None = None,
) -> Stats:
    """The sums over the measured peers (``peers``: pod -> its peer endpoint's scrape; ``probes``:
    pod -> its probe sidecar's, for the pods that run one)."""
    unreachable = dict(unreachable or {})
    latency, rtt = Buckets(), Buckets()
    stats = Stats(experiment, namespace, simulated=simulated, unreachable=unreachable)
    stats.measured = len(peers)
    stats.peers = stats.measured + simulated + len(unreachable)
    for scrape in peers.values():
        stats.sent += int(scrape.counters.get(SENT, 0))
        stats.delivered += int(scrape.counters.get(RECEIVED, 0))
        stats.duplicates += int(scrape.counters.get(DUPLICATE, 0))
        if LATENCY in scrape.histograms:
            latency.merge(scrape.histograms[LATENCY])
    stats.expected = stats.sent * max(0, stats.measured - 1)
    pairs: set[tuple[str, str]] = set()
    for scrape in probes.values():
        if RTT in scrape.histograms:
            rtt.merge(scrape.histograms[RTT])
        pairs |= scrape.pairs.get(RTT, set())
    stats.latency = _percentiles(latency if latency.total else None)
    stats.probe = bool(probes)
    stats.probed = len(probes)
    stats.rtt_pairs = len(pairs)
    stats.rtt = _percentiles(rtt if rtt.total else None)
    return stats


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.3g} ms"


def format_stats(stats: Stats, output: str) -> str:
    """``table`` (one measurement a line) or ``json``."""
    if output == "json":
        return json.dumps(stats.as_dict(), indent=2) + "\n"
    ratio = stats.delivered_ratio
    share = f" ({ratio:.1%})" if ratio is not None else ""
    peers = f"{stats.peers}: {stats.measured} measured, {stats.simulated} simulated"
    if stats.unreachable:
        peers += f", {len(stats.unreachable)} not reachable"
    lines = [
        f"experiment        {stats.experiment} (namespace {stats.namespace})",
        f"peers             {peers}",
        f"messages sent     {stats.sent}",
        f"delivered         {stats.delivered} of {stats.expected} expected{share}",
        f"duplicates        {stats.duplicates}",
        f"delivery latency  p50 {_ms(stats.latency.get('p50'))}, "
        f"p99 {_ms(stats.latency.get('p99'))}",
    ]
    if stats.probe:
        lines.append(
            f"probe RTT         p50 {_ms(stats.rtt.get('p50'))}, p99 {_ms(stats.rtt.get('p99'))}"
            f" ({stats.rtt_pairs} pairs from {stats.probed} probes)"
        )
    else:
        lines.append("probe RTT         - (no probe: nuclab create --probe)")
    for pod, reason in sorted(stats.unreachable.items()):
        lines.append(f"not reachable     {pod}: {reason}")
    return "\n".join(lines) + "\n"


def container_port(pod: Mapping[str, Any], name: str, default: int) -> int | None:
    """The port named ``name`` of one of the pod's containers; ``default`` for the peer's metrics
    port when the pod names none, None for a port no container has (e.g. no probe sidecar)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return int(port["containerPort"])
    return default if name == PEER_PORT[0] else None


def proxy_path(namespace: str, pod: str, port: int, path: str = "metrics") -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path}"
