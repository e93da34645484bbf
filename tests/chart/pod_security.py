"""The Pod Security Standards' `restricted` level (which includes `baseline`), as a check of a
rendered pod spec: https://kubernetes.io/docs/concepts/security/pod-security-standards/.

The experiment namespaces enforce `restricted` (nuclab.deploy.NAMESPACE_LABELS); the chart tests
run every pod the chart renders through ``violations`` so that a chart change the API server
would refuse fails here first, without a lab.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
SELINUX_TYPES = frozenset(
    {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
)
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.ping_group_range",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every container of a pod spec: init, regular and ephemeral."""
    return [
        *(pod.get("initContainers") or []),
        *(pod.get("containers") or []),
        *(pod.get("ephemeralContainers") or []),
    ]


def violations(pod: Mapping[str, Any], annotations: Mapping[str, str] | None = None) -> list[str]:
    """What in a pod spec (and its metadata's annotations) `restricted` refuses; [] = admitted."""
    found: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(field)
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {', '.join(sorted(kinds - VOLUME_TYPES))}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("pod windowsOptions.hostProcess")
    found += _selinux("pod", pod_sc)
    found += _apparmor("pod", pod_sc)
    if pod_sc.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in SECCOMP_TYPES:
        found.append(f"pod seccompProfile {pod_seccomp}")
    for name, value in (annotations or {}).items():
        if name.startswith(APPARMOR_ANNOTATION) and value == "unconfined":
            found.append(f"annotation {name}")
    for container in containers(pod):
        found += [f"{container['name']}: {v}" for v in _container(container, pod_sc)]
    return found


def _container(container: Mapping[str, Any], pod_sc: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        found.append("privileged")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("windowsOptions.hostProcess")
    if sc.get("procMount", "Default") != "Default":
        found.append(f"procMount {sc['procMount']}")
    found += _selinux("container", sc)
    found += _apparmor("container", sc)
    for port in container.get("ports") or []:
        if port.get("hostPort"):
            found.append(f"hostPort {port['hostPort']}")
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation is not false")
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        found.append("runAsNonRoot is not true (container or pod)")
    if sc.get("runAsUser") == 0:
        found.append("runAsUser 0")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in SECCOMP_TYPES:
        found.append(f"seccompProfile {seccomp} (container or pod)")
    capabilities = sc.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        found.append("capabilities do not drop ALL")
    added = set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}
    if added:
        found.append(f"capabilities add {', '.join(sorted(added))}")
    return found


def _selinux(where: str, sc: Mapping[str, Any]) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    found = [f"{where} seLinuxOptions.{key}" for key in ("user", "role") if options.get(key)]
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where} seLinuxOptions.type {options['type']}")
    return found


def _apparmor(where: str, sc: Mapping[str, Any]) -> list[str]:
    kind = (sc.get("appArmorProfile") or {}).get("type")
    return [f"{where} appArmorProfile Unconfined"] if kind == "Unconfined" else []
