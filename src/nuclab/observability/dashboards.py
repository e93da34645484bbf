"""The six nuclab Grafana dashboards, generated as JSON.

Every experiment panel selects ``experiment="$experiment"`` on series that carry that label:
the recording rules of ``roles/monitoring/files/rules/nuclab.rules.yml`` for cAdvisor,
kube-state-metrics and Kepler data, the target label of the PodMonitor for peer and probe
metrics, and the Loki stream label Alloy sets for logs.

Regenerate the committed files with::

    python -m nuclab.observability.dashboards roles/monitoring/files/dashboards
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nuclab.observability.grafana import (
    PROMETHEUS,
    Json,
    Panel,
    Query,
    dashboard,
    query_variable,
)

EXP = 'experiment="$experiment"'
PEERS = 'pod=~"$peer"'
NODES = 'node=~"$node"'
RATE = "[$__rate_interval]"
# Interfaces of a node that carry its real traffic (not loopback, pod veths or the overlay).
NIC = 'device!~"lo|veth.*|cni.*|flannel.*"'
QUANTILES = (0.5, 0.9, 0.99)
LAB_NAMESPACES = "monitoring|kafka|kube-system|nuclab-system"


def variables() -> list[Json]:
    """experiment (one), peer (many, All) and node (many, All): the same on every dashboard."""
    return [
        query_variable(
            "experiment",
            "Experiment",
            "label_values(nuclab:pod_experiment:info, experiment)",
            multi=False,
            include_all=False,
            datasource=PROMETHEUS,
        ),
        query_variable(
            "peer",
            "Peer",
            f"label_values(nuclab:pod_experiment:info{{{EXP}}}, pod)",
            multi=True,
            include_all=True,
            datasource=PROMETHEUS,
        ),
        query_variable(
            "node",
            "Node",
            "label_values(kube_node_info, node)",
            multi=True,
            include_all=True,
            datasource=PROMETHEUS,
        ),
    ]


def _pod(series: str) -> str:
    return f"sum by (pod) ({series}{{{EXP}, {PEERS}, {NODES}}})"


def experiments() -> Json:
    panels = [
        Panel(
            "Data rate down per peer",
            [Query(_pod("nuclab:pod_network_receive_bytes:rate2m"), "{{pod}}")],
            unit="Bps",
        ),
        Panel(
            "Data rate up per peer",
            [Query(_pod("nuclab:pod_network_transmit_bytes:rate2m"), "{{pod}}")],
            unit="Bps",
        ),
        Panel(
            "Experiment data rate",
            [
                Query(f"nuclab:experiment_network_receive_bytes:rate2m{{{EXP}}}", "down"),
                Query(f"nuclab:experiment_network_transmit_bytes:rate2m{{{EXP}}}", "up"),
            ],
            unit="Bps",
        ),
        Panel(
            "Packets dropped per peer",
            [Query(_pod("nuclab:pod_network_dropped_packets:rate2m"), "{{pod}}")],
            unit="pps",
        ),
        Panel(
            "CPU per peer",
            [Query(_pod("nuclab:pod_cpu_usage_seconds:rate2m"), "{{pod}}")],
            unit="short",
            description="CPU cores used by each peer.",
        ),
        Panel(
            "Experiment CPU",
            [Query(f"nuclab:experiment_cpu_usage_seconds:rate2m{{{EXP}}}", "{{experiment}}")],
            unit="short",
        ),
        Panel(
            "Memory per peer",
            [Query(_pod("nuclab:pod_memory_working_set_bytes:sum"), "{{pod}}")],
            unit="bytes",
        ),
        Panel(
            "Experiment memory",
            [Query(f"nuclab:experiment_memory_working_set_bytes:sum{{{EXP}}}", "{{experiment}}")],
            unit="bytes",
        ),
        Panel(
            "Share of cluster capacity",
            [
                Query(f"nuclab:experiment_cpu_share:ratio{{{EXP}}}", "CPU"),
                Query(f"nuclab:experiment_memory_share:ratio{{{EXP}}}", "memory"),
            ],
            unit="percentunit",
            description="The experiment's usage over the allocatable CPU and memory of all nodes.",
        ),
        Panel(
            "CPU share of cluster per peer",
            [
                Query(
                    f"{_pod('nuclab:pod_cpu_usage_seconds:rate2m')}"
                    ' / scalar(sum(kube_node_status_allocatable{resource="cpu"}))',
                    "{{pod}}",
                )
            ],
            unit="percentunit",
        ),
        Panel(
            "Peers running / desired",
            [
                Query(f"nuclab:experiment_peers_running:sum{{{EXP}}}", "running", instant=True),
                Query(f"nuclab:experiment_peers_desired:sum{{{EXP}}}", "desired", instant=True),
            ],
            kind="stat",
            width=6,
        ),
        Panel(
            "Peers per node",
            [Query(f"count by (node) (nuclab:pod_running:max{{{EXP}, {NODES}}} == 1)", "{{node}}")],
            kind="timeseries",
            width=6,
        ),
    ]
    return dashboard(
        "nuclab-experiments",
        "nuclab / Experiments",
        "Data rate, CPU and memory of one experiment, per peer, and its share of the cluster.",
        variables(),
        panels,
    )


def _logs(extra: str = "") -> str:
    return f"{{{EXP}, {PEERS}, {NODES}}}{extra}"


def experiment_logs() -> Json:
    panels = [
        Panel(
            "Messages sent (log lines 'sending at') per peer",
            [
                Query(
                    f"sum by (pod) (count_over_time({_logs(' |= `sending at`')} [$__interval]))",
                    "{{pod}}",
                    datasource="loki",
                )
            ],
        ),
        Panel(
            "INFO vs ERROR lines",
            [
                Query(
                    f"sum(count_over_time({_logs(' |= `INFO`')} [$__interval]))",
                    "INFO",
                    datasource="loki",
                ),
                Query(
                    f"sum(count_over_time({_logs(' |= `ERROR`')} [$__interval]))",
                    "ERROR",
                    datasource="loki",
                ),
            ],
        ),
        Panel(
            "Delivery failures (metrics)",
            [
                Query(
                    f"clamp_min(nuclab:experiment_messages_sent:rate2m{{{EXP}}}"
                    f" * on (experiment) (nuclab:experiment_peers_running:sum{{{EXP}}} - 1)"
                    f" - on (experiment) nuclab:experiment_messages_received:rate2m{{{EXP}}}, 0)",
                    "missing deliveries/s",
                )
            ],
            unit="short",
            description="Messages every other running peer should have received but did not.",
        ),
        Panel(
            "Send and delivery errors (logs)",
            [
                Query(
                    "sum by (pod) (count_over_time("
                    + _logs(" |~ `(?i)(fail|error).*(send|deliver|publish)`")
                    + " [$__interval]))",
                    "{{pod}}",
                    datasource="loki",
                )
            ],
        ),
        Panel(
            "Messages sent / received per peer (metrics)",
            [
                Query(
                    _peer_rate("nuclab_peer_messages_sent_total"),
                    "sent {{pod}}",
                ),
                Query(
                    _peer_rate("nuclab_peer_messages_received_total"),
                    "received {{pod}}",
                ),
            ],
            unit="short",
        ),
        Panel(
            "Raw logs",
            [Query(_logs(), datasource="loki")],
            kind="logs",
            width=24,
            height=14,
            options={"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending"},
        ),
    ]
    return dashboard(
        "nuclab-experiment-logs",
        "nuclab / Experiment logs",
        "Logs of one experiment from Loki (stream label experiment), per peer.",
        variables(),
        panels,
    )


def physical_cluster() -> Json:
    def node_rate(metric: str, extra: str = "") -> str:
        return f"sum by (node) (rate({metric}{{{NODES}{extra}}}{RATE}))"

    panels = [
        Panel(
            "CPU used per node",
            [
                Query(
                    "1 - avg by (node) ("
                    f'rate(node_cpu_seconds_total{{mode="idle", {NODES}}}{RATE}))',
                    "{{node}}",
                )
            ],
            unit="percentunit",
        ),
        Panel(
            "Memory used per node",
            [
                Query(
                    f"1 - node_memory_MemAvailable_bytes{{{NODES}}}"
                    f" / node_memory_MemTotal_bytes{{{NODES}}}",
                    "{{node}}",
                )
            ],
            unit="percentunit",
        ),
        Panel(
            "Bandwidth per node",
            [
                Query(node_rate("node_network_receive_bytes_total", f", {NIC}"), "in {{node}}"),
                Query(node_rate("node_network_transmit_bytes_total", f", {NIC}"), "out {{node}}"),
            ],
            unit="Bps",
        ),
        Panel(
            "Packet drops per node",
            [
                Query(node_rate("node_network_receive_drop_total", f", {NIC}"), "in {{node}}"),
                Query(node_rate("node_network_transmit_drop_total", f", {NIC}"), "out {{node}}"),
            ],
            unit="pps",
        ),
        Panel(
            "Packet errors per node",
            [
                Query(node_rate("node_network_receive_errs_total", f", {NIC}"), "in {{node}}"),
                Query(node_rate("node_network_transmit_errs_total", f", {NIC}"), "out {{node}}"),
            ],
            unit="pps",
        ),
        Panel(
            "Node-to-node RTT (p50, Pushgateway)",
            [
                Query(
                    _node_rtt(0.5),
                    "{{origin}} → {{destination}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "Node-to-node RTT matrix",
            [
                Query(
                    _node_rtt(q),
                    f"p{round(q * 100)}",
                    instant=True,
                )
                for q in QUANTILES
            ],
            kind="table",
            unit="s",
            width=24,
        ),
        Panel(
            "Peers of the selected experiment per node",
            [Query(f"count by (node) (nuclab:pod_running:max{{{EXP}, {NODES}}} == 1)", "{{node}}")],
            width=24,
        ),
    ]
    return dashboard(
        "nuclab-physical-cluster",
        "nuclab / Physical cluster",
        "CPU, memory, bandwidth, drops and errors per node (node exporter) and node-to-node RTT.",
        variables(),
        panels,
    )


def kubernetes_cluster() -> Json:
    lab = f'namespace=~"{LAB_NAMESPACES}", {NODES}'
    panels = [
        Panel(
            "CPU of the lab's services per namespace",
            [
                Query(
                    f"sum by (namespace) (nuclab:service_pod_cpu_usage_seconds:rate2m{{{NODES}}})",
                    "{{namespace}}",
                )
            ],
        ),
        Panel(
            "Memory of the lab's services per namespace",
            [
                Query(
                    "sum by (namespace) "
                    f"(nuclab:service_pod_memory_working_set_bytes:sum{{{NODES}}})",
                    "{{namespace}}",
                )
            ],
            unit="bytes",
        ),
        Panel(
            "CPU per service pod (Prometheus, Grafana, Loki, Kafka, ...)",
            [
                Query(
                    "sum by (namespace, pod) "
                    f"(nuclab:service_pod_cpu_usage_seconds:rate2m{{{lab}}})",
                    "{{namespace}}/{{pod}}",
                )
            ],
        ),
        Panel(
            "Memory per service pod",
            [
                Query(
                    "sum by (namespace, pod) "
                    f"(nuclab:service_pod_memory_working_set_bytes:sum{{{lab}}})",
                    "{{namespace}}/{{pod}}",
                )
            ],
            unit="bytes",
        ),
        Panel(
            "Lab services vs the selected experiment (CPU)",
            [
                Query(
                    f"sum(nuclab:service_pod_cpu_usage_seconds:rate2m{{{NODES}}})", "lab services"
                ),
                Query(f"nuclab:experiment_cpu_usage_seconds:rate2m{{{EXP}}}", "{{experiment}}"),
            ],
        ),
        Panel(
            "Prometheus storage",
            [
                Query("sum(prometheus_tsdb_head_series)", "head series"),
                Query("sum(prometheus_tsdb_storage_blocks_bytes)", "block bytes"),
            ],
        ),
        Panel(
            "Service pods not running",
            [
                Query(
                    'sum by (namespace) (kube_pod_status_phase{phase=~"Pending|Failed|Unknown", '
                    f'namespace=~"{LAB_NAMESPACES}"}})',
                    "{{namespace}}",
                )
            ],
            width=24,
        ),
    ]
    return dashboard(
        "nuclab-kubernetes-cluster",
        "nuclab / Kubernetes cluster",
        "What the lab's own services (Prometheus, Grafana, Loki, Alloy, Kafka) cost, per node.",
        variables(),
        panels,
    )


def energy() -> Json:
    # Kepler's zones overlap: the recorded series sum the ones that do not (see the rules file).
    node_watts = f"nuclab:node_kepler_joules:rate2m{{{NODES}}}"
    panels = [
        Panel("Power per node", [Query(node_watts, "{{node}}")], unit="watt"),
        Panel(
            "Energy per node over the range",
            [
                Query(
                    f"avg_over_time({node_watts}[$__range]) * $__range_s",
                    "{{node}}",
                    instant=True,
                )
            ],
            kind="stat",
            unit="joule",
        ),
        Panel(
            "Power per peer (pod)",
            [Query(_pod("nuclab:pod_kepler_joules:rate2m"), "{{pod}}")],
            unit="watt",
        ),
        Panel(
            "Experiment power",
            [Query(f"nuclab:experiment_kepler_joules:rate2m{{{EXP}}}", "{{experiment}}")],
            unit="watt",
        ),
        Panel(
            "Experiment energy over the range",
            [
                Query(
                    f"avg_over_time(nuclab:experiment_kepler_joules:rate2m{{{EXP}}}[$__range])"
                    " * $__range_s",
                    "{{experiment}}",
                    instant=True,
                )
            ],
            kind="stat",
            unit="joule",
        ),
        Panel(
            "Experiment's share of node power",
            [
                Query(
                    f"sum by (node) (nuclab:pod_kepler_joules:rate2m{{{EXP}, {NODES}}})"
                    " / on (node) nuclab:node_kepler_joules:rate2m",
                    "{{node}}",
                )
            ],
            unit="percentunit",
        ),
    ]
    return dashboard(
        "nuclab-energy",
        "nuclab / Energy",
        "Kepler (RAPL) joules and watts per node, pod and experiment."
        " Nodes without RAPL have no data.",
        variables(),
        panels,
    )


def _peer_rate(metric: str) -> str:
    return f"sum by (pod) (rate({metric}{{{EXP}, {PEERS}}}{RATE}))"


def _node_rtt(q: float) -> str:
    return (
        f'max by (origin, destination) (nuclab_node_rtt_seconds{{quantile="{q}", origin=~"$node"}})'
    )


def _rtt(q: float, by: str) -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}) (rate(nuclab_peer_rtt_seconds_bucket"
        f'{{{EXP}, source=~"$peer"}}{RATE})))'
    )


def peer_latency() -> Json:
    panels = [
        Panel(
            "RTT matrix (p50, source → target)",
            [Query(_rtt(0.5, "source, target, le"), "{{source}} → {{target}}", instant=True)],
            kind="table",
            unit="s",
            width=24,
        ),
        Panel(
            "RTT p50 / p90 / p99",
            [Query(_rtt(q, "le"), f"p{round(q * 100)}") for q in QUANTILES],
            unit="s",
        ),
        Panel("RTT p99 per source peer", [Query(_rtt(0.99, "source, le"), "{{source}}")], unit="s"),
        Panel(
            "Delivery latency p50 / p90 / p99",
            [
                Query(
                    f"histogram_quantile({q}, sum by (le) ("
                    "rate(nuclab_peer_delivery_latency_seconds_bucket"
                    f"{{{EXP}, {PEERS}}}{RATE})))",
                    f"p{round(q * 100)}",
                )
                for q in QUANTILES
            ],
            unit="s",
        ),
        Panel(
            "Duplicate messages per peer",
            [
                Query(
                    _peer_rate("nuclab_peer_messages_duplicate_total"),
                    "{{pod}}",
                )
            ],
        ),
    ]
    return dashboard(
        "nuclab-peer-latency",
        "nuclab / Peer latency",
        "Peer-to-peer RTT from the probe (nuclab_peer_rtt_seconds) and message delivery latency.",
        variables(),
        panels,
    )


BUILDERS: dict[str, Callable[[], Json]] = {
    "experiments": experiments,
    "experiment-logs": experiment_logs,
    "physical-cluster": physical_cluster,
    "kubernetes-cluster": kubernetes_cluster,
    "energy": energy,
    "peer-latency": peer_latency,
}


def all_dashboards() -> dict[str, Json]:
    """File stem -> dashboard document, for the six dashboards."""
    return {name: build() for name, build in BUILDERS.items()}


def render(doc: Json) -> str:
    """The committed text of a dashboard: stable key order, two-space indent, newline-ended."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in all_dashboards().items():
        path = directory / f"nuclab-{name}.json"
        path.write_text(render(doc), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m nuclab.observability.dashboards DIRECTORY", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
