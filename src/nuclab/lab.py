"""The lab as its inventory describes it: nodes, their roles, zones, labels, taints, capacity.

Everything here is pure: it reads inventory variables (a mapping of host name to variables)
and Kubernetes objects (plain dicts), checks them, and computes what to change. The Ansible
filters in ``plugins/filter/lab.py`` are thin wrappers over these functions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from nuclab.errors import ValidationError
from nuclab.spec import ZONE_LABEL

LAB_ROLES = ("server", "client", "worker")
AGENT_ROLES = ("client", "worker")
TELEMETRY_MODES = ("cpu", "gpu")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

PREFIX = "nuclab.io/"
ROLE_LABEL = PREFIX + "role"
TELEMETRY_LABEL = PREFIX + "telemetry"
SIM_LABEL = PREFIX + "simulated"
# On the simulated lab: whether a node is a kwok node (nothing runs) or a real kubelet node.
NODE_KINDS = ("kwok", "real")
KIND_LABEL = PREFIX + "node-kind"
# Whether a node's kernel has netem (the simulated lab's real nodes say; bare metal: unknown).
NETEM_LABEL = PREFIX + "netem"
# node-role.kubernetes.io/* may only be set through the API (the kubelet refuses it); the lab
# sets it for its own roles so that `kubectl get nodes` shows them. K3s labels its servers
# (control-plane, etcd, master) itself: those are not the lab's to manage.
NODE_ROLE_LABELS = {role: f"node-role.kubernetes.io/{role}" for role in AGENT_ROLES}
RESERVED_KEYS = ("role", "telemetry", "simulated", "node-kind", "netem")

_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")
_RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def place(labels: Mapping[str, str]) -> str:
    """A node's place in the lab, ``role/zone`` ('?' for a label it lacks): how a run's nodes
    are compared with another lab's."""
    return f"{labels.get(ROLE_LABEL, '?')}/{labels.get(ZONE_LABEL, '?')}"


_LABEL_VALUE_RULE = "up to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"


@dataclass(frozen=True)
class LabNode:
    """One inventory host as a Kubernetes node."""

    host: str
    name: str
    role: str
    zone: str | None
    telemetry: str
    labels: dict[str, str] = field(default_factory=dict)  # full keys, nuclab.io/ included
    taints: tuple[dict[str, str], ...] = ()  # full keys
    capacity: dict[str, str] = field(default_factory=dict)  # simulated lab only
    kind: str = "kwok"  # simulated lab only: kwok or real (sim_node_kind)

    def desired_labels(self) -> dict[str, str]:
        labels = {ROLE_LABEL: self.role, TELEMETRY_LABEL: self.telemetry, **self.labels}
        if self.zone:
            labels[ZONE_LABEL] = self.zone
        if self.role in NODE_ROLE_LABELS:
            labels[NODE_ROLE_LABELS[self.role]] = "true"
        return labels

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "name": self.name,
            "role": self.role,
            "zone": self.zone,
            "telemetry": self.telemetry,
            "labels": self.desired_labels(),
            "node_labels": dict(self.labels),
            "taints": [dict(t) for t in self.taints],
            "capacity": dict(self.capacity),
            "kind": self.kind,
        }


def is_managed_label(key: str) -> bool:
    """Labels the lab owns: set from the inventory and removed when the inventory drops them."""
    return (
        (key.startswith(PREFIX) and key not in (SIM_LABEL, KIND_LABEL, NETEM_LABEL))
        or key == ZONE_LABEL
        or key in NODE_ROLE_LABELS.values()
    )


def is_managed_taint(taint: Mapping[str, Any]) -> bool:
    return str(taint.get("key", "")).startswith(PREFIX)


def _label_value(host: str, variable: str, value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str) or (value and not _NAME.match(value)):
        raise ValidationError(
            f"host {host}: {variable}", value, f"a label value is {_LABEL_VALUE_RULE}"
        )
    return value


def _label_key(host: str, variable: str, key: Any) -> str:
    if not isinstance(key, str) or not _NAME.match(key):
        raise ValidationError(
            f"host {host}: {variable} key",
            key,
            "a key is a name without prefix (nuclab puts it under nuclab.io/): "
            + _LABEL_VALUE_RULE,
        )
    if key in RESERVED_KEYS:
        raise ValidationError(
            f"host {host}: {variable} key",
            key,
            f"{', '.join(RESERVED_KEYS)} are set by the lab itself (use lab_role, "
            "lab_telemetry_mode)",
        )
    return PREFIX + key


def _quantity(host: str, variable: str, value: Any, what: str) -> str:
    text = str(value).strip() if isinstance(value, str | int | float) else None
    if isinstance(value, bool) or not text or not _QUANTITY.match(text):
        raise ValidationError(f"host {host}: {variable}", value, f"{what}, a Kubernetes quantity")
    return text


def _taints(host: str, raw: Any) -> tuple[dict[str, str], ...]:
    if raw in (None, ""):
        return ()
    if not isinstance(raw, list):
        raise ValidationError(f"host {host}: node_taints", raw, "a list of {key, value, effect}")
    taints: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(raw):
        where = f"node_taints[{index}]"
        if not isinstance(item, Mapping) or set(item) - {"key", "value", "effect"}:
            raise ValidationError(
                f"host {host}: {where}", item, "a mapping with key, value (optional) and effect"
            )
        key = _label_key(host, where, item.get("key"))
        effect = item.get("effect")
        if effect not in TAINT_EFFECTS:
            raise ValidationError(
                f"host {host}: {where}.effect", effect, f"one of {', '.join(TAINT_EFFECTS)}"
            )
        if (key, effect) in seen:
            raise ValidationError(
                f"host {host}: {where}", item, "each key and effect at most once per host"
            )
        seen.add((key, effect))
        taint = {"key": key, "effect": effect}
        if item.get("value") not in (None, ""):
            taint["value"] = _label_value(host, f"{where}.value", item["value"])
        taints.append(taint)
    return tuple(taints)


def lab_node(
    host: str, hostvars: Mapping[str, Any], groups: Mapping[str, Sequence[str]]
) -> LabNode:
    """Check one host's variables and return it as a node; raise ValidationError if wrong."""
    role = hostvars.get("lab_role")
    if role is None:
        raise ValidationError(
            f"host {host}: lab_role", None, f"every host needs one of {', '.join(LAB_ROLES)}"
        )
    if role not in LAB_ROLES:
        raise ValidationError(f"host {host}: lab_role", role, f"one of {', '.join(LAB_ROLES)}")
    if host in groups.get("server", ()) and role != "server":
        raise ValidationError(
            f"host {host}: lab_role", role, "hosts in the server group have lab_role server"
        )
    if host in groups.get("agent", ()) and role not in AGENT_ROLES:
        raise ValidationError(
            f"host {host}: lab_role",
            role,
            f"hosts in the agent group are {' or '.join(AGENT_ROLES)}",
        )

    name = hostvars.get("node_name", host)
    if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValidationError(
            f"host {host}: node_name",
            name,
            "a node name is a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253",
        )

    zone = hostvars.get("lab_zone")
    zone = None if zone in (None, "") else _label_value(host, "lab_zone", zone)

    telemetry = hostvars.get("lab_telemetry_mode", "cpu")
    if telemetry not in TELEMETRY_MODES:
        raise ValidationError(
            f"host {host}: lab_telemetry_mode", telemetry, f"one of {', '.join(TELEMETRY_MODES)}"
        )

    raw_labels = hostvars.get("node_labels") or {}
    if not isinstance(raw_labels, Mapping):
        raise ValidationError(f"host {host}: node_labels", raw_labels, "a mapping of key: value")
    labels = {
        _label_key(host, "node_labels", key): _label_value(host, f"node_labels.{key}", value)
        for key, value in raw_labels.items()
    }

    capacity = {
        "cpu": _quantity(host, "node_cpu", hostvars.get("node_cpu", "4"), "CPU cores"),
        "memory": _quantity(host, "node_memory", hostvars.get("node_memory", "16Gi"), "memory"),
    }
    pods = hostvars.get("node_pods", "110")
    if isinstance(pods, bool) or not str(pods).isdigit() or int(pods) < 1:
        raise ValidationError(f"host {host}: node_pods", pods, "a whole number of pods, at least 1")
    capacity["pods"] = str(int(pods))
    extra = hostvars.get("node_capacity") or {}
    if not isinstance(extra, Mapping):
        raise ValidationError(
            f"host {host}: node_capacity", extra, "a mapping of resource: quantity"
        )
    for resource, amount in extra.items():
        if (
            not isinstance(resource, str)
            or not _RESOURCE_NAME.match(resource)
            or resource in capacity
        ):
            raise ValidationError(
                f"host {host}: node_capacity key",
                resource,
                "an extended resource name such as nvidia.com/gpu (cpu, memory, pods have "
                "their own variables)",
            )
        capacity[resource] = _quantity(host, f"node_capacity.{resource}", amount, "an amount")

    kind = hostvars.get("sim_node_kind", "kwok")
    if kind not in NODE_KINDS:
        raise ValidationError(
            f"host {host}: sim_node_kind",
            kind,
            "kwok (the default: scheduled, nothing runs) or real (a kubelet node, pods run)",
        )

    return LabNode(
        host=host,
        name=name,
        role=role,
        zone=zone,
        telemetry=telemetry,
        labels=labels,
        taints=_taints(host, hostvars.get("node_taints")),
        capacity=capacity,
        kind=kind,
    )


def lab_nodes(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    groups: Mapping[str, Sequence[str]],
) -> list[LabNode]:
    """All hosts as nodes; raises ValidationError on the first problem (hosts in order)."""
    nodes: list[LabNode] = []
    by_name: dict[str, str] = {}
    for host in hosts:
        node = lab_node(host, hostvars[host], groups)
        if node.name in by_name:
            raise ValidationError(
                f"host {host}: node_name",
                node.name,
                f"node names are unique; host {by_name[node.name]} has it already",
            )
        by_name[node.name] = host
        nodes.append(node)
    return nodes


def preflight(
    hostvars: Mapping[str, Mapping[str, Any]],
    hosts: Iterable[str],
    groups: Mapping[str, Sequence[str]],
) -> list[str]:
    """Every problem in the inventory, one message each (empty when all is well)."""
    problems: list[str] = []
    by_name: dict[str, str] = {}
    for host in hosts:
        try:
            node = lab_node(host, hostvars[host], groups)
        except ValidationError as exc:
            problems.append(str(exc))
            continue
        if node.name in by_name:
            problems.append(
                str(
                    ValidationError(
                        f"host {host}: node_name",
                        node.name,
                        f"node names are unique; host {by_name[node.name]} has it already",
                    )
                )
            )
        by_name.setdefault(node.name, host)
    return problems


def node_patch(current: Mapping[str, Any], node: LabNode) -> dict[str, Any]:
    """A JSON merge patch that makes ``current`` (a Node) carry the lab's labels and taints.

    Labels and taints the lab manages (``nuclab.io/*``, the zone, the lab's node roles) are set
    to what the inventory says; managed ones it no longer lists are removed; everything else
    (labels of K3s, the kubelet, other tools; taints of the node lifecycle controller) stays.
    Returns ``{}`` when nothing needs to change.
    """
    metadata = current.get("metadata") or {}
    have_labels: Mapping[str, str] = metadata.get("labels") or {}
    want_labels = node.desired_labels()
    labels: dict[str, str | None] = {
        key: value for key, value in want_labels.items() if have_labels.get(key) != value
    }
    labels.update(
        {key: None for key in have_labels if is_managed_label(key) and key not in want_labels}
    )

    have_taints: list[Mapping[str, Any]] = (current.get("spec") or {}).get("taints") or []
    kept = [dict(t) for t in have_taints if not is_managed_taint(t)]
    want_taints = kept + [dict(t) for t in node.taints]

    def _key(taint: Mapping[str, Any]) -> tuple[str, str, str]:
        return (str(taint.get("key")), str(taint.get("effect")), str(taint.get("value") or ""))

    patch: dict[str, Any] = {}
    if labels:
        patch["metadata"] = {"labels": labels}
    have_set = sorted(_key(t) for t in have_taints if is_managed_taint(t))
    want_set = sorted(_key(t) for t in node.taints)
    if have_set != want_set:
        patch["spec"] = {"taints": want_taints or None}
    return patch


def node_patches(
    existing: Sequence[Mapping[str, Any]], nodes: Sequence[LabNode]
) -> dict[str, list[Any]]:
    """Merge patches (full objects for one API call) for every node that differs from the
    inventory, and the hosts that have no node in the cluster."""
    by_name = {n["metadata"]["name"]: n for n in existing}
    patches: list[dict[str, Any]] = []
    missing: list[dict[str, str]] = []
    for node in nodes:
        current = by_name.get(node.name)
        if current is None:
            missing.append({"host": node.host, "name": node.name})
            continue
        patch = node_patch(current, node)
        if patch:
            metadata = {"name": node.name, **patch.pop("metadata", {})}
            patches.append({"apiVersion": "v1", "kind": "Node", "metadata": metadata, **patch})
    return {"patches": patches, "missing": missing}


def sim_node(node: LabNode, kubernetes_version: str, arch: str = "amd64") -> dict[str, Any]:
    """The Node object of a simulated (kwok) node, with the inventory's capacity."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "annotations": {
                "kwok.x-k8s.io/node": "fake",
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": node.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "type": "kwok",
                SIM_LABEL: "true",
                KIND_LABEL: "kwok",  # as the real nodes' kubelets say node-kind=real
                # what K3s puts on its servers (the lab never manages these)
                **(
                    {
                        "node-role.kubernetes.io/control-plane": "true",
                        "node-role.kubernetes.io/master": "true",
                    }
                    if node.role == "server"
                    else {}
                ),
            },
        },
        "spec": {},
        "status": {
            "capacity": dict(node.capacity),
            "allocatable": dict(node.capacity),
            "nodeInfo": {
                "architecture": arch,
                "operatingSystem": "linux",
                "kubeletVersion": kubernetes_version,
                "kubeProxyVersion": kubernetes_version,
                "containerRuntimeVersion": "kwok",
            },
        },
    }


def _amounts(capacity: Mapping[str, Any]) -> dict[str, Any]:
    return {key: parse_quantity(str(value)) for key, value in capacity.items()}


def sim_node_plan(
    existing: Sequence[Mapping[str, Any]],
    nodes: Sequence[LabNode],
    kubernetes_version: str,
) -> dict[str, list[Any]]:
    """What to do to the simulated nodes: create the missing, recreate those whose capacity
    changed (a node's capacity is status: only its kubelet, here kwok, may change it), and
    delete the simulated nodes the inventory no longer lists."""
    by_name = {n["metadata"]["name"]: n for n in existing}
    create: list[dict[str, Any]] = []
    recreate: list[dict[str, Any]] = []
    for node in nodes:
        if node.kind != "kwok":  # a real node's kubelet registers it
            continue
        have = by_name.get(node.name)
        definition = sim_node(node, kubernetes_version)
        if have is None:
            create.append(definition)
            continue
        capacity = (have.get("status") or {}).get("capacity") or {}
        kind = (have["metadata"].get("labels") or {}).get(KIND_LABEL)
        if not _is_kwok(have) or kind != "kwok" or _amounts(capacity) != _amounts(node.capacity):
            recreate.append(definition)
    kwok = {node.name for node in nodes if node.kind == "kwok"}
    real = {node.name for node in nodes if node.kind == "real"}
    delete = sorted(
        name
        for name, obj in by_name.items()
        if (obj["metadata"].get("labels") or {}).get(SIM_LABEL) == "true"
        and name not in kwok
        and not (name in real and not _is_kwok(obj))
    )
    return {"create": create, "recreate": recreate, "delete": delete}


def _is_kwok(node: Mapping[str, Any]) -> bool:
    return (node["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") == "fake"


@dataclass(frozen=True)
class RealNode:
    """Where a real node of the simulated lab lives on this machine."""

    name: str
    index: int
    netns: str  # the node's network namespace
    host_link: str  # its veth's end on the lab's bridge
    address: str  # the node's IP on the lab's bridge
    pod_cidr: str  # the pods' addresses on this node

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def real_nodes(
    nodes: Sequence[LabNode],
    bridge_address: str,
    pod_network: str,
    kwok_pod_network: str,
    lab_id: str = "",
) -> list[RealNode]:
    """The real nodes' addresses: node i (in name order, from 1) gets address 10 + i of the
    network of ``bridge_address`` (this machine's address on the nodes' bridge) and the i-th
    /24 of ``pod_network`` that does not overlap ``kwok_pod_network`` (kwok's pod addresses).
    Their network namespaces are named after ``lab_id`` too: /run/netns is one folder for every
    lab on the machine (two clones, each with a lab in a network namespace of its own)."""
    bridge = ipaddress.ip_interface(bridge_address).network
    node_network = str(bridge)
    pods = ipaddress.ip_network(pod_network)
    kwok = ipaddress.ip_network(kwok_pod_network)
    subnets = [s for s in pods.subnets(new_prefix=max(24, pods.prefixlen)) if not s.overlaps(kwok)]
    names = sorted(node.name for node in nodes if node.kind == "real")
    hosts = list(bridge.hosts())
    if len(names) > min(len(subnets) - 1, len(hosts) - 11):
        raise ValidationError(
            "sim_node_kind",
            f"{len(names)} real nodes",
            f"at most {min(len(subnets) - 1, len(hosts) - 11)} with the node network "
            f"{node_network} and pod network {pod_network}",
        )
    return [
        RealNode(
            name=name,
            index=i,
            netns=f"nuclab-{lab_id}-{name}" if lab_id else f"nuclab-{name}",
            host_link=f"nlsim{i}",
            address=f"{hosts[9 + i]}/{bridge.prefixlen}",
            pod_cidr=str(subnets[i]),
        )
        for i, name in enumerate(names, start=1)
    ]


def kubelet_certs(nodes: Sequence[RealNode]) -> list[dict[str, Any]]:
    """The certificates of the real nodes' kubelets: a client one (the node authorizer knows
    ``system:node:<name>`` in ``system:nodes``) and a serving one for the node's address."""
    certs: list[dict[str, Any]] = []
    for node in nodes:
        address = node.address.split("/", 1)[0]
        certs.append(
            {
                "name": f"kubelet-{node.name}",
                "common_name": f"system:node:{node.name}",
                "organization": "system:nodes",
                "usage": "clientAuth",
            }
        )
        certs.append(
            {
                "name": f"kubelet-{node.name}-serving",
                "common_name": f"system:node:{node.name}",
                "usage": "serverAuth",
                "san": [f"IP:{address}", f"DNS:{node.name}"],
            }
        )
    return certs


def system_reserved_memory(node_memory: str, meminfo: str, eviction_mib: int) -> str | None:
    """The kubelet's ``systemReserved.memory`` that makes a real node's allocatable memory the
    inventory's ``node_memory``: the machine's memory (``MemTotal`` of /proc/meminfo, which is
    the capacity the kubelet reports) less ``node_memory`` less the hard eviction threshold.
    None when ``node_memory`` is not below that: the node then offers what the machine has."""
    total_kib = 0
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            total_kib = int(line.split()[1])
    want_kib = int(parse_quantity(str(node_memory)) // 1024)
    reserved_kib = total_kib - want_kib - eviction_mib * 1024
    return f"{reserved_kib}Ki" if reserved_kib > 0 else None


def real_node_problems(
    nodes: Sequence[RealNode], uid: int, meminfo: str, node_mib: int, services_mib: int = 0
) -> list[str]:
    """Why this machine cannot run the real nodes, one message per host (empty: it can).

    ``meminfo`` is the text of /proc/meminfo; each node needs ``node_mib`` besides its pods,
    and the lab's services on this machine that come with real nodes (the Kafka broker, the
    Pushgateway) ``services_mib`` in all.
    """
    available_kib = 0
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            available_kib = int(line.split()[1])
    need_mib = node_mib * len(nodes) + services_mib
    problems = []
    for node in nodes:
        if uid != 0:
            problems.append(
                f"host {node.name}: sim_node_kind: real needs root (network namespaces, "
                f"cgroups, mounts); Ansible runs as uid {uid}"
            )
        if need_mib * 1024 > available_kib:
            problems.append(
                f"host {node.name}: sim_node_kind: real: {len(nodes)} real nodes and the lab's "
                f"services need about {need_mib} MiB besides their pods, this machine has "
                f"{available_kib // 1024} MiB available (make fewer hosts real, or lower "
                "sim_cluster_real_node_mib, sim_cluster_services_mib)"
            )
    return problems
