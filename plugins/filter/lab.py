"""Filters over the lab's inventory: thin wrappers over ``nuclab.lab``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from nuclab import lab
    from nuclab.errors import NuclabError
except ImportError:  # an Ansible outside the project's venv: use the repo's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from nuclab import lab
    from nuclab.errors import NuclabError


def _hosts_and_groups(groups: Any) -> tuple[list[str], dict[str, list[str]]]:
    if not isinstance(groups, dict) and not hasattr(groups, "keys"):
        raise AnsibleFilterError("expected the groups magic variable as second argument")
    plain = {str(name): list(members) for name, members in dict(groups).items()}
    return plain.get("k3s_cluster", []), plain


def nuclab_lab_preflight(hostvars: Any, groups: Any) -> list[str]:
    """Every problem of the lab's hosts (group k3s_cluster), one message each."""
    hosts, plain = _hosts_and_groups(groups)
    return lab.preflight(hostvars, hosts, plain)


def nuclab_lab_nodes(hostvars: Any, groups: Any) -> list[dict[str, Any]]:
    """The lab's hosts as nodes: name, role, zone, telemetry, labels, taints, capacity."""
    hosts, plain = _hosts_and_groups(groups)
    try:
        return [node.as_dict() for node in lab.lab_nodes(hostvars, hosts, plain)]
    except NuclabError as exc:
        raise AnsibleFilterError(f"nuclab_lab_nodes: {exc}") from exc


def _node(data: Any) -> lab.LabNode:
    if not isinstance(data, dict) or "name" not in data:
        raise AnsibleFilterError("expected a node from nuclab_lab_nodes")
    return lab.LabNode(
        host=data["host"],
        name=data["name"],
        role=data["role"],
        zone=data["zone"],
        telemetry=data["telemetry"],
        labels=dict(data["node_labels"]),
        taints=tuple(data["taints"]),
        capacity=dict(data["capacity"]),
    )


def nuclab_node_patches(existing: Any, nodes: Any) -> dict[str, Any]:
    """Patches for the nodes that differ from the inventory, and the hosts with no node."""
    if not isinstance(existing, list) or not isinstance(nodes, list):
        raise AnsibleFilterError("nuclab_node_patches: expected two lists (Node objects, nodes)")
    return lab.node_patches(existing, [_node(n) for n in nodes])


def nuclab_sim_node_plan(existing: Any, nodes: Any, kubernetes_version: str) -> dict[str, Any]:
    """Simulated nodes to create, recreate (capacity changed) and delete."""
    if not isinstance(existing, list) or not isinstance(nodes, list):
        raise AnsibleFilterError("nuclab_sim_node_plan: expected two lists (Node objects, nodes)")
    return lab.sim_node_plan(existing, [_node(n) for n in nodes], kubernetes_version)


class FilterModule:
    """Lab inventory filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nuclab_lab_preflight": nuclab_lab_preflight,
            "nuclab_lab_nodes": nuclab_lab_nodes,
            "nuclab_node_patches": nuclab_node_patches,
            "nuclab_sim_node_plan": nuclab_sim_node_plan,
        }
