"""The node probe DaemonSet (role node_probe) on the simulated lab: one probe pod per node on the
host network, admitted and scheduled by the real control plane. On the real nodes the kubelet
runs it: it answers on the node's address only and measures the RTT to the other real nodes
(kwok nodes run no container: their probes never answer)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration.conftest import run_playbook
from tests.integration.realnodes import REAL, REAL_CLIENT
from tests.integration.scrape import scrape, total

REAL_NODES = sorted(REAL | {REAL_CLIENT})

PLAY = """---
- name: Apply the node probe
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: node_probe
"""


def _recap(stdout: str) -> tuple[int, int]:
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)", stdout)
    assert m, stdout[-2000:]
    return int(m.group(1)), int(m.group(2))


def test_node_probe_runs_on_every_node_and_applies_idempotently(
    sim_lab: Path, tmp_path: Path
) -> None:
    api = config.new_client_from_config(str(sim_lab))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    try:
        core.read_namespace("monitoring")
    except ApiException:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="monitoring")))
    play = tmp_path / "node_probe.yml"
    play.write_text(PLAY)
    # site.yml installs the node probe with monitoring: start from a lab without it
    run_playbook(str(play), "-e", "node_probe_enabled=false")
    try:
        _, changed = _recap(run_playbook(str(play)).stdout)
        assert changed == 1
        nodes = {n.metadata.name for n in core.list_node().items}
        deadline = time.monotonic() + 60
        while True:
            pods = core.list_namespaced_pod(
                "monitoring", label_selector="app.kubernetes.io/name=nuclab-node-probe"
            ).items
            running = {p.spec.node_name for p in pods if p.status.phase == "Running"}
            if running == nodes or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert running == nodes  # every node, the tainted server too
        pod = pods[0]
        assert pod.spec.host_network and pod.spec.dns_policy == "ClusterFirstWithHostNet"
        assert pod.spec.containers[0].command == ["python3", "-m", "nuclab.probe"]
        args = pod.spec.containers[0].args
        assert args[0] == "--node"
        assert "--service=nuclab-node-probe.monitoring.svc.cluster.local" in args
        assert any(a.startswith("--pushgateway=http://") for a in args)
        svc = core.read_namespaced_service("nuclab-node-probe", "monitoring")
        assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses
        _real_nodes_measure_each_other({p.spec.node_name: p for p in pods})
        _, changed = _recap(run_playbook(str(play)).stdout)
        assert changed == 0
    finally:
        run_playbook(str(play), "-e", "node_probe_enabled=false")
    assert not apps.list_namespaced_daemon_set(
        "monitoring", label_selector="app.kubernetes.io/name=nuclab-node-probe"
    ).items


def _real_nodes_measure_each_other(pods: dict[str, Any]) -> None:
    for name in REAL_NODES:
        (status,) = pods[name].status.container_statuses
        assert status.container_id.startswith("containerd://") and status.ready, (name, status)
    deadline = time.monotonic() + 60
    while True:
        try:
            answered = {
                (name, other): total(
                    scrape(f"http://{pods[name].status.host_ip}:9403/metrics"),
                    "nuclab_peer_rtt_seconds_count", source=name, target=other,
                )
                for name in REAL_NODES for other in REAL_NODES if other != name
            }  # fmt: skip
        except OSError:  # a probe still starting
            answered = {}
        if (answered and min(answered.values()) >= 3) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert answered and min(answered.values()) >= 3, answered
    for name in REAL_NODES:
        # bound to the node's address, not to every address of the node's network namespace
        ip = pods[name].status.host_ip
        (netns,) = [n.split()[0] for n in _sh("ip", "netns", "list").splitlines()
                    if n.split()[0].endswith(f"-{name}")]  # fmt: skip
        bound = _sh("ip", "netns", "exec", netns, "ss", "-Hnul", "sport = :9402").split()
        assert f"{ip}:9402" in bound, (name, bound)


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def test_node_probe_rejects_bad_settings_before_touching_the_cluster(
    sim_lab: Path, tmp_path: Path
) -> None:
    play = tmp_path / "node_probe.yml"
    play.write_text(PLAY)
    proc = run_playbook(str(play), "-e", "node_probe_metrics_port=9402", check=False)
    assert proc.returncode != 0
    assert "node_probe: port 9402 and metrics port 9402" in proc.stdout
