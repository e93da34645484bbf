"""The lab's Pushgateway is named once (``nuclab.services``): the load generator's default, the
node probe's default URL and the simulated lab's Service all come from it, and follow the
monitoring namespace. The roles' defaults are rendered by Ansible itself, with its filters."""

from __future__ import annotations

import json
from pathlib import Path

from nuclab import services, spec
from tests.integration.conftest import REPO, run_playbook

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  vars:
    monitoring_namespace: "{ns}"
    node_probe_namespace: "{ns}"
  tasks:
    - ansible.builtin.include_vars:
        file: "{repo}/roles/node_probe/defaults/main.yml"
        name: node_probe
    - ansible.builtin.include_vars:
        file: "{repo}/roles/sim_cluster/defaults/main.yml"
        name: sim
    - ansible.builtin.copy:
        dest: "{out}"
        mode: "0600"
        content: >-
          {{{{ {{'probe': node_probe.node_probe_pushgateway_url,
                 'service': sim.sim_cluster_pushgateway_service}} | to_json }}}}
"""


def _rendered(tmp_path: Path, namespace: str) -> dict:
    out = tmp_path / f"{namespace}.json"
    book = tmp_path / f"{namespace}.yml"
    book.write_text(PLAYBOOK.format(ns=namespace, repo=REPO, out=out))
    run_playbook(str(book), inventory=REPO / "inventory" / "sim")
    return json.loads(out.read_text())


def test_every_default_names_the_one_pushgateway(tmp_path: Path) -> None:
    gateway = services.pushgateway()
    assert spec.LOADGEN_DEFAULTS["pushgateway"] == gateway["url"]
    assert gateway["url"] == "http://pushgateway-prometheus-pushgateway.monitoring.svc:9091"
    rendered = _rendered(tmp_path, "monitoring")
    assert rendered["probe"] == gateway["url"]
    service = rendered["service"]
    assert (service["name"], service["namespace"], service["port"]) == (
        "pushgateway-prometheus-pushgateway", "monitoring", 9091,
    )  # fmt: skip


def test_the_roles_follow_the_monitoring_namespace(tmp_path: Path) -> None:
    rendered = _rendered(tmp_path, "observe")
    assert rendered["probe"] == "http://pushgateway-prometheus-pushgateway.observe.svc:9091"
    assert rendered["service"]["namespace"] == "observe"
