"""What the cluster says about an experiment: its time window (from the Helm release), its spec,
chart, images and the nodes it ran on. Read through the Kubernetes API, never written."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nuclab import spec
from nuclab.errors import NotFoundError, NuclabError
from nuclab.experiments import EXPERIMENT_LABEL

HELM_NAMESPACE = "nuclab"  # the experiment role's default experiment_namespace


def parse_time(text: str) -> datetime:
    """Helm's RFC 3339 times (nanoseconds, any offset) as an aware UTC datetime."""
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    head, dot, rest = t.partition(".")
    if dot:  # Python takes at most microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        t = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    return datetime.fromisoformat(t).astimezone(UTC)


def decode_release(data: str) -> dict[str, Any]:
    """A Helm v3 release record: base64 (Secret data) of base64 of gzipped JSON."""
    raw = base64.b64decode(base64.b64decode(data))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


@dataclass(slots=True)
class ReleaseInfo:
    name: str
    revisions: list[dict[str, Any]]  # oldest first

    @property
    def latest(self) -> dict[str, Any]:
        return self.revisions[-1]

    def window(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """From the first deployment to the deletion (if the release is uninstalled) or now."""
        first = min(parse_time(r["info"]["first_deployed"]) for r in self.revisions)
        deleted = self.latest["info"].get("deleted") or ""
        end = parse_time(deleted) if deleted and not deleted.startswith("0001-") else None
        return first, end or (now or datetime.now(UTC))


def read_release(core: Any, experiment: str, namespace: str = HELM_NAMESPACE) -> ReleaseInfo:
    name = spec.fullname(experiment)
    secrets = core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={name}").items
    if not secrets:
        raise NotFoundError(
            f"experiment {experiment!r}: no Helm release {name!r} in namespace {namespace!r}"
            " (give --start and --end to export a window without its release)"
        )
    revisions = sorted(
        (decode_release(s.data["release"]) for s in secrets), key=lambda r: int(r["version"])
    )
    return ReleaseInfo(name, revisions)


def nodes_info(core: Any) -> list[dict[str, Any]]:
    out = []
    for n in core.list_node().items:
        info = n.status.node_info
        out.append(
            {
                "name": n.metadata.name,
                "labels": dict(n.metadata.labels or {}),
                "capacity": dict(n.status.capacity or {}),
                "allocatable": dict(n.status.allocatable or {}),
                "kubelet_version": info.kubelet_version if info else None,
                "os_image": info.os_image if info else None,
                "kernel": info.kernel_version if info else None,
                "architecture": info.architecture if info else None,
                "container_runtime": info.container_runtime_version if info else None,
            }
        )
    return sorted(out, key=lambda n: n["name"])


NETWORK_APPLIED = "nuclab.io/network-applied"


def _json_annotation(pod: Any, key: str) -> Any:
    text = (pod.metadata.annotations or {}).get(key)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def pods_info(core: Any, experiment: str, namespace: str = HELM_NAMESPACE) -> list[dict[str, Any]]:
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"{EXPERIMENT_LABEL}={experiment}"
    ).items
    out = []
    for p in pods:
        statuses = {c.name: c for c in (p.status.container_statuses or [])}
        out.append(
            {
                "name": p.metadata.name,
                "node": p.spec.node_name,
                "phase": p.status.phase,
                # what the node agent read back from the peer's device (nuclab.netagent)
                "network_applied": _json_annotation(p, NETWORK_APPLIED),
                "containers": [
                    {
                        "name": c.name,
                        "image": c.image,
                        "image_id": getattr(statuses.get(c.name), "image_id", None) or None,
                        "resources": c.resources.to_dict() if c.resources else {},
                    }
                    for c in p.spec.containers
                ],
            }
        )
    return sorted(out, key=lambda p: p["name"])


def core_api(kubeconfig: str | None) -> Any:
    from kubernetes import client, config

    try:
        return client.CoreV1Api(config.new_client_from_config(kubeconfig))
    except Exception as exc:
        raise NuclabError(
            f"kubeconfig {kubeconfig or '(default)'}: cannot be loaded: {exc}"
        ) from exc
