"""The simulated lab's own Prometheus: the lab's monitoring objects drive it; a run becomes data.

Everything here is real. site.yml (roles/sim_cluster) runs the Prometheus Operator, built from its
Go module, against the lab's API. The operator turns the Prometheus resource ``lab-prometheus``
(the kube-prometheus-stack chart's name and selectors) and the PodMonitor and PrometheusRule that
playbooks/monitoring.yml applies into a configuration. Prometheus, built from its Go module with
Kubernetes service discovery, runs that configuration: it finds the experiment's pods on the real
nodes through the lab's API and scrapes them. ``nuclab export`` then reads it, as on a real lab.

Prometheus runs as a process of this machine, not as a pod: the lab's config writer
(roles/sim_cluster/files/prometheus_config_sync.py) writes what a pod's kubelet and config-reloader
would, the service account's token among them, and gives Kubernetes discovery the API server's
address, which a pod's in-cluster client takes from its environment. The real nodes' cAdvisor is
scraped through the chart's kubelet ServiceMonitor, which the role writes (no chart here), and
kube-state-metrics, built from its Go module and run as a process against the lab's API, through
its chart's ServiceMonitor: the lab's recording rules join the two.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from nuclab import deploy
from nuclab.report.data import Dataset
from tests.harness.prometheus import PrometheusClient
from tests.integration.conftest import SIM_INVENTORY
from tests.integration.realnodes import REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods

MONITORING = "monitoring"
NAME = "lab-prometheus"  # the Prometheus resource, as the chart names it for release "lab"
EXPERIMENT = "promop"
PEERS = 2
SCRAPE_INTERVAL = 15  # the PodMonitor's (roles/monitoring)


def _lab_prometheus_url() -> str:
    """The inventory's lab_prometheus_url, read as the CLI and the export role read it."""
    url = deploy.lab_target(SIM_INVENTORY, SIM_INVENTORY.parents[1]).prometheus_url
    assert url, "inventory/sim names no lab_prometheus_url"
    return url


@pytest.fixture(scope="module")
def prometheus(sim_lab: Path) -> Iterator[PrometheusClient]:
    """The lab's Prometheus; experiment ``promop`` (2 peers with the probe) on the real nodes."""
    proc = nuclab(
        "create", "--name", EXPERIMENT, "--peers", str(PEERS), "--msg-rate", "500",
        "--cpu", "0.05", "--ram", "16", "--label", "node-kind=real", "--probe", "-q",
        check=False,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stderr
        yield PrometheusClient(_lab_prometheus_url())
    finally:
        nuclab("delete", EXPERIMENT, "--no-export", "-q", check=False)


def _generated(kubeconfig: Path) -> dict[str, Any]:
    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    secret = core.read_namespaced_secret(f"prometheus-{NAME}", MONITORING)
    text = gzip.decompress(base64.b64decode(secret.data["prometheus.yaml.gz"])).decode()
    return yaml.safe_load(text.replace("$(SHARD)", "0"))  # as the config-reloader expands it


def test_prometheus_runs_the_operators_configuration_and_rules(
    prometheus: PrometheusClient, sim_lab: Path
) -> None:
    generated = _generated(sim_lab)
    loaded = yaml.safe_load(prometheus.api("status/config")["yaml"])
    jobs = [job["job_name"] for job in loaded["scrape_configs"]]
    assert jobs == [job["job_name"] for job in generated["scrape_configs"]]
    # the lab's PodMonitor: one job per endpoint (the peer's metrics, the probe's)
    assert "podMonitor/monitoring/nuclab-experiments/0" in jobs
    assert "podMonitor/monitoring/nuclab-experiments/1" in jobs
    assert "serviceMonitor/monitoring/lab-kubelet/0" in jobs
    for job, ours in zip(loaded["scrape_configs"], generated["scrape_configs"], strict=True):
        # every relabeling as the operator wrote it (Prometheus shows its defaults besides)
        assert len(job["relabel_configs"]) == len(ours["relabel_configs"]), job["job_name"]
        for loaded_rule, rule in zip(job["relabel_configs"], ours["relabel_configs"], strict=True):
            assert {k: loaded_rule.get(k) for k in rule} == rule, job["job_name"]
        [sd] = job["kubernetes_sd_configs"]
        # the one change: in-cluster discovery given the API server's address; with the
        # service account's token, written where the configuration now points
        assert sd["api_server"].startswith("https://") and not sd.get("kubeconfig_file")
        assert Path(sd["authorization"]["credentials_file"]).read_text().strip()
    # the lab's PodMonitor and the chart's kubelet ServiceMonitor (cAdvisor)
    assert [
        sd["role"] for job in loaded["scrape_configs"] for sd in job["kubernetes_sd_configs"]
    ] == [
        "pod" if job["job_name"].startswith("podMonitor/") else "endpoints"
        for job in loaded["scrape_configs"]
    ]
    # the PrometheusRule's groups, loaded from the rule files the operator generated
    rule = client.CustomObjectsApi(config.new_client_from_config(str(sim_lab)))
    spec = rule.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", MONITORING, "prometheusrules", "nuclab"
    )["spec"]
    groups = prometheus.api("rules")["groups"]
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in spec["groups"])
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups


def test_prometheus_gets_the_probes_rtt_histograms_and_the_peers_counters(
    prometheus: PrometheusClient, core_api: Any
) -> None:
    core = core_api
    running = wait_for(
        lambda: (
            p
            if len(p := [x for x in peer_pods(core, EXPERIMENT) if x.status.phase == "Running"])
            == PEERS
            else None
        ),
        120,
        f"{PEERS} running peers of {EXPERIMENT}",
    )
    assert {p.spec.node_name for p in running} <= REAL
    names = {p.metadata.name for p in running}

    def rtt_pairs() -> list[dict[str, Any]] | None:
        found = prometheus.query(f'nuclab_peer_rtt_seconds_count{{experiment="{EXPERIMENT}"}} > 0')
        pairs = {(s["metric"]["source"], s["metric"]["target"]) for s in found}
        return found if len(pairs) == PEERS * (PEERS - 1) else None

    series = wait_for(rtt_pairs, 150, "Prometheus to scrape the probes' RTT histograms", step=5)
    for sample in series:
        labels = sample["metric"]
        assert labels["experiment"] == EXPERIMENT
        assert labels["source"] in names and labels["target"] in names - {labels["source"]}
        assert labels["pod"] in names, "the pod's own target, through the PodMonitor"
        assert labels["node"] in REAL
        assert "exported_experiment" not in labels
    buckets = prometheus.query(f'nuclab_peer_rtt_seconds_bucket{{experiment="{EXPERIMENT}"}}')
    assert {b["metric"]["le"] for b in buckets} >= {"0.001", "+Inf"}

    def counters() -> list[dict[str, Any]] | None:
        found = prometheus.query(
            f'nuclab_peer_messages_sent_total{{experiment="{EXPERIMENT}"}} > 0'
        )
        return found if {s["metric"]["pod"] for s in found} == names else None

    wait_for(counters, 90, "Prometheus to scrape the peers' message counters", step=5)
    # one target per pod and port: the peer's and the probe's, all up
    up = prometheus.query(f'up{{experiment="{EXPERIMENT}"}}')
    assert sorted((s["metric"]["pod"], s["value"][1]) for s in up) == sorted(
        (n, "1") for n in names for _ in range(2)
    ), up


def _mebibytes(quantity: str) -> float:
    return float(quantity[:-2]) * 2**20 if quantity.endswith("Mi") else float(quantity)


def _memory_limits(pod: Any) -> dict[str, float]:
    """Each container's memory limit, as its pod asks for it."""
    return {
        c.name: _mebibytes((c.resources.limits or {}).get("memory", "0"))
        for c in pod.spec.containers
    }


def _memory_limit(pod: Any) -> float:
    return sum(_memory_limits(pod).values())


def test_cadvisor_measures_every_real_peer_within_its_limits(
    prometheus: PrometheusClient, core_api: Any
) -> None:
    """The kubelets' cAdvisor, scraped as the chart scrapes it (HTTPS, the service account's
    token, the kubelet's own labels): each peer's containers, their CPU and memory, the memory
    limit the kubelet set on each container's cgroup and the pod's, equal to what the pod asks
    for, and the pod's network traffic."""
    running = {p.metadata.name: p for p in peer_pods(core_api, EXPERIMENT)}
    assert len(running) == PEERS
    of_peers = f'namespace="nuclab",pod=~"nuclab-exp-{EXPERIMENT}-.*"'
    wanted = {(name, c) for name, pod in running.items() for c in _memory_limits(pod)}

    def measured() -> list[dict[str, Any]] | None:
        found = prometheus.query(f'container_memory_working_set_bytes{{{of_peers},container!=""}}')
        return (
            found
            if {(s["metric"]["pod"], s["metric"]["container"]) for s in found} == wanted
            else None
        )

    memory = wait_for(measured, 90, "cAdvisor's memory of every peer's containers", step=5)
    for sample in memory:
        labels = sample["metric"]
        assert labels["job"] == "kubelet", labels
        assert labels["node"] == running[labels["pod"]].spec.node_name, labels
        limit = _memory_limits(running[labels["pod"]])[labels["container"]]
        assert 0 < float(sample["value"][1]) <= limit, sample
    # the limits as the kernel holds them: each container's cgroup, and the pod's (no container,
    # no image: the pause container's sandbox has an image)
    limits = prometheus.query(f'container_spec_memory_limit_bytes{{{of_peers},container!=""}}')
    assert sorted(
        (s["metric"]["pod"], s["metric"]["container"], float(s["value"][1])) for s in limits
    ) == sorted(
        (name, c, limit)
        for name, pod in running.items()
        for c, limit in _memory_limits(pod).items()
    )
    pods = prometheus.query(
        f'container_spec_memory_limit_bytes{{{of_peers},container="",image=""}}'
    )
    assert sorted((s["metric"]["pod"], float(s["value"][1])) for s in pods) == sorted(
        (name, _memory_limit(pod)) for name, pod in running.items()
    )

    def cpu() -> list[dict[str, Any]] | None:
        found = prometheus.query(
            f'rate(container_cpu_usage_seconds_total{{{of_peers},container!=""}}[1m])'
        )
        return (
            found
            if {(s["metric"]["pod"], s["metric"]["container"]) for s in found} == wanted
            else None
        )

    rates = wait_for(cpu, 90, "two cAdvisor samples of every container's CPU", step=5)
    assert all(0 < float(s["value"][1]) < 1 for s in rates), rates

    def network() -> list[dict[str, Any]] | None:
        found = prometheus.query(
            f'rate(container_network_transmit_bytes_total{{{of_peers},interface="eth0"}}[1m]) > 0'
        )
        return found if {s["metric"]["pod"] for s in found} == set(running) else None

    wait_for(network, 90, "every peer's traffic on its eth0, from cAdvisor", step=5)


def test_the_labs_rules_join_cadvisor_on_kube_state_metrics(
    prometheus: PrometheusClient, core_api: Any
) -> None:
    """kube-state-metrics, built from its Go module and scraped through its chart's
    ServiceMonitor, gives the lab's rules each pod's experiment label and node: the recorded
    per-peer and per-experiment series that dashboards and ``nuclab`` read exist for every real
    peer, on its node, and hold no other experiment's pod."""
    running = {p.metadata.name: p for p in peer_pods(core_api, EXPERIMENT)}
    assert len(running) == PEERS
    up = wait_for(
        lambda: prometheus.query('up{job="kube-state-metrics"} == 1'),
        90,
        "kube-state-metrics scraped through its ServiceMonitor",
        step=5,
    )
    assert [s["metric"]["service"] for s in up] == ["lab-kube-state-metrics"], up

    def per_pod(record: str) -> dict[str, dict[str, Any]] | None:
        found = prometheus.query(f'{record}{{experiment="{EXPERIMENT}"}}')
        by_pod = {s["metric"]["pod"]: s for s in found}
        return by_pod if set(by_pod) == set(running) and len(found) == PEERS else None

    for record in (
        "nuclab:pod_experiment:info",
        "nuclab:pod_running:max",
        "nuclab:pod_memory_working_set_bytes:sum",
        "nuclab:pod_cpu_usage_seconds:rate2m",
    ):
        series = wait_for(lambda r=record: per_pod(r), 120, f"{record} for every peer", step=5)
        for pod, sample in series.items():
            assert sample["metric"]["node"] == running[pod].spec.node_name, (record, sample)
            assert sample["metric"]["namespace"] == "nuclab", (record, sample)
        if record == "nuclab:pod_memory_working_set_bytes:sum":
            assert all(
                0 < float(s["value"][1]) <= _memory_limit(running[pod]) for pod, s in series.items()
            ), series

    def experiment(record: str) -> float | None:
        found = prometheus.query(f'{record}{{experiment="{EXPERIMENT}"}}')
        return float(found[0]["value"][1]) if found else None

    assert wait_for(
        lambda: experiment("nuclab:experiment_peers_desired:sum") == PEERS,
        90,
        "the StatefulSet's replicas, from kube-state-metrics",
        step=5,
    )
    assert wait_for(
        lambda: experiment("nuclab:experiment_peers_running:sum") == PEERS,
        90,
        "the running peers, from kube-state-metrics",
        step=5,
    )


def _delivered_now() -> int:
    """The peers' own count of messages delivered, read from the pods (nuclab stats)."""
    return int(json.loads(nuclab("stats", EXPERIMENT, "-o", "json").stdout)["delivered"])


def test_export_holds_what_the_peers_counted(prometheus: PrometheusClient, tmp_path: Path) -> None:
    """The dataset's delivered messages at the end of its window against the peers' own counters,
    read from the pods one scrape interval (and a few seconds) apart with that end between them.

    Prometheus' value at the end is every peer's last scrape before it, taken less than one scrape
    interval earlier, so after the first reading: the sum lies between the two readings. A lost
    peer, a missed scrape, a wrong step or a value from another experiment breaks it."""
    wait_for(
        lambda: prometheus.query(
            f'count(nuclab_peer_messages_received_total{{experiment="{EXPERIMENT}"}} > 0) '
            f"== {PEERS}"
        ),
        120,
        "every peer's delivered messages in Prometheus",
        step=5,
    )
    first = _delivered_now()
    time.sleep(SCRAPE_INTERVAL + 5)
    end = int(time.time())  # before the second reading starts
    second = _delivered_now()
    assert second > first, "the peers kept delivering"
    time.sleep(SCRAPE_INTERVAL)  # Prometheus has scraped past the end
    dataset = tmp_path / "promop"
    proc = nuclab(
        "export", EXPERIMENT, "-o", str(dataset),
        "--start", str(end - 120), "--end", str(end), "--step", "5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr

    data = Dataset(dataset)
    # the series of the running pods: a promop of an earlier run may have ended in the window
    received = [
        s
        for s in data.metric(
            "nuclab_peer_messages_received_total", "nuclab_peer_messages_received_total"
        )
        if s.t[-1] == end
    ]
    assert sorted(s.labels["pod"] for s in received) == [
        f"nuclab-exp-{EXPERIMENT}-{i}" for i in range(PEERS)
    ], "every peer's series is in the dataset, up to the window's end"
    exported = sum(float(s.v[-1]) for s in received)
    assert first <= exported <= second, (first, exported, second)
    cpu = data.metric("container_cpu_usage_seconds_total", "container_cpu_usage_seconds_total")
    assert {s.labels["pod"] for s in cpu if s.t[-1] == end} == {s.labels["pod"] for s in received}
