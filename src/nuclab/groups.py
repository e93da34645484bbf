"""Research groups of a lab (the inventory's ``lab_groups``): who may run experiments where.

Each group gets its own namespace (``nuclab-<group>``, or the one the inventory names), a
ServiceAccount in the lab's system namespace whose token is the group's credential, and a
RoleBinding in its namespace to one ClusterRole, ``nuclab:experimenter``, that allows what an
experiment is made of (the chart's kinds, the release records helm keeps in Secrets, the peers'
logs and exec) and nothing else. A ClusterRole of its own lets a group read its namespace and the
lab's nodes (placement, `nuclab list`'s SIMULATED column): no other cluster-wide right.
The objects are built here, once; ``roles/tenancy`` applies them and writes each group's
kubeconfig (``artifacts/<group>.kubeconfig``, 0600) from ``kubeconfig``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nuclab.errors import ValidationError

# The namespace of experiments run with the lab's admin kubeconfig (experiment_namespace's
# default) and the namespace that holds the groups' ServiceAccounts (no group has any right in it).
DEFAULT_NAMESPACE = "nuclab"
SYSTEM_NAMESPACE = "nuclab-system"
NAMESPACE_PREFIX = "nuclab-"
GROUP_LABEL = "nuclab.io/group"
EXPERIMENTER_ROLE = "nuclab:experimenter"
GROUP_NAME_MAX = 20
GROUP_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Group names whose default namespace would be one the lab uses itself.
RESERVED = ("system",)

_ALL = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]
# What an experiment is made of (charts/experiment/templates and helm's release records), in
# the group's own namespace only (the ClusterRole is bound by a RoleBinding there).
EXPERIMENTER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["configmaps", "services", "serviceaccounts", "secrets", "pods"],
        "verbs": _ALL,
    },
    {"apiGroups": [""], "resources": ["pods/log", "events", "endpoints"], "verbs": _READ},
    {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
    {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale"], "verbs": _ALL},
    {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": _READ},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": _ALL},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _ALL},
    {"apiGroups": ["monitoring.coreos.com"], "resources": ["podmonitors"], "verbs": _ALL},
]


# Pods in a group's namespace: what Pod Security "restricted" admits. The namespaces enforce it
# (nuclab.deploy.NAMESPACE_LABELS); this ValidatingAdmissionPolicy (Kubernetes' own CEL admission)
# holds the same line again, bound to the group label rather than to the namespace's Pod
# Security labels, so that it still holds where Pod Security does not: a namespace relabelled by
# an admin or a tool, one in the API server's Pod Security exemptions
# (k3s_server_psa_exempt_namespaces), an exempt user or runtime class. Nothing of an experiment
# needs more: the node agent (roles/net_agent) applies the network emulation from the node.
# No privileged container, host namespace, host path, host port, added capability (bar
# NET_BIND_SERVICE), root user, privilege escalation, unconfined seccomp or AppArmor, SELinux
# user/role/type of its own, host process or unmasked /proc; stricter than Pod Security in two
# ways: no sysctl at all and no ephemeral container (kubectl debug would run beside a peer what
# the group chooses).
POD_POLICY = "nuclab-group-pods"
_SC = "has(c.securityContext)"
_CAPS = f"{_SC} && has(c.securityContext.capabilities)"
_SELINUX_TYPES = "['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']"
_APPARMOR = "container.apparmor.security.beta.kubernetes.io/"
POD_VARIABLES = [
    {
        "name": "containers",
        "expression": "object.spec.containers + "
        "(has(object.spec.initContainers) ? object.spec.initContainers : [])",
    },
    {
        "name": "pod",
        "expression": "has(object.spec.securityContext) ? object.spec.securityContext : {}",
    },
    {
        # the pod's security context and every container's, for the rules both may break
        "name": "contexts",
        "expression": "[variables.pod] + variables.containers.map(c, "
        f"{_SC} ? c.securityContext : {{}})",
    },
]
POD_VALIDATIONS = [
    (
        "!(has(object.spec.hostNetwork) && object.spec.hostNetwork) && "
        "!(has(object.spec.hostPID) && object.spec.hostPID) && "
        "!(has(object.spec.hostIPC) && object.spec.hostIPC)",
        "hostNetwork, hostPID and hostIPC are not allowed",
    ),
    (
        "!has(object.spec.volumes) || object.spec.volumes.all(v, has(v.configMap) || "
        "has(v.csi) || has(v.downwardAPI) || has(v.emptyDir) || has(v.ephemeral) || "
        "has(v.persistentVolumeClaim) || has(v.projected) || has(v.secret))",
        "volumes may be configMap, csi, downwardAPI, emptyDir, ephemeral, "
        "persistentVolumeClaim, projected or secret (no hostPath)",
    ),
    (
        f"variables.containers.all(c, !{_SC} || !has(c.securityContext.privileged) || "
        "!c.securityContext.privileged)",
        "privileged containers are not allowed",
    ),
    (
        "variables.containers.all(c, !has(c.ports) || "
        "c.ports.all(p, !has(p.hostPort) || p.hostPort == 0))",
        "hostPort is not allowed",
    ),
    (
        f"variables.containers.all(c, {_SC} && "
        "has(c.securityContext.allowPrivilegeEscalation) && "
        "!c.securityContext.allowPrivilegeEscalation)",
        "every container must set securityContext.allowPrivilegeEscalation=false",
    ),
    (
        f"variables.containers.all(c, {_CAPS} && has(c.securityContext.capabilities.drop) && "
        "'ALL' in c.securityContext.capabilities.drop)",
        "every container must drop ALL capabilities",
    ),
    (
        f"variables.containers.all(c, !({_CAPS} && has(c.securityContext.capabilities.add)) || "
        "c.securityContext.capabilities.add.all(a, a == 'NET_BIND_SERVICE'))",
        "containers may add only NET_BIND_SERVICE",
    ),
    (
        f"variables.containers.all(c, ({_SC} && has(c.securityContext.runAsNonRoot)) ? "
        "c.securityContext.runAsNonRoot : "
        "(has(variables.pod.runAsNonRoot) && variables.pod.runAsNonRoot))",
        "containers must run as non-root (securityContext.runAsNonRoot=true)",
    ),
    (
        "variables.contexts.all(s, !has(s.runAsUser) || s.runAsUser != 0)",
        "containers may not run as user 0",
    ),
    (
        f"variables.containers.all(c, ({_SC} && has(c.securityContext.seccompProfile)) ? "
        "c.securityContext.seccompProfile.type in ['RuntimeDefault', 'Localhost'] : "
        "(has(variables.pod.seccompProfile) && "
        "variables.pod.seccompProfile.type in ['RuntimeDefault', 'Localhost']))",
        "seccompProfile must be RuntimeDefault or Localhost",
    ),
    (
        "variables.contexts.all(s, !has(s.appArmorProfile) || "
        "s.appArmorProfile.type != 'Unconfined') && "
        "(!has(object.metadata.annotations) || object.metadata.annotations.all(k, "
        f"!k.startsWith('{_APPARMOR}') || object.metadata.annotations[k] != 'unconfined'))",
        "AppArmor may not be Unconfined",
    ),
    (
        "variables.contexts.all(s, !has(s.seLinuxOptions) || "
        "(!has(s.seLinuxOptions.user) && !has(s.seLinuxOptions.role) && "
        f"(!has(s.seLinuxOptions.type) || s.seLinuxOptions.type in {_SELINUX_TYPES})))",
        "seLinuxOptions may set only a container type",
    ),
    (
        "variables.contexts.all(s, !has(s.windowsOptions) || "
        "!has(s.windowsOptions.hostProcess) || !s.windowsOptions.hostProcess)",
        "host processes are not allowed",
    ),
    (
        f"variables.containers.all(c, !{_SC} || !has(c.securityContext.procMount) || "
        "c.securityContext.procMount == 'Default')",
        "procMount must be Default",
    ),
    (
        "!has(variables.pod.sysctls) || size(variables.pod.sysctls) == 0",
        "sysctls are not allowed",
    ),
    (
        "!has(object.spec.ephemeralContainers) || size(object.spec.ephemeralContainers) == 0",
        "ephemeral containers are not allowed",
    ),
]


def pod_policy() -> list[dict[str, Any]]:
    """The ValidatingAdmissionPolicy of the groups' pods and its binding to their namespaces."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": POD_POLICY, "labels": _part_of()},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["pods", "pods/ephemeralcontainers"],
                        }
                    ]
                },
                "variables": POD_VARIABLES,
                "validations": [
                    {"expression": expression, "message": f"{POD_POLICY}: {message}"}
                    for expression, message in POD_VALIDATIONS
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": POD_POLICY, "labels": _part_of()},
            "spec": {
                "policyName": POD_POLICY,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchExpressions": [{"key": GROUP_LABEL, "operator": "Exists"}]
                    }
                },
            },
        },
    ]


# A namespace's Kafka rights: its user may use only topics and consumer groups whose names start
# with `<namespace>.` (a namespace name has no dot, so no prefix is another's), in the shape of a
# Strimzi KafkaUser's `spec.authorization.acls`. Consumers read; producers write and create their
# topics; both read a topic's settings (the load generator checks max.message.bytes first).
KAFKA_TOPIC_OPERATIONS = ["Read", "Write", "Create", "Describe", "DescribeConfigs"]
KAFKA_GROUP_OPERATIONS = ["Read", "Describe"]


def kafka_prefix(namespace: str) -> str:
    """The start of every Kafka topic and consumer group name of a namespace's experiments."""
    return f"{namespace}."


def kafka_acls(namespace: str) -> list[dict[str, Any]]:
    """What a namespace's Kafka user may do (Strimzi's `simple` authorization ACLs)."""
    prefix = kafka_prefix(namespace)
    return [
        {
            "resource": {"type": kind, "name": prefix, "patternType": "prefix"},
            "operations": list(operations),
        }
        for kind, operations in (
            ("topic", KAFKA_TOPIC_OPERATIONS),
            ("group", KAFKA_GROUP_OPERATIONS),
        )
    ]


@dataclass(frozen=True)
class Group:
    """A research group: its name, its namespace, its ServiceAccount (in SYSTEM_NAMESPACE)."""

    name: str
    namespace: str

    @property
    def service_account(self) -> str:
        return f"group-{self.name}"

    @property
    def token_secret(self) -> str:
        return f"group-{self.name}-token"

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "service_account": self.service_account,
            "token_secret": self.token_secret,
            "credential_namespace": SYSTEM_NAMESPACE,
        }


def check(given: object, experiment_namespace: str = DEFAULT_NAMESPACE) -> list[Group]:
    """The inventory's ``lab_groups``: a list of ``{name, namespace}`` (namespace optional).
    Errors name the entry, the value and what is allowed."""
    if given is None or given == "":
        return []
    if not isinstance(given, list):
        raise ValidationError("lab_groups", given, "a list of {name, namespace} mappings")
    found: list[Group] = []
    for index, entry in enumerate(given):
        where = f"lab_groups[{index}]"
        if not isinstance(entry, Mapping):
            raise ValidationError(where, entry, "a mapping with name (and namespace)")
        unknown = sorted(set(entry) - {"name", "namespace"})
        if unknown:
            raise ValidationError(f"{where}.{unknown[0]}", entry[unknown[0]], "name, namespace")
        name = entry.get("name")
        if (
            not isinstance(name, str)
            or len(name) > GROUP_NAME_MAX
            or not GROUP_NAME_RE.match(name)
            or name in RESERVED
        ):
            raise ValidationError(
                f"{where}.name",
                name,
                f"a lower-case DNS label of at most {GROUP_NAME_MAX} characters that starts "
                f"with a letter, not {', '.join(RESERVED)}",
            )
        namespace = entry.get("namespace", f"{NAMESPACE_PREFIX}{name}")
        taken = {experiment_namespace, SYSTEM_NAMESPACE, "default", "kube-system", "kube-public"}
        if (
            not isinstance(namespace, str)
            or len(namespace) > 63
            or not NAMESPACE_RE.match(namespace)
            or namespace in taken
            or namespace.startswith("kube-")
        ):
            raise ValidationError(
                f"{where}.namespace",
                namespace,
                "a namespace name (DNS label) of the group's own: not "
                f"{', '.join(sorted(taken))} or kube-*",
            )
        for other in found:
            if other.name == name:
                raise ValidationError(f"{where}.name", name, "a name no other group has")
            if other.namespace == namespace:
                raise ValidationError(
                    f"{where}.namespace", namespace, f"a namespace not of group {other.name}"
                )
        found.append(Group(name=name, namespace=namespace))
    return found


def objects(groups: list[Group], namespace_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every object the groups need, in the order they can be applied."""
    made: list[dict[str, Any]] = [
        _namespace(SYSTEM_NAMESPACE, {"app.kubernetes.io/part-of": "nuclab"}),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": EXPERIMENTER_ROLE, "labels": _part_of()},
            "rules": EXPERIMENTER_RULES,
        },
        *pod_policy(),
    ]
    for group in groups:
        subject = {
            "kind": "ServiceAccount",
            "name": group.service_account,
            "namespace": SYSTEM_NAMESPACE,
        }
        own = f"nuclab:group:{group.name}"
        made += [
            _namespace(group.namespace, {**namespace_labels, GROUP_LABEL: group.name}),
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": group.service_account,
                    "namespace": SYSTEM_NAMESPACE,
                    "labels": {**_part_of(), GROUP_LABEL: group.name},
                },
                "automountServiceAccountToken": False,
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": group.token_secret,
                    "namespace": SYSTEM_NAMESPACE,
                    "labels": {**_part_of(), GROUP_LABEL: group.name},
                    "annotations": {"kubernetes.io/service-account.name": group.service_account},
                },
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {
                    "name": "nuclab-experimenters",
                    "namespace": group.namespace,
                    "labels": {**_part_of(), GROUP_LABEL: group.name},
                },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": EXPERIMENTER_ROLE,
                },
                "subjects": [subject],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": own, "labels": {**_part_of(), GROUP_LABEL: group.name}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["namespaces"],
                        "resourceNames": [group.namespace],
                        "verbs": ["get"],
                    },
                    {"apiGroups": [""], "resources": ["nodes"], "verbs": _READ},
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": own, "labels": {**_part_of(), GROUP_LABEL: group.name}},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": own,
                },
                "subjects": [subject],
            },
        ]
    return made


def _part_of() -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "nuclab"}


def _namespace(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels)},
    }


def kubeconfig(admin: Mapping[str, Any], group: Group, token: str) -> str:
    """The group's kubeconfig: the admin kubeconfig's cluster (server and CA), the group's
    token, and a context whose namespace is the group's (where nuclab and experiment.yml put
    its experiments)."""
    contexts = {c.get("name"): c.get("context") or {} for c in admin.get("contexts") or []}
    current = contexts.get(admin.get("current-context")) or {}
    clusters = {c.get("name"): c.get("cluster") or {} for c in admin.get("clusters") or []}
    cluster = dict(clusters.get(current.get("cluster")) or {})
    if not cluster.get("server"):
        raise ValidationError(
            "lab_kubeconfig",
            admin.get("current-context"),
            "a kubeconfig whose current context names a cluster",
        )
    ca_file = cluster.pop("certificate-authority", None)
    if ca_file and not cluster.get("certificate-authority-data"):
        cluster["certificate-authority-data"] = base64.b64encode(
            Path(ca_file).read_bytes()
        ).decode()
    name = f"nuclab-{group.name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": group.namespace}}
        ],
        "current-context": name,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubeconfig_namespace(path: str | Path | None) -> str:
    """The namespace of a kubeconfig's current context (a group's), else DEFAULT_NAMESPACE."""
    if not path:
        return DEFAULT_NAMESPACE
    try:
        config = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return DEFAULT_NAMESPACE
    if not isinstance(config, dict):
        return DEFAULT_NAMESPACE
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == config.get("current-context"):
            namespace = (entry.get("context") or {}).get("namespace")
            if isinstance(namespace, str) and namespace:
                return namespace
    return DEFAULT_NAMESPACE
