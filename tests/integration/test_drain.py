"""Drain before restart (roles/k3s_common/tasks/drain.yml and uncordon.yml, which
playbooks/upgrade.yml and playbooks/reboot.yml run around a node's restart), against the
simulated lab's real API on a kwok node: the cordon, the eviction API, a PodDisruptionBudget's
refusal and the rescheduling are real. The restart between drain and uncordon is the playbooks'
part; the Molecule scenarios show their order on the podman hosts, where the K3s test double
serves no API to drain through (lab_drain_before_restart: false there).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration.conftest import run_playbook
from tests.integration.realnodes import wait_for

NODE = "nuc-3"  # a kwok worker: nothing of the other tests is pinned there
NAMESPACE = "nuclab-drain-test"
APP = "held"
PLAY = """---
- name: Drain or uncordon a node, as upgrade.yml and reboot.yml do around its restart
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    k3s_common_node_name: {node}
    k3s_common_kubeconfig: {kubeconfig}
    k3s_common_drain_timeout: "{{{{ timeout | default(300) }}}}"
  tasks:
    - name: Drain or uncordon
      ansible.builtin.include_role:
        name: k3s_common
        tasks_from: "{{{{ step }}}}"
"""
RESTRICTED = {
    "runAsNonRoot": True, "runAsUser": 65535, "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}  # fmt: skip


def _changed(stdout: str) -> int:
    found = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", stdout)
    assert found, stdout[-2000:]
    return int(found.group(1))


@pytest.fixture
def apis(sim_lab: Path, tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    api = config.new_client_from_config(str(sim_lab))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    play = tmp_path / "drain.yml"
    play.write_text(PLAY.format(node=NODE, kubeconfig=sim_lab))
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        yield core, apps, play
    finally:
        core.patch_node(NODE, {"spec": {"unschedulable": None}})
        core.delete_namespace(NAMESPACE)
        wait_for(lambda: not _namespace_exists(core), 120, f"{NAMESPACE} to be deleted")


def _namespace_exists(core: Any) -> bool:
    try:
        core.read_namespace(NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _pods(core: Any) -> list[Any]:
    return core.list_namespaced_pod(NAMESPACE, label_selector=f"app={APP}").items


def _running_on_node(core: Any) -> list[Any]:
    return [p for p in _pods(core) if p.spec.node_name == NODE and p.status.phase == "Running"]


def _on_node(core: Any) -> list[Any]:
    return core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}").items


def test_a_node_is_drained_within_its_budgets_and_made_schedulable_again(apis) -> None:  # type: ignore[no-untyped-def]
    core, apps, play = apis
    apps.create_namespaced_stateful_set(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1, "serviceName": APP, "selector": {"matchLabels": {"app": APP}},
            "template": {"metadata": {"labels": {"app": APP}}, "spec": {
                "nodeSelector": {"kubernetes.io/hostname": NODE},
                "containers": [{"name": "c", "image": "localhost/nuclab/pause:3.10",
                                "securityContext": RESTRICTED}],
            }},
        },
    })  # fmt: skip
    client.PolicyV1Api(core.api_client).create_namespaced_pod_disruption_budget(NAMESPACE, {
        "metadata": {"name": APP},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": APP}}},
    })  # fmt: skip
    running = wait_for(lambda: _running_on_node(core), 60, "the pod on " + NODE)
    uid = running[0].metadata.uid
    policy = client.PolicyV1Api(core.api_client)
    wait_for(
        lambda: policy.read_namespaced_pod_disruption_budget(APP, NAMESPACE).status.current_healthy
        == 1, 30, "the budget to count the pod",
    )  # fmt: skip
    daemons = {p.metadata.name for p in _on_node(core) if p.metadata.namespace != NAMESPACE}

    # The budget allows no disruption: the drain gives up after its timeout, nothing restarts.
    started = time.monotonic()
    refused = run_playbook(str(play), "-e", "step=drain", "-e", "timeout=10", check=False)
    took = time.monotonic() - started
    assert refused.returncode == 2, refused.stdout[-3000:]
    assert (
        f"node {NODE} could not be drained within k3s_common_drain_timeout = 10 s, so it was not "
        "restarted and is schedulable again"
    ) in refused.stdout, refused.stdout[-3000:]
    assert "Too Many Requests" in refused.stdout or "disruption budget" in refused.stdout
    print(f"the drain the budget refused gave up after {took:.0f} s")
    assert not core.read_node(NODE).spec.unschedulable
    assert [p.metadata.uid for p in _pods(core)] == [uid]

    # Without the budget: cordoned, the pod evicted, its replacement waits for the node.
    policy.delete_namespaced_pod_disruption_budget(APP, NAMESPACE)
    drained = run_playbook(str(play), "-e", "step=drain", "-e", "timeout=60")
    assert _changed(drained.stdout) == 1
    assert core.read_node(NODE).spec.unschedulable
    replaced = wait_for(
        lambda: [p for p in _pods(core) if p.metadata.uid != uid], 60, "the replacement pod"
    )
    assert replaced[0].spec.node_name is None and replaced[0].status.phase == "Pending"
    left = {p.metadata.name for p in _on_node(core)}
    assert left == daemons, "the DaemonSets' pods stay, nothing else"

    # Uncordon: the replacement runs on the node again; a second uncordon changes nothing.
    assert _changed(run_playbook(str(play), "-e", "step=uncordon").stdout) == 1
    assert not core.read_node(NODE).spec.unschedulable
    wait_for(lambda: _running_on_node(core), 60, "the replacement to run on " + NODE)
    assert _changed(run_playbook(str(play), "-e", "step=uncordon").stdout) == 0


def test_a_pod_no_controller_manages_stops_the_drain_and_is_kept(apis) -> None:  # type: ignore[no-untyped-def]
    core, _, play = apis
    core.create_namespaced_pod(NAMESPACE, {
        "metadata": {"name": "alone", "labels": {"app": APP}},
        "spec": {"nodeSelector": {"kubernetes.io/hostname": NODE},
                 "containers": [{"name": "c", "image": "localhost/nuclab/pause:3.10",
                                 "securityContext": RESTRICTED}]},
    })  # fmt: skip
    wait_for(lambda: _running_on_node(core), 60, "the bare pod")
    refused = run_playbook(str(play), "-e", "step=drain", "-e", "timeout=5", check=False)
    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "not managed by" in refused.stdout and f"{NAMESPACE}/alone" in refused.stdout
    assert not core.read_node(NODE).spec.unschedulable
    assert [p.metadata.name for p in _pods(core)] == ["alone"]  # kept
