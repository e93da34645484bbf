"""Experiments as they run: list rows, rollout state and the report of what is pending and why.

Every function here takes Kubernetes objects as plain dicts (what ``kubernetes.core.k8s_info``
returns, or the API's JSON), so the filter plugins and the CLI share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from nuclab import spec
from nuclab.spec import ZONE_LABEL

EXPERIMENT_LABEL = "nuclab.io/experiment"
COLUMNS = (
    "EXPERIMENT",
    "FULLNAME",
    "SCALE",
    "RUNNING",
    "STARTED AT",
    "AGE",
    "SIMULATED",
    "PROBLEMS",
)
# A node of the simulated lab where nothing runs (kwok): its pods are only reported Running.
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
OUTPUTS = ("table", "json", "yaml")


def parse_time(stamp: str) -> datetime:
    """An RFC 3339 timestamp of the API (``2025-09-20T11:19:09Z``) as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def format_age(seconds: float) -> str:
    """A duration as the reference lab printed it: ``24s``, ``38m24s``, ``2h3m0s``, ``3d4h``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def simulated_nodes(nodes: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the kwok nodes (nothing runs there) among ``nodes``."""
    return {
        (n.get("metadata") or {}).get("name", "")
        for n in nodes
        if ((n.get("metadata") or {}).get("annotations") or {}).get(KWOK_ANNOTATION) == "fake"
    }


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why a pod's containers are not running as they should (OOMKilled, CrashLoopBackOff...)."""
    reasons = []
    for container in (pod.get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        last = (container.get("lastState") or {}).get("terminated") or {}
        terminated = state.get("terminated") or {}
        waiting = state.get("waiting") or {}
        for reason in (terminated.get("reason"), last.get("reason"), waiting.get("reason")):
            if (
                reason
                and reason not in ("Completed", "ContainerCreating")
                and reason not in reasons
            ):
                reasons.append(reason)
        if container.get("restartCount"):
            reasons.append(f"{container['restartCount']} restarts")
    return ", ".join(reasons) or None


def peer_rows(
    pods: Iterable[Mapping[str, Any]], simulated: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each experiment's peers: node, whether it is simulated, phase, readiness, problem."""
    peers: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        name = (meta.get("labels") or {}).get(EXPERIMENT_LABEL)
        if not name:
            continue
        status = pod.get("status") or {}
        node = (pod.get("spec") or {}).get("nodeName")
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        peers.setdefault((meta.get("namespace", ""), name), []).append(  # type: ignore[arg-type]
            {
                "name": meta.get("name", ""),
                "node": node,
                "simulated": node in simulated if node else None,
                "phase": status.get("phase"),
                "ready": ready,
                "problem": pod_problem(pod),
            }
        )
    return peers  # type: ignore[return-value]


def experiment_rows(
    statefulsets: Iterable[Mapping[str, Any]],
    now: datetime | None = None,
    pods: Iterable[Mapping[str, Any]] = (),
    nodes: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One row per experiment StatefulSet, sorted by experiment name; with ``pods`` and
    ``nodes``, each row also lists its peers, how many are simulated (on kwok nodes: nothing
    runs there) and what is wrong with any (OOMKilled, CrashLoopBackOff, restarts)."""
    now = now or datetime.now(UTC)
    peers = peer_rows(pods, simulated_nodes(nodes))
    rows = []
    for sts in statefulsets:
        meta = sts.get("metadata", {})
        labels = meta.get("labels") or {}
        name = labels.get(EXPERIMENT_LABEL)
        if not name:
            continue
        started = meta.get("creationTimestamp")
        started_at = parse_time(started) if started else now
        rows.append(
            {
                "experiment": name,
                "fullname": meta.get("name", ""),
                "namespace": meta.get("namespace", ""),
                "scale": int((sts.get("spec") or {}).get("replicas") or 0),
                "running": int((sts.get("status") or {}).get("readyReplicas") or 0),
                "started_at": started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "age_seconds": int((now - started_at).total_seconds()),
            }
        )
        mine = sorted(
            peers.get((meta.get("namespace", ""), name), []), key=lambda p: _ordinal(p["name"])
        )
        rows[-1]["simulated"] = sum(1 for p in mine if p["simulated"])
        rows[-1]["problems"] = [f"{p['name']}: {p['problem']}" for p in mine if p["problem"]]
        rows[-1]["peers"] = mine
    return sorted(rows, key=lambda row: (row["experiment"], row["namespace"]))


def format_rows(rows: Sequence[Mapping[str, Any]], output: str = "table") -> str:
    """Rows as a table (the reference lab's columns), JSON or YAML."""
    if output == "json":
        return json.dumps(list(rows), indent=2)
    if output == "yaml":
        return yaml.safe_dump(list(rows), sort_keys=False) if rows else "[]\n"
    cells = [list(COLUMNS)] + [
        [
            str(row["experiment"]),
            str(row["fullname"]),
            str(row["scale"]),
            str(row["running"]),
            str(row["started_at"]),
            format_age(row["age_seconds"]),
            str(row.get("simulated", 0)),
            "; ".join("peer " + p.rsplit("-", 1)[-1] for p in row.get("problems") or []) or "-",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _is_running(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    return (pod.get("status") or {}).get("phase") == "Running" and not meta.get("deletionTimestamp")


def rollout_state(
    statefulset: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], peers: int
) -> dict[str, Any]:
    """Whether an experiment has exactly ``peers`` pods Running at the StatefulSet's revision."""
    running = [p for p in pods if _is_running(p)]
    done = len(pods) == peers and len(running) == peers
    if statefulset is not None:
        meta = statefulset.get("metadata") or {}
        status = statefulset.get("status") or {}
        revision = status.get("updateRevision")
        observed = status.get("observedGeneration", 0) >= meta.get("generation", 0)
        current = all(
            (p.get("metadata", {}).get("labels") or {}).get("controller-revision-hash") == revision
            for p in pods
        )
        done = done and observed and (current or peers == 0)
    elif peers:
        done = False
    return {"done": done, "peers": peers, "pods": len(pods), "running": len(running)}


def _scheduling_reason(pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> str:
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason", "")
            message = condition.get("message", "")
            return f"{reason}: {message}" if message else reason
    name = (pod.get("metadata") or {}).get("name")
    warnings = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == name and e.get("type") == "Warning"
    ]
    if warnings:
        last = warnings[-1]
        return f"{last.get('reason', '')}: {last.get('message', '')}"
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            return f"{waiting.get('reason', '')}: {waiting.get('message', '')}".rstrip(": ")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    return status.get("phase") or "not created yet"


def pending_report(
    name: str,
    peers: int,
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
    waited: float | None = None,
) -> str:
    """What keeps an experiment from running: pods not Running grouped by the scheduler's reason."""
    running = [p for p in pods if _is_running(p)]
    groups: dict[str, list[str]] = {}
    for pod in pods:
        if _is_running(pod):
            continue
        reason = _scheduling_reason(pod, events)
        groups.setdefault(reason, []).append((pod.get("metadata") or {}).get("name", "?"))
    after = f" after {int(waited)}s" if waited is not None else ""
    head = f"experiment '{name}': {len(running)} of {peers} peers running{after}"
    if len(pods) > peers:
        head += f", {len(pods) - peers} extra pod(s) still terminating"
    elif len(pods) < peers:
        head += f", {peers - len(pods)} pod(s) not created yet"
    parts = [head]
    for reason, names in sorted(groups.items(), key=lambda item: -len(item[1])):
        shown = ", ".join(sorted(names, key=_ordinal)[:5])
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        parts.append(f"{len(names)} pod(s) {reason} ({shown}{more})")
    return "; ".join(parts)


def _ordinal(pod_name: str) -> tuple[int, str]:
    head, _, tail = pod_name.rpartition("-")
    return (int(tail), head) if tail.isdigit() else (-1, pod_name)


def statefulset_rolled_out(statefulset: Mapping[str, Any] | None, peers: int) -> bool:
    """Whether a StatefulSet's controller has brought exactly ``peers`` ready, updated pods."""
    if not statefulset:
        return False
    meta = statefulset.get("metadata") or {}
    spec = statefulset.get("spec") or {}
    status = statefulset.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    if int(spec.get("replicas") or 0) != peers:
        return False
    counts = (
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        int(status.get("updatedReplicas") or 0),
    )
    return counts == (peers, peers, peers)


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merged left to right (later wins); nested mappings merge, anything else replaces."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
                result[key] = deep_merge(result[key], value)
            elif isinstance(value, Mapping):
                result[key] = deep_merge(value)
            else:
                result[key] = value
    return result


NETEM_LABEL = "nuclab.io/netem"


def network_refusal(
    full: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]
) -> tuple[str, object, str] | None:
    """Why a checked spec's network emulation cannot run on this lab, as (field, value,
    reason): a
    matrix that names a zone no node carries, or netem (per-peer latency, jitter, loss, or a
    matrix link's delay, jitter, loss) on nodes whose kernel has none. None when it can."""
    nodes = list(nodes)
    matrix = list(full.get("matrix") or [])
    zones = {((n.get("metadata") or {}).get("labels") or {}).get(ZONE_LABEL) for n in nodes}
    unknown = spec.unknown_zones(matrix, {z for z in zones if z})
    if unknown:
        have = ", ".join(sorted(z for z in zones if z)) or "none"
        return (
            "matrix",
            unknown,
            (
                f"zones of this lab's nodes (topology.kubernetes.io/zone): {have}; "
                f"no node is in {', '.join(unknown)}"
            ),
        )
    asked = {key: full.get(key) or 0 for key in ("latency", "jitter", "loss")}
    for index, entry in enumerate(matrix):
        for key in ("delay", "jitter", "loss"):
            asked[f"matrix[{index}].{key}"] = entry.get(key) or 0
    refusal = netem_refusal(
        asked,
        str(full.get("role", "")),
        list(full.get("zones") or []),
        dict(full.get("node_labels") or {}),
        nodes,
    )
    return ("latency/jitter/loss", str(full.get("name")), refusal) if refusal else None


def netem_refusal(
    netem: Mapping[str, float],
    role: str,
    zones: Sequence[str],
    node_labels: Mapping[str, str],
    nodes: Iterable[Mapping[str, Any]],
) -> str | None:
    """Why an experiment that asks for network emulation (``netem``: latency, jitter, loss
    above 0) must not start: the nodes its peers may land on whose kernel has no netem (label
    nuclab.io/netem=false, set by the simulated lab's real nodes). None when nothing is asked
    for or every such node can emulate; nodes that do not say are not judged."""
    asked = {key: value for key, value in netem.items() if value}
    if not asked:
        return None
    want = {"nuclab.io/role": role, **{f"nuclab.io/{k}": v for k, v in node_labels.items()}}
    lacking = []
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        if any(labels.get(key) != value for key, value in want.items()):
            continue
        if zones and labels.get(ZONE_LABEL) not in zones:
            continue
        if labels.get(NETEM_LABEL) == "false":
            lacking.append(meta.get("name", "?"))
    if not lacking:
        return None
    what = ", ".join(f"{key} {value:g}" for key, value in sorted(asked.items()))
    return (
        f"{what} needs netem (sch_netem), which the kernel of node(s) {', '.join(sorted(lacking))} "
        f"lacks; the peers may run there (role {role}"
        + (f", zones {', '.join(zones)}" if zones else "")
        + "): ask for no latency, jitter or loss, or place the peers elsewhere (--zone, --label)"
    )
