"""Series a nuclab cluster would expose, served over HTTP for a real Prometheus to scrape.

A ``World`` is a set of nodes and experiments. ``Exporter`` serves, per path, what the cluster's
exporters expose: cAdvisor (``/cadvisor/<node>``), kube-state-metrics (``/ksm``), Kepler
(``/kepler/<node>``), node exporter (``/node/<node>``) and the nuclab peer (``/peer/<pod>``).
Counters grow linearly with wall-clock time at a rate derived from the series' identity, so two
Prometheus servers scraping two worlds that share an experiment compute the same rates for it:
that is what lets a test prove a query's result does not depend on other experiments.

``scrape_config`` writes the Prometheus configuration with the target labels and relabeling
the cluster gives these targets (the PodMonitor relabelings are passed in from the role).
"""

from __future__ import annotations

import contextlib
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EXPERIMENT_NAMESPACE = "nuclab"
RTT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
# (zone, RAPL sysfs path) as Kepler 0.11 exports them: package holds core and uncore.
KEPLER_ZONES = (
    ("package", "intel-rapl:0"),
    ("core", "intel-rapl:0:0"),
    ("uncore", "intel-rapl:0:1"),
    ("dram", "intel-rapl:0:2"),
)


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    node: str
    experiment: str | None = None
    running: bool = True


@dataclass
class World:
    """Nodes, experiments (name -> peers) and the lab's own service pods."""

    nodes: list[str]
    experiments: dict[str, int]
    not_ready: set[str] = field(default_factory=set)
    pending: dict[str, int] = field(default_factory=dict)  # experiment -> peers not running

    def pods(self) -> list[Pod]:
        pods = [
            Pod("monitoring", "prometheus-lab-0", self.nodes[0]),
            Pod("monitoring", "grafana-0", self.nodes[0]),
            Pod("monitoring", "loki-0", self.nodes[0]),
            Pod("kafka", "lab-kafka-0", self.nodes[-1]),
        ]
        workers = [n for n in self.nodes[1:] if n not in self.not_ready] or self.nodes
        for exp, peers in sorted(self.experiments.items()):
            offset = zlib.crc32(exp.encode()) % len(workers)
            for i in range(peers):
                running = i < peers - self.pending.get(exp, 0)
                node = workers[(i + offset) % len(workers)]
                pods.append(Pod(EXPERIMENT_NAMESPACE, f"nuclab-exp-{exp}-{i}", node, exp, running))
        return pods

    def experiment_pods(self, experiment: str) -> list[Pod]:
        return [p for p in self.pods() if p.experiment == experiment]


def _coef(*key: str) -> float:
    """A stable per-series rate in [0.5, 10.5): distinct for every series identity."""
    return 0.5 + (zlib.crc32("/".join(key).encode()) % 1000) / 100


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


def _line(name: str, labels: dict[str, str], value: float) -> str:
    return f"{name}{_labels(labels)} {value:.6f}"


class Metrics:
    """The exposition text of each path, computed at scrape time ``now``."""

    def __init__(self, world: World) -> None:
        self.world = world

    def cadvisor(self, node: str, now: float) -> Iterator[str]:
        for pod in self.world.pods():
            if pod.node != node or not pod.running:
                continue
            base = {"namespace": pod.namespace, "pod": pod.name}
            for container in ("main", "POD"):
                c = {**base, "container": container}
                yield _line(
                    "container_cpu_usage_seconds_total", c, _coef("cpu", pod.name) * now / 100
                )
                yield _line("container_memory_working_set_bytes", c, _coef("mem", pod.name) * 2**20)
            net = {**base, "interface": "eth0"}
            for metric in (
                "container_network_receive_bytes_total",
                "container_network_transmit_bytes_total",
                "container_network_receive_packets_dropped_total",
                "container_network_transmit_packets_dropped_total",
            ):
                yield _line(metric, net, _coef(metric, pod.name) * now)
                yield _line(metric, {**base, "interface": "lo"}, 7 * now)

    def ksm(self, now: float) -> Iterator[str]:
        del now
        for pod in self.world.pods():
            ident = {"namespace": pod.namespace, "pod": pod.name}
            labels = dict(ident)
            if pod.experiment:
                labels["label_nuclab_io_experiment"] = pod.experiment
            yield _line("kube_pod_labels", labels, 1)
            yield _line("kube_pod_info", {**ident, "node": pod.node, "host_ip": "10.0.0.1"}, 1)
            for phase in ("Running", "Pending"):
                value = 1 if (phase == "Running") == pod.running else 0
                yield _line("kube_pod_status_phase", {**ident, "phase": phase}, value)
        for exp, peers in sorted(self.world.experiments.items()):
            sts = {"namespace": EXPERIMENT_NAMESPACE, "statefulset": f"nuclab-exp-{exp}"}
            yield _line("kube_statefulset_replicas", sts, peers)
            yield _line("kube_statefulset_labels", {**sts, "label_nuclab_io_experiment": exp}, 1)
        for node in self.world.nodes:
            yield _line("kube_node_info", {"node": node}, 1)
            cpu = {"node": node, "resource": "cpu", "unit": "core"}
            yield _line("kube_node_status_allocatable", cpu, 4)
            mem = {"node": node, "resource": "memory", "unit": "byte"}
            yield _line("kube_node_status_allocatable", mem, 16 * 2**30)
            ready = 0 if node in self.world.not_ready else 1
            cond = {"node": node, "condition": "Ready", "status": "true"}
            yield _line("kube_node_status_condition", cond, ready)

    def kepler(self, node: str, now: float) -> Iterator[str]:
        """Kepler 0.11's series: one per RAPL zone, the zones overlapping as on a NUC."""
        for zone, path in KEPLER_ZONES:
            yield _line(
                "kepler_node_cpu_joules_total",
                {"zone": zone, "path": f"/sys/class/powercap/{path}", "node_name": node},
                _coef("node-joules", node, zone) * now,
            )
        for pod in self.world.pods():
            if pod.node != node or not pod.running:
                continue
            for zone, _ in KEPLER_ZONES:
                labels = {
                    "pod_id": f"uid-{pod.name}",
                    "pod_name": pod.name,
                    "pod_namespace": pod.namespace,
                    "state": "running",
                    "zone": zone,
                    "node_name": node,
                }
                joules = _coef("joules", pod.name, zone) * now / 10
                yield _line("kepler_pod_cpu_joules_total", labels, joules)

    def node(self, node: str, now: float) -> Iterator[str]:
        for mode in ("idle", "user"):
            yield _line(
                "node_cpu_seconds_total", {"cpu": "0", "mode": mode}, _coef(mode, node) * now / 20
            )
        yield _line("node_memory_MemTotal_bytes", {}, 16 * 2**30)
        yield _line("node_memory_MemAvailable_bytes", {}, _coef("avail", node) * 2**30)
        for direction in ("receive", "transmit"):
            for kind in ("bytes", "drop", "errs"):
                metric = f"node_network_{direction}_{kind}_total"
                for device in ("eth0", "lo", "flannel.1"):
                    yield _line(metric, {"device": device}, _coef(metric, node, device) * now)

    def peer(self, pod_name: str, now: float) -> Iterator[str]:
        pod = next(p for p in self.world.pods() if p.name == pod_name)
        exp = pod.experiment or ""
        own = {"experiment": exp}
        peers = [p.name for p in self.world.experiment_pods(exp)]
        sent = _coef("sent", pod.name) * now
        yield _line("nuclab_peer_messages_sent_total", own, sent)
        yield _line("nuclab_peer_messages_received_total", own, sent * (len(peers) - 1) * 0.9)
        yield _line("nuclab_peer_messages_duplicate_total", own, _coef("dup", pod.name) * now)
        yield from self._histogram("nuclab_peer_delivery_latency_seconds", own, pod.name, now)
        for target in peers:
            if target != pod.name:
                labels = {**own, "source": pod.name, "target": target}
                yield from self._histogram(
                    "nuclab_peer_rtt_seconds", labels, pod.name + target, now
                )

    @staticmethod
    def _histogram(name: str, labels: dict[str, str], key: str, now: float) -> Iterator[str]:
        rate = _coef(name, key)
        median = RTT_BUCKETS[zlib.crc32(key.encode()) % (len(RTT_BUCKETS) - 2) + 1]
        count = rate * now
        for le in RTT_BUCKETS:
            share = 0.5 if le == median else (0.1 if le < median else 0.95)
            yield _line(f"{name}_bucket", {**labels, "le": str(le)}, count * share)
        yield _line(f"{name}_bucket", {**labels, "le": "+Inf"}, count)
        yield _line(f"{name}_sum", labels, count * median)
        yield _line(f"{name}_count", labels, count)

    def render(self, path: str, now: float) -> str | None:
        parts = path.strip("/").split("/")
        lines: Iterable[str]
        match parts:
            case ["cadvisor", node]:
                lines = self.cadvisor(node, now)
            case ["ksm"]:
                lines = self.ksm(now)
            case ["kepler", node]:
                lines = self.kepler(node, now)
            case ["node", node]:
                lines = self.node(node, now)
            case ["peer", pod]:
                lines = self.peer(pod, now)
            case _:
                return None
        return "\n".join(lines) + "\n"


class Exporter:
    """Serves a world's metrics on 127.0.0.1 (an ephemeral port) until ``close``."""

    def __init__(self, world: World) -> None:
        metrics = Metrics(world)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = metrics.render(self.path, time.time())
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self.world = world
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _static(address: str, path: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"targets": [address], "labels": {"__metrics_path__": path, **labels}}


def _snake(relabeling: dict[str, Any]) -> dict[str, Any]:
    """A Prometheus-operator RelabelConfig (camelCase) as a Prometheus relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {names.get(k, k): v for k, v in relabeling.items()}


def scrape_config(
    exporter: Exporter,
    *,
    peer_relabelings: list[dict[str, Any]],
    peer_metric_relabelings: list[dict[str, Any]],
    node_exporter_relabelings: list[dict[str, Any]],
    pushgateway: str | None = None,
    interval: str = "1s",
    rule_files: list[str] | None = None,
) -> dict[str, Any]:
    """The prometheus.yml for a world, with the target labels the cluster would attach."""
    world, addr = exporter.world, exporter.address
    jobs: list[dict[str, Any]] = []
    kubelet = [
        _static(addr, f"/cadvisor/{n}", {"node": n, "instance": f"{n}:10250"}) for n in world.nodes
    ]
    # kube-state-metrics' ServiceMonitor honours labels: its namespace/pod win over the target's.
    ksm_target = {"namespace": "monitoring", "pod": "kube-state-metrics-0", "instance": "ksm:8080"}
    jobs.append({"job_name": "kubelet", "honor_labels": True, "static_configs": kubelet})
    jobs.append(
        {
            "job_name": "kube-state-metrics",
            "honor_labels": True,
            "static_configs": [_static(addr, "/ksm", ksm_target)],
        }
    )
    kepler = [
        _static(
            addr,
            f"/kepler/{n}",
            {"namespace": "monitoring", "pod": f"kepler-{n}", "instance": f"{n}:28282"},
        )
        for n in world.nodes
    ]
    jobs.append({"job_name": "kepler", "static_configs": kepler})
    node_targets = [
        _static(addr, f"/node/{n}", {"__meta_kubernetes_pod_node_name": n, "instance": f"{n}:9100"})
        for n in world.nodes
    ]
    jobs.append(
        {
            "job_name": "node-exporter",
            "static_configs": node_targets,
            "relabel_configs": [_snake(r) for r in node_exporter_relabelings],
        }
    )
    # What the operator generates for a PodMonitor (namespace, pod) and then the role's relabelings.
    operator = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]
    peers = [
        _static(
            addr,
            f"/peer/{p.name}",
            {
                "__meta_kubernetes_namespace": p.namespace,
                "__meta_kubernetes_pod_name": p.name,
                "__meta_kubernetes_pod_node_name": p.node,
                "__meta_kubernetes_pod_label_nuclab_io_experiment": p.experiment or "",
                "instance": f"{p.name}:9464",
            },
        )
        for p in world.pods()
        if p.experiment and p.running
    ]
    jobs.append(
        {
            "job_name": "nuclab-experiments",
            "static_configs": peers,
            "relabel_configs": operator + [_snake(r) for r in peer_relabelings],
            "metric_relabel_configs": [_snake(r) for r in peer_metric_relabelings],
        }
    )
    if pushgateway:
        jobs.append(
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway]}],
            }
        )
    return {
        "global": {
            "scrape_interval": interval,
            "evaluation_interval": interval,
            "scrape_timeout": interval,
        },
        "rule_files": rule_files or [],
        "scrape_configs": jobs,
    }
