"""The simulated lab against its inventory: nodes, labels, taints, capacity, edits, bad input.

Runs against the real control plane of the simulated lab (see conftest.py). Inventory edits
are made on a copy of inventory/sim that points at the running lab's state and kubeconfig.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import SIM_INVENTORY, SIM_KUBECONFIG, run_playbook

STATE_DIR = SIM_INVENTORY / ".state"


def sim_hosts() -> dict[str, Any]:
    return yaml.safe_load((SIM_INVENTORY / "hosts.yml").read_text())


def agents(hosts: dict[str, Any]) -> dict[str, Any]:
    return hosts["k3s_cluster"]["children"]["agent"]["hosts"]


def copy_inventory(tmp_path: Path, hosts: dict[str, Any]) -> Path:
    """A copy of inventory/sim with other hosts, aimed at the running lab."""
    inv = tmp_path / "inventory"
    shutil.copytree(SIM_INVENTORY / "group_vars", inv / "group_vars", symlinks=False)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    return inv


def aimed_at_running_lab() -> list[str]:
    return [
        "-e",
        f"lab_kubeconfig={SIM_KUBECONFIG}",
        "-e",
        f"sim_cluster_state_dir={STATE_DIR}",
    ]


# The plays of site.yml that read the inventory's hosts (cluster.yml acts on bare-metal labs only;
# monitoring and Kafka are installed once for the lab, whatever its nodes): what a changed host
# list runs through, at a third of site.yml's time.
NODE_PLAYS = ("playbooks/preflight.yml", "playbooks/sim.yml", "playbooks/labels.yml")


def nodes(core_api) -> dict[str, Any]:
    return {n.metadata.name: n for n in core_api.list_node().items}


def test_every_inventory_host_is_a_ready_node_with_its_labels_and_capacity(core_api):
    hosts = sim_hosts()
    found = nodes(core_api)
    assert sorted(found) == ["nuc-1", "nuc-2", "nuc-3", "nuc-4", "nuc-5", "nuc-master"]
    for name, node in found.items():
        ready = [c.status for c in node.status.conditions if c.type == "Ready"]
        assert ready == ["True"], name
    roles = {name: n.metadata.labels["nuclab.io/role"] for name, n in found.items()}
    assert roles == {
        "nuc-master": "server",
        "nuc-1": "client",
        "nuc-2": "worker",
        "nuc-3": "worker",
        "nuc-4": "worker",
        "nuc-5": "worker",
    }
    zones = {name: n.metadata.labels["topology.kubernetes.io/zone"] for name, n in found.items()}
    assert zones["nuc-4"] == agents(hosts)["nuc-4"]["lab_zone"] == "zone-b"
    gpu = found["nuc-5"]
    assert gpu.metadata.labels["nuclab.io/telemetry"] == "gpu"
    assert gpu.metadata.labels["nuclab.io/gpu"] == "nvidia"
    assert gpu.status.capacity["nvidia.com/gpu"] == "1"
    # a kwok node has the inventory's capacity; a real node (nuc-2, nuc-4) this machine's
    assert found["nuc-3"].status.capacity["cpu"] == "4"
    assert found["nuc-3"].status.capacity["memory"] == "16Gi"
    assert found["nuc-2"].metadata.labels["nuclab.io/node-kind"] == "real"
    assert found["nuc-2"].status.capacity["cpu"] == str(os.cpu_count())
    assert "node-role.kubernetes.io/worker" in found["nuc-2"].metadata.labels
    assert "node-role.kubernetes.io/control-plane" in found["nuc-master"].metadata.labels
    assert oct(SIM_KUBECONFIG.stat().st_mode & 0o777) == "0o600"


def test_the_real_scheduler_places_pods_by_the_lab_labels(core_api):
    from kubernetes import client

    name = "placement-probe"
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector={"topology.kubernetes.io/zone": "zone-b", "nuclab.io/telemetry": "gpu"},
            containers=[client.V1Container(name="c", image="example.invalid/none:1")],
        ),
    )
    core_api.create_namespaced_pod("default", pod)
    try:
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = core_api.read_namespaced_pod(name, "default")
            if got.spec.node_name and got.status.phase == "Running":
                break
            time.sleep(1)
        assert got.spec.node_name == "nuc-5"
        assert got.status.phase == "Running"
    finally:
        core_api.delete_namespaced_pod(name, "default", grace_period_seconds=0)


def test_editing_the_inventory_moves_and_removes_labels_and_taints(core_api, tmp_path):
    hosts = sim_hosts()
    agents(hosts)["nuc-4"]["lab_zone"] = "zone-c"
    del agents(hosts)["nuc-5"]["node_labels"]
    agents(hosts)["nuc-3"]["node_taints"] = [
        {"key": "dedicated", "value": "kafka", "effect": "NoSchedule"}
    ]
    edited = copy_inventory(tmp_path, hosts)
    try:
        run_playbook("playbooks/labels.yml", *aimed_at_running_lab(), inventory=edited)
        found = nodes(core_api)
        assert found["nuc-4"].metadata.labels["topology.kubernetes.io/zone"] == "zone-c"
        assert "nuclab.io/gpu" not in found["nuc-5"].metadata.labels
        taints = [(t.key, t.value, t.effect) for t in found["nuc-3"].spec.taints or []]
        assert taints == [("nuclab.io/dedicated", "kafka", "NoSchedule")]
    finally:
        run_playbook("playbooks/labels.yml")
    found = nodes(core_api)
    assert found["nuc-4"].metadata.labels["topology.kubernetes.io/zone"] == "zone-b"
    assert found["nuc-5"].metadata.labels["nuclab.io/gpu"] == "nvidia"
    assert not found["nuc-3"].spec.taints


def test_adding_a_host_and_resizing_one_recreates_only_what_changed(core_api, tmp_path):
    # nuc-3 is a kwok node (its capacity is the inventory's); nuc-2 is a real node, left alone
    hosts = sim_hosts()
    agents(hosts)["nuc-3"]["node_memory"] = "8Gi"
    agents(hosts)["nuc-6"] = {"lab_role": "worker", "lab_zone": "zone-b", "node_cpu": "2"}
    before = nodes(core_api)
    edited = copy_inventory(tmp_path, hosts)
    try:
        run_playbook(*NODE_PLAYS, *aimed_at_running_lab(), inventory=edited)
        found = nodes(core_api)
        assert found["nuc-3"].status.capacity["memory"] == "8Gi"
        assert found["nuc-6"].status.capacity["cpu"] == "2"
        assert found["nuc-6"].metadata.labels["nuclab.io/role"] == "worker"
        assert found["nuc-5"].metadata.uid == before["nuc-5"].metadata.uid
        assert found["nuc-2"].metadata.uid == before["nuc-2"].metadata.uid
        assert found["nuc-3"].metadata.uid != before["nuc-3"].metadata.uid
    finally:
        run_playbook(*NODE_PLAYS)
    found = nodes(core_api)
    assert "nuc-6" not in found
    assert found["nuc-3"].status.capacity["memory"] == "16Gi"


BAD_INVENTORIES = {
    "missing lab_role": (
        lambda h: agents(h)["nuc-2"].pop("lab_role"),
        "host nuc-2: lab_role: None is not allowed; every host needs one of server, client, worker",
    ),
    "unknown role": (
        lambda h: agents(h)["nuc-2"].update(lab_role="boss"),
        "host nuc-2: lab_role: 'boss' is not allowed; one of server, client, worker",
    ),
    "duplicate node name": (
        lambda h: agents(h)["nuc-3"].update(node_name="nuc-2"),
        "host nuc-3: node_name: 'nuc-2' is not allowed; node names are unique; "
        "host nuc-2 has it already",
    ),
    "malformed label": (
        lambda h: agents(h)["nuc-5"].update(node_labels={"gpu": "nvidia tesla"}),
        "host nuc-5: node_labels.gpu: 'nvidia tesla' is not allowed",
    ),
    "malformed taint": (
        lambda h: agents(h)["nuc-5"].update(node_taints=[{"key": "gpu", "effect": "Never"}]),
        "host nuc-5: node_taints[0].effect: 'Never' is not allowed; "
        "one of NoSchedule, PreferNoSchedule, NoExecute",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_stops_in_preflight_before_anything_changes(case, core_api, tmp_path):
    edit, message = BAD_INVENTORIES[case]
    hosts = sim_hosts()
    edit(hosts)
    bad = copy_inventory(tmp_path, hosts)
    labels_before = {n: v.metadata.labels for n, v in nodes(core_api).items()}
    proc = run_playbook("site.yml", *aimed_at_running_lab(), inventory=bad, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    # it stopped in the first task that checks hosts: no component task ran
    assert "sim_cluster :" not in proc.stdout
    assert not (bad / ".state").exists()
    assert {n: v.metadata.labels for n, v in nodes(core_api).items()} == labels_before


def test_bad_research_groups_stop_in_preflight_before_anything_changes(core_api, tmp_path):
    bad = copy_inventory(tmp_path, sim_hosts())
    groups = [{"name": "alpha"}, {"name": "beta", "namespace": "nuclab-alpha"}]
    namespaces = sorted(n.metadata.name for n in core_api.list_namespace().items)
    given = json.dumps({"lab_groups": groups})
    proc = run_playbook(
        "site.yml", *aimed_at_running_lab(), "-e", given, inventory=bad, check=False
    )
    assert proc.returncode != 0
    assert "lab_groups[1].namespace: ''nuclab-alpha'' is not allowed" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "sim_cluster :" not in proc.stdout and "tenancy : Apply" not in proc.stdout
    assert sorted(n.metadata.name for n in core_api.list_namespace().items) == namespaces
