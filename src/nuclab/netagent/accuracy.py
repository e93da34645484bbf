"""How close a run's network emulation came, per directed zone pair: what the spec configured,
what the node agent read back from the peers' devices (their ``nuclab.io/network-applied``
annotations, recorded by the export), and, in the report, what the probe measured.

``links(manifest)`` is the dataset's table (the manifest's ``network``): one row per link the
spec configures, the per-peer defaults as ``* > *``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nuclab.report.compare import peer_zones
from nuclab.spec import directed_matrix

KEYS = ("delay_ms", "jitter_ms", "loss_percent", "rate_mbit")


def _configured(link: Mapping[str, Any]) -> dict[str, Any]:
    rate = link.get("rate")
    return {
        "delay_ms": float(link.get("delay") or 0),
        "jitter_ms": float(link.get("jitter") or 0),
        "loss_percent": float(link.get("loss") or 0),
        "rate_mbit": None if rate is None else float(rate),
    }


def links(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configured links and, for each, what the peers of its source zone carried."""
    network = (manifest.get("spec") or {}).get("network") or {}
    configured: dict[tuple[str, str], dict[str, Any]] = {}
    default = _configured(
        {"delay": network.get("latency"), "jitter": network.get("jitter"),
         "loss": network.get("loss")}
    )  # fmt: skip
    if any(default[k] for k in ("delay_ms", "jitter_ms", "loss_percent")):
        configured[("*", "*")] = default
    for pair, link in directed_matrix(list(network.get("matrix") or [])).items():
        configured[pair] = _configured(link)
    zones = peer_zones(manifest)  # the compare's placement of peers, by the manifest
    rows = []
    for (src, dst), want in sorted(configured.items()):
        applied: list[dict[str, Any]] = []
        peers = in_sync = 0
        for pod in manifest.get("pods") or []:
            if src != "*" and zones.get(pod["name"]) != src:
                continue
            record = pod.get("network_applied")
            if not isinstance(record, Mapping):  # not a peer, or no agent on its node
                continue
            peers += 1
            in_sync += bool(record.get("in_sync"))
            applied += [r for r in record.get("links") or [] if r.get("to") == dst]
        rows.append({
            "from": src, "to": dst, "configured": want,
            "applied": {key: sorted({r.get(key) for r in applied}, key=str) for key in KEYS},
            "peers": peers, "peers_in_sync": in_sync,
        })  # fmt: skip
    return rows


def matches(row: Mapping[str, Any]) -> bool:
    """Whether every peer of the row's source zone carried exactly the configured link."""
    want = row["configured"]
    return (
        row["peers"] > 0
        and row["peers_in_sync"] == row["peers"]
        and all(row["applied"][key] == [want[key]] for key in KEYS)
    )
