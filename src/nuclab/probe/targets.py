"""Who to measure: explicit targets, or the experiment's peers found through DNS.

The experiment chart names peer pods ``nuclab-exp-<experiment>-<i>`` behind a headless Service,
so each peer resolves as ``<pod>.<service>``. When those per-pod names do not resolve (another
chart, a DaemonSet), the Service's A records are used and each target's name is learned from its
first echo answer. Shared by the probe and the gossip peer.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nuclab.errors import ValidationError

Resolver = Callable[[str], list[str]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A peer to reach: ``name`` is None until the peer tells it (Service A-record discovery)."""

    name: str | None
    host: str
    port: int

    @property
    def label(self) -> str:
        return self.name or self.host


def resolve_ipv4(host: str) -> list[str]:
    """The IPv4 addresses ``host`` resolves to (sorted, unique); empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def parse_port(field: str, text: str | int) -> int:
    try:
        port = int(text)
    except (TypeError, ValueError):
        port = -1
    if not 1 <= port <= 65535:
        raise ValidationError(field, text, "a TCP/UDP port from 1 to 65535")
    return port


def parse_target(text: str, default_port: int, field: str = "--target") -> Endpoint:
    """``NAME=HOST[:PORT]`` or ``HOST[:PORT]`` (the name is then learned from the echo answer)."""
    name, sep, rest = text.partition("=")
    if not sep:
        name, rest = "", text
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        host, port_text = rest, str(default_port)
    if not host or (sep and not name):
        raise ValidationError(field, text, "NAME=HOST[:PORT] or HOST[:PORT]")
    return Endpoint(name or None, host, parse_port(field, port_text))


def pod_names(experiment: str, peers: int, statefulset: str = "") -> list[str]:
    """The pod names the experiment chart gives an experiment's ``peers`` peers: its
    StatefulSet's (NUCLAB_STATEFULSET), ``nuclab-exp-<experiment>`` by default."""
    prefix = statefulset or f"nuclab-exp-{experiment}"
    return [f"{prefix}-{i}" for i in range(peers)]


def discover(
    *,
    experiment: str,
    service: str,
    peers: int,
    self_name: str,
    port: int,
    statefulset: str = "",
    resolve: Resolver = resolve_ipv4,
) -> list[Endpoint]:
    """The experiment's other peers: per-pod DNS names first, then the Service's A records."""
    found: list[Endpoint] = []
    if (experiment or statefulset) and peers > 0:
        for pod in pod_names(experiment, peers, statefulset):
            if pod == self_name:
                continue
            addrs = resolve(f"{pod}.{service}") if service else []
            if addrs:
                found.append(Endpoint(pod, addrs[0], port))
    if found or not service:
        return found
    return [Endpoint(None, ip, port) for ip in resolve(service)]


def ring_neighbours(self_key: str, keys: Iterable[str], count: int) -> list[str]:
    """The ``count`` keys after ``self_key`` in sorted ring order: every peer picks its next ones,
    so the peers always form one connected ring (plus chords), whatever ``count`` is."""
    ordered = sorted(set(keys) | {self_key})
    start = ordered.index(self_key)
    ring = ordered[start + 1 :] + ordered[:start]
    return ring[: max(0, count)]
