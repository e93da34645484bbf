"""Filters over the lab's inventory: thin wrappers over ``nuclab.lab``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from nuclab import images, lab, services
    from nuclab.errors import NuclabError
except ImportError:  # an Ansible outside the project's venv: use the repo's source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from nuclab import images, lab, services
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
        kind=data.get("kind", "kwok"),
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


def nuclab_sim_real_nodes(
    nodes: Any, bridge_address: str, pod_network: str, kwok_pod_network: str, lab_id: str = ""
) -> list[dict[str, Any]]:
    """The real nodes of a simulated lab with their namespace, links and addresses."""
    if not isinstance(nodes, list):
        raise AnsibleFilterError("nuclab_sim_real_nodes: expected a list of nodes")
    try:
        return [
            n.as_dict()
            for n in lab.real_nodes(
                [_node(n) for n in nodes], bridge_address, pod_network, kwok_pod_network, lab_id
            )
        ]
    except (NuclabError, ValueError) as exc:
        raise AnsibleFilterError(f"nuclab_sim_real_nodes: {exc}") from exc


def nuclab_sim_kubelet_certs(real_nodes: Any) -> list[dict[str, Any]]:
    """The client and serving certificates of the real nodes' kubelets."""
    if not isinstance(real_nodes, list):
        raise AnsibleFilterError("nuclab_sim_kubelet_certs: expected nuclab_sim_real_nodes")
    return lab.kubelet_certs([lab.RealNode(**n) for n in real_nodes])


def nuclab_sim_real_preflight(
    real_nodes: Any, uid: int, meminfo: str, node_mib: int, services_mib: int = 0
) -> list[str]:
    """Why this machine cannot run the real nodes, one message per host."""
    if not isinstance(real_nodes, list):
        raise AnsibleFilterError("nuclab_sim_real_preflight: expected nuclab_sim_real_nodes")
    nodes = [lab.RealNode(**n) for n in real_nodes]
    return lab.real_node_problems(nodes, int(uid), str(meminfo), int(node_mib), int(services_mib))


def nuclab_sim_system_reserved(node_memory: Any, meminfo: str, eviction_mib: int) -> str | None:
    """systemReserved memory that leaves a real node node_memory allocatable (None: all of it)."""
    return lab.system_reserved_memory(str(node_memory), str(meminfo), int(eviction_mib))


def nuclab_pushgateway(namespace: Any) -> dict[str, Any]:
    """The lab's Pushgateway when monitoring runs in namespace: release, name, namespace, port,
    url (``nuclab.services``)."""
    return services.pushgateway(str(namespace))


def nuclab_image_archive(path: Any, field: str = "lab_node_images") -> dict[str, Any]:
    """path, architecture, tags and labels of the image archive at path (``nuclab.images``)."""
    try:
        return images.read_archive(str(path), field).as_dict()
    except NuclabError as err:
        raise AnsibleFilterError(str(err)) from None


class FilterModule:
    """Lab inventory filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nuclab_lab_preflight": nuclab_lab_preflight,
            "nuclab_lab_nodes": nuclab_lab_nodes,
            "nuclab_node_patches": nuclab_node_patches,
            "nuclab_sim_node_plan": nuclab_sim_node_plan,
            "nuclab_sim_real_nodes": nuclab_sim_real_nodes,
            "nuclab_sim_kubelet_certs": nuclab_sim_kubelet_certs,
            "nuclab_sim_real_preflight": nuclab_sim_real_preflight,
            "nuclab_sim_system_reserved": nuclab_sim_system_reserved,
            "nuclab_pushgateway": nuclab_pushgateway,
            "nuclab_image_archive": nuclab_image_archive,
        }
