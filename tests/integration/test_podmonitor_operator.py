"""The lab's PodMonitor, as the Prometheus Operator reads it: the probe's RTT histograms arrive.

Everything here is real: the Prometheus Operator (built from its Go module by `make setup`) runs
as a process against the simulated lab's API and turns a ``Prometheus`` resource that selects the
PodMonitor ``nuclab-experiments`` (applied by playbooks/monitoring.yml, as site.yml does once the
PodMonitor kind exists) into its scrape configuration; a real Prometheus (Debian's) runs on that
configuration, unmodified, and scrapes an experiment with the probe sidecar on the real nodes.

Two changes to the generated configuration, both outside what the PodMonitor decides:

- Debian's Prometheus (2.42) is built without Kubernetes service discovery, so each job's
  ``kubernetes_sd_configs`` (role pod, namespace nuclab) is replaced by an ``http_sd_configs``
  served by the test: it lists the pods through the lab's API and gives one target per
  container port with the ``__meta_kubernetes_pod_*`` labels Prometheus' Kubernetes discovery
  sets. Every relabeling, the port selection among them, runs unmodified in Prometheus.
- ``$(SHARD)`` and ``$(POD_NAME)`` are replaced by 0 and the pod's name, as the operator's
  config-reloader does in a Prometheus pod before Prometheus reads the file.

The sim lab has no Prometheus Operator CRDs (the chart is not installed here): the test applies
the PodMonitor, Prometheus, ServiceMonitor, Probe and PrometheusRule CRDs of
lab_prometheus_operator_version and deletes them after, so the other tests see the lab as site.yml
leaves it (the PrometheusRule site.yml then applies goes with its CRD; the rules ConfigMap stays).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from nuclab.net import free_port
from tests.conftest import TOOLS_BIN, tool
from tests.harness.kafka import pinned_version
from tests.harness.prometheus import Prometheus, Server
from tests.integration.conftest import run_playbook
from tests.integration.realnodes import REAL, nuclab, wait_for
from tests.integration.realnodes import pods as peer_pods

CRDS = (
    TOOLS_BIN.parent.parent
    / "crds"
    / f"prometheus-operator-{pinned_version('lab_prometheus_operator_version')}"
)
# The operator's Prometheus controller waits for all four kinds it reads, and the Prometheus kind.
KINDS = ("podmonitors", "prometheuses", "servicemonitors", "probes", "prometheusrules")
CRD_FILES = tuple(f"monitoring.coreos.com_{kind}.yaml" for kind in KINDS)
CRD_NAMES = tuple(f"{kind}.monitoring.coreos.com" for kind in KINDS)
MONITORING = "monitoring"
NAME = "nuclab-test"  # the Prometheus resource, its service account and role
EXPERIMENT = "promop"
PEERS = 2


def _kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [tool("kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def _cleanup(kubeconfig: Path) -> None:
    """What the test adds to the lab, gone (the CRDs take the PodMonitor and Prometheus along)."""
    for kind in ("prometheus", "podmonitor"):
        _kubectl(kubeconfig, "-n", MONITORING, "delete", kind, "--all", "--wait=true", check=False)
    _kubectl(kubeconfig, "delete", "crd", *CRD_NAMES, "--ignore-not-found", check=False)


def _install_crds(kubeconfig: Path) -> None:
    for name in CRD_FILES:
        if not (CRDS / name).is_file():
            pytest.fail(
                f"{CRDS / name} is missing: run `make setup` (tools/setup.d/50-podmonitor-crd.sh)"
            )
        # server-side: the Prometheus CRD is too large for the last-applied annotation
        _kubectl(kubeconfig, "apply", "--server-side", "-f", str(CRDS / name))

    def established() -> bool:
        got = _kubectl(
            kubeconfig, "get", "crd", *CRD_NAMES, "-o",
            "jsonpath={range .items[*]}"
            '{.status.conditions[?(@.type=="Established")].status}{" "}{end}',
            check=False,
        ).stdout.split()  # fmt: skip
        return got == ["True"] * len(CRD_NAMES)

    wait_for(established, 60, "the Prometheus Operator CRDs to be established")


def _sanitized(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod_targets(core: Any, namespace: str) -> list[dict[str, Any]]:
    """The target groups Prometheus' Kubernetes discovery (role pod) gives for ``namespace``:
    one per container port, with its ``__meta_kubernetes_*`` labels."""
    groups = []
    for pod in core.list_namespaced_pod(namespace).items:
        if not pod.status.pod_ip:
            continue
        ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready", "unknown")
        meta = {
            "__meta_kubernetes_namespace": namespace,
            "__meta_kubernetes_pod_name": pod.metadata.name,
            "__meta_kubernetes_pod_ip": pod.status.pod_ip,
            "__meta_kubernetes_pod_uid": pod.metadata.uid,
            "__meta_kubernetes_pod_node_name": pod.spec.node_name or "",
            "__meta_kubernetes_pod_host_ip": pod.status.host_ip or "",
            "__meta_kubernetes_pod_phase": pod.status.phase or "",
            "__meta_kubernetes_pod_ready": ready.lower(),
        }
        for key, value in (pod.metadata.labels or {}).items():
            meta[f"__meta_kubernetes_pod_label_{_sanitized(key)}"] = value
            meta[f"__meta_kubernetes_pod_labelpresent_{_sanitized(key)}"] = "true"
        for container in pod.spec.containers:
            for port in container.ports or []:
                labels = {
                    **meta,
                    "__meta_kubernetes_pod_container_name": container.name,
                    "__meta_kubernetes_pod_container_image": container.image or "",
                    "__meta_kubernetes_pod_container_init": "false",
                    "__meta_kubernetes_pod_container_port_name": port.name or "",
                    "__meta_kubernetes_pod_container_port_number": str(port.container_port),
                    "__meta_kubernetes_pod_container_port_protocol": port.protocol or "TCP",
                }
                address = f"{pod.status.pod_ip}:{port.container_port}"
                groups.append({"targets": [address], "labels": labels})
    return groups


class _PodDiscovery:
    """HTTP service discovery on 127.0.0.1 serving ``_pod_targets`` of the namespace asked for."""

    def __init__(self, kubeconfig: Path) -> None:
        core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                namespace = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["ns"][0]
                body = json.dumps(_pod_targets(core, namespace)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/targets"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _as_run_here(generated: str, discovery_url: str) -> dict[str, Any]:
    """The operator's configuration as its Prometheus pod would run it (see the module's doc)."""
    cfg = yaml.safe_load(
        generated.replace("$(SHARD)", "0").replace("$(POD_NAME)", f"prometheus-{NAME}-0")
    )
    for job in cfg["scrape_configs"]:
        sds = job.pop("kubernetes_sd_configs")
        assert [sd["role"] for sd in sds] == ["pod"], sds
        job["http_sd_configs"] = [
            {"url": f"{discovery_url}?ns={ns}", "refresh_interval": "5s"}
            for sd in sds
            for ns in sd["namespaces"]["names"]
        ]
    return cfg


def _generated_config(kubeconfig: Path, operator: Server, log: Path) -> str:
    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))

    def generated() -> str | None:
        assert operator.proc.poll() is None, f"the operator exited: {log.read_text()[-3000:]}"
        try:
            secret = core.read_namespaced_secret(f"prometheus-{NAME}", MONITORING)
        except client.ApiException:
            return None
        data = (secret.data or {}).get("prometheus.yaml.gz")
        text = gzip.decompress(base64.b64decode(data)).decode() if data else ""
        return text if "nuclab-experiments" in text else None

    return wait_for(generated, 90, f"the operator to write Secret prometheus-{NAME}", step=2)


@pytest.fixture(scope="module")
def prometheus(sim_lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real Prometheus on the operator's configuration for a Prometheus selecting the lab's
    PodMonitor, with experiment ``promop`` (2 peers with the probe, on the real nodes) running."""
    tmp = tmp_path_factory.mktemp("promop")
    kubeconfig = sim_lab
    stoppers: list[Any] = []
    _cleanup(kubeconfig)  # a run stopped half-way left something behind
    try:
        _install_crds(kubeconfig)
        run_playbook("playbooks/monitoring.yml")  # now it applies the PodMonitor
        _kubectl(kubeconfig, "-n", MONITORING, "get", "podmonitor", "nuclab-experiments")

        operator_log = tmp / "operator.log"
        port = free_port()
        operator = Server(
            [
                tool("prometheus-operator"),
                f"--namespaces={MONITORING}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log-level=debug",
            ],
            port,
            "/healthz",
            operator_log,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
        stoppers.append(operator.stop)

        proc = nuclab(
            "create", "--name", EXPERIMENT, "--peers", str(PEERS), "--msg-rate", "500",
            "--cpu", "0.05", "--ram", "16", "--label", "node-kind=real", "--probe", "-q",
            check=False,
        )  # fmt: skip
        stoppers.append(lambda: nuclab("delete", EXPERIMENT, "--no-export", "-q", check=False))
        assert proc.returncode == 0, proc.stderr
        manifest = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": NAME, "namespace": MONITORING},
            "spec": {
                # no pod runs: the test runs Prometheus itself, on the generated configuration
                "replicas": 0,
                "podMonitorSelector": {"matchLabels": {"app.kubernetes.io/part-of": "nuclab"}},
                "podMonitorNamespaceSelector": {},
            },
        }
        (tmp / "prometheus-cr.yaml").write_text(yaml.safe_dump(manifest))
        _kubectl(kubeconfig, "apply", "-f", str(tmp / "prometheus-cr.yaml"))
        generated = _generated_config(kubeconfig, operator, operator_log)
        (tmp / "generated.yaml").write_text(generated)

        discovery = _PodDiscovery(kubeconfig)
        stoppers.append(discovery.stop)
        cfg = _as_run_here(generated, discovery.url)
        prom = Prometheus(tmp / "prometheus", cfg, self_scrape=False)
        stoppers.append(prom.stop)
        yield prom
    finally:
        for stop in reversed(stoppers):
            stop()
        _cleanup(kubeconfig)


def test_prometheus_gets_the_probes_rtt_histograms_and_the_peers_counters(
    prometheus: Any, core_api: Any
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
