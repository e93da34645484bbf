"""Who to measure: explicit targets, or the experiment's peers found through DNS.

The experiment chart names peer pods ``nuclab-exp-<experiment>-<i>`` behind a headless Service,
so each peer resolves as ``<pod>.<service>``. When those per-pod names do not resolve (another
chart, a DaemonSet), the Service's A records are used and each target's name is learned from its
first echo answer. Shared by the probe and the gossip peer.
"""

from __future__ import annotations

import socket
import zlib
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


def spread_offsets(peers: int, max_targets: int) -> list[int]:
    """Ring offsets (1 .. peers-1) a peer measures: all of them when ``max_targets`` is 0 or
    covers them, else its ``ceil(max/2)`` next neighbours plus the rest strided evenly over
    the far side of the ring. Every peer uses the same offsets, so each is the target of exactly
    as many peers as it measures, every pair within the neighbour distance is measured, and the
    strides keep far pairs sampled too (a circulant graph of small diameter)."""
    others = peers - 1
    if others <= 0:
        return []
    if max_targets <= 0 or max_targets >= others:
        return list(range(1, peers))
    near = (max_targets + 1) // 2
    far = max_targets - near
    span = others - near  # offsets near+1 .. others; span > far, so the strides are distinct
    return list(range(1, near + 1)) + [
        near + 1 + ((2 * j + 1) * span) // (2 * far) for j in range(far)
    ]


def select_targets(self_index: int, peers: int, max_targets: int) -> list[int]:
    """The peer indices (0 .. peers-1) that peer ``self_index`` measures (see spread_offsets)."""
    return [(self_index + d) % peers for d in spread_offsets(peers, max_targets)]


def select_from_outside(name: str, size: int, max_targets: int) -> list[int]:
    """The same spread for a prober that is not one of the ``size`` peers (or does not know
    which): from a start its name fixes, it measures indices as if it stood just before it."""
    start = zlib.crc32(name.encode()) % size if size else 0
    return [(start + d - 1) % size for d in spread_offsets(size + 1, max_targets)]


def discover(
    *,
    experiment: str,
    service: str,
    peers: int,
    self_name: str,
    port: int,
    statefulset: str = "",
    max_targets: int = 0,
    resolve: Resolver = resolve_ipv4,
) -> list[Endpoint]:
    """The experiment's other peers: per-pod DNS names first, then the Service's A records.
    ``max_targets`` > 0 bounds them to a deterministic, well-spread subset (select_targets)."""
    found: list[Endpoint] = []
    if (experiment or statefulset) and peers > 0:
        pods = pod_names(experiment, peers, statefulset)
        if self_name in pods:
            picked = [
                pods[i] for i in sorted(select_targets(pods.index(self_name), peers, max_targets))
            ]
        else:
            picked = [pods[i] for i in sorted(select_from_outside(self_name, peers, max_targets))]
        for pod in picked:
            addrs = resolve(f"{pod}.{service}") if service else []
            if addrs:
                found.append(Endpoint(pod, addrs[0], port))
    if found or not service:
        return found
    ips = resolve(service)  # names unknown until they answer: spread over the sorted addresses
    return [
        Endpoint(None, ips[i], port)
        for i in sorted(select_from_outside(self_name, len(ips), max_targets))
    ]


def ring_neighbours(self_key: str, keys: Iterable[str], count: int) -> list[str]:
    """The ``count`` keys after ``self_key`` in sorted ring order: every peer picks its next ones,
    so the peers always form one connected ring (plus chords), whatever ``count`` is."""
    ordered = sorted(set(keys) | {self_key})
    start = ordered.index(self_key)
    ring = ordered[start + 1 :] + ordered[:start]
    return ring[: max(0, count)]
