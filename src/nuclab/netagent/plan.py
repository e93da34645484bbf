"""What the node agent applies to one peer, as tc sees it: pure, so that it is tested alone.

A peer's egress (``eth0`` in its network namespace) gets an HTB root. Traffic to the peers of a
zone the experiment's matrix names gets a class of its own (the link's rate, or no limit) with a
netem child for the link's delay, jitter and loss; everything else goes to the default class,
with the experiment's per-peer latency, jitter and loss, or unshaped (``default 0``: HTB sends
unclassified packets at once) when there are none. Filters are u32 matches on the destination
peers' addresses, so the rules follow the peers as they come and go.

Every direction of a link is shaped at its sender: a symmetric entry is two directed links, each
applied on its own side. ``expected`` is what ``tc`` shows for a plan, ``read_back`` what it
shows for a device: the agent applies a plan when the two differ, and publishes ``read_back``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nuclab.spec import directed_matrix

# HTB needs a rate on every class: "no limit" is this one (above any link a lab has).
UNLIMITED_KBIT = 10_000_000
DEFAULT_CLASS = "1:1"
FIRST_ZONE_CLASS = 0x10
# A full-size frame: the quantum of every class, so that low rates do not warn about it.
QUANTUM = 1514
# The CNI bandwidth plugin's buckets (a tbf on the veth's node end for what a peer receives, and
# on the ifb its ingress redirects to for what it sends) get the burst containerd asks for: 2^32
# bits, whatever the rate (kubernetes/kubernetes#90838, containerd/containerd#10546). A peer at
# 16 Mbit/s then sends its first 256 MB at the wire's speed. The agent bounds each bucket to
# this many seconds of its rate, and at least a few full frames (tbf needs one).
BUCKET_BURST_SECONDS = 0.01
BUCKET_MIN_BURST = 4 * QUANTUM
BUCKET_LATENCY = "25ms"


@dataclass(frozen=True)
class Link:
    """One direction's shaping, in the spec's units (rate None = no limit)."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    rate: float | None = None

    @property
    def netem(self) -> bool:
        return bool(self.delay or self.jitter or self.loss)

    @property
    def empty(self) -> bool:
        return not self.netem and self.rate is None


@dataclass(frozen=True)
class ZoneClass:
    classid: str
    zone: str
    link: Link
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The classes of one peer's egress; ``default`` is the per-peer link (maybe empty)."""

    default: Link
    classes: tuple[ZoneClass, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return self.default.empty and not self.classes


def _link(values: Mapping[str, Any]) -> Link:
    rate = values.get("rate")
    return Link(
        delay=float(values.get("delay") or 0),
        jitter=float(values.get("jitter") or 0),
        loss=float(values.get("loss") or 0),
        rate=None if rate is None else float(rate),
    )


def plan(
    zone: str, network: Mapping[str, Any], peers: Iterable[tuple[str, str]], own_ip: str = ""
) -> Plan:
    """The plan of a peer in ``zone``: ``network`` is the experiment's network settings (the
    chart's ``network`` values: latency, jitter, loss and matrix), ``peers`` the experiment's
    other peers as (address, zone)."""
    default = Link(
        delay=float(network.get("latency") or 0),
        jitter=float(network.get("jitter") or 0),
        loss=float(network.get("loss") or 0),
    )
    links = directed_matrix(list(network.get("matrix") or []))
    by_zone: dict[str, list[str]] = {}
    for address, peer_zone in peers:
        if address and address != own_ip:
            by_zone.setdefault(peer_zone, []).append(address)
    classes = []
    for index, to_zone in enumerate(sorted(to for (src, to) in links if src == zone)):
        link = _link(links[(zone, to_zone)])
        if link.empty:
            continue
        classes.append(
            ZoneClass(
                classid=f"1:{FIRST_ZONE_CLASS + index:x}",
                zone=to_zone,
                link=link,
                destinations=tuple(sorted(by_zone.get(to_zone, []), key=ipaddress.ip_address)),
            )
        )
    return Plan(default=default, classes=tuple(classes))


def _kbit(rate: float | None) -> int:
    return UNLIMITED_KBIT if rate is None else max(1, round(rate * 1000))


def _netem_args(link: Link) -> str:
    args = ""
    if link.delay or link.jitter:
        args += f" delay {link.delay:g}ms"
        if link.jitter:
            args += f" {link.jitter:g}ms"
    if link.loss:
        args += f" loss {link.loss:g}%"
    return args


def _leaf(classid: str) -> str:
    return classid.split(":")[1] + ":"


def batch(p: Plan, dev: str) -> str:
    """The ``tc -batch`` lines that build ``p`` on ``dev`` (after its root qdisc is removed)."""
    if p.empty:
        return ""
    default = "0" if p.default.empty else DEFAULT_CLASS.split(":")[1]
    lines = [f"qdisc add dev {dev} root handle 1: htb default {default}"]
    rows = [(DEFAULT_CLASS, p.default)] if not p.default.empty else []
    rows += [(c.classid, c.link) for c in p.classes]
    for classid, link in rows:
        kbit = _kbit(link.rate)
        lines.append(
            f"class add dev {dev} parent 1: classid {classid} htb rate {kbit}kbit "
            f"ceil {kbit}kbit quantum {QUANTUM}"
        )
        if link.netem:
            lines.append(f"qdisc add dev {dev} parent {classid} handle {_leaf(classid)} netem"
                         + _netem_args(link))  # fmt: skip
    for c in p.classes:
        for address in c.destinations:
            lines.append(
                f"filter add dev {dev} parent 1: protocol ip prio 1 u32 "
                f"match ip dst {address}/32 flowid {c.classid}"
            )
    return "\n".join(lines) + "\n"


def expected(p: Plan) -> dict[str, Any]:
    """What ``read_back`` gives for a device that carries ``p``."""
    if p.empty:
        return {"root": None, "classes": {}, "filters": {}}
    rows = [(DEFAULT_CLASS, p.default)] if not p.default.empty else []
    rows += [(c.classid, c.link) for c in p.classes]
    return {
        "root": "htb",
        "classes": {
            classid: {
                "rate_kbit": _kbit(link.rate),
                "delay_ms": link.delay,
                "jitter_ms": link.jitter,
                "loss_percent": link.loss,
            }
            for classid, link in rows
        },
        "filters": {a: c.classid for c in p.classes for a in c.destinations},
    }


_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
_TIME_UNITS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "usec": 1e-3, "msec": 1.0, "sec": 1000.0}
_CLASS_RE = re.compile(r"^class htb (\S+) .*?\brate (\S+)")
_NETEM_RE = re.compile(
    r"^qdisc netem \S+ parent (\S+)(?:.*?\bdelay (\S+)(?: +(\d\S*s))?)?(?:.*?\bloss (\S+)%)?"
)


def _rate_kbit(text: str) -> int:
    match = re.fullmatch(r"([\d.]+)([A-Za-z]+)", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"a rate tc printed: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2).lower()] / 1000)


def _ms(text: str | None) -> float:
    if not text:
        return 0.0
    match = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if not match or match.group(2) not in _TIME_UNITS:
        raise ValueError(f"a time tc printed: {text!r}")
    return round(float(match.group(1)) * _TIME_UNITS[match.group(2)], 6)


def _root_qdisc(qdiscs_json: str) -> dict[str, Any] | None:
    """The root qdisc in ``tc -j qdisc show``'s output, if any."""
    return next((q for q in json.loads(qdiscs_json or "[]") if q.get("root")), None)


def read_back(qdiscs_json: str, qdiscs_text: str, classes_text: str, filters_json: str) -> dict:
    """What a device carries, from ``tc -j qdisc show``, ``tc qdisc show``, ``tc class show``
    and ``tc -j filter show`` (iproute2 prints HTB classes and netem options as text only)."""
    root = _root_qdisc(qdiscs_json)
    kind = root.get("kind") if root else None
    if kind == "htb" and root.get("handle") != "1:":
        kind = "htb (not the agent's)"
    result: dict[str, Any] = {
        "root": None if kind in (None, "noqueue") else kind, "classes": {}, "filters": {}
    }  # fmt: skip
    if result["root"] != "htb":
        return result
    for line in classes_text.splitlines():
        match = _CLASS_RE.match(line.strip())
        if match:
            result["classes"][match.group(1)] = {
                "rate_kbit": _rate_kbit(match.group(2)),
                "delay_ms": 0.0, "jitter_ms": 0.0, "loss_percent": 0.0,
            }  # fmt: skip
    for line in qdiscs_text.splitlines():
        match = _NETEM_RE.match(line.strip())
        if match and match.group(1) in result["classes"]:
            result["classes"][match.group(1)].update(
                delay_ms=_ms(match.group(2)),
                jitter_ms=_ms(match.group(3)),
                loss_percent=float(match.group(4) or 0),
            )
    for entry in json.loads(filters_json or "[]"):
        options = entry.get("options") or {}
        match = options.get("match") or {}
        if "flowid" in options and match.get("off") == 16 and match.get("mask") == "ffffffff":
            address = str(ipaddress.IPv4Address(int(match["value"], 16)))
            result["filters"][address] = options["flowid"]
    return result


def bucket_fix(qdiscs_json: str, dev: str) -> list[str] | None:
    """The ``tc`` arguments that bound ``dev``'s root tbf (from ``tc -j qdisc show``) to
    ``BUCKET_BURST_SECONDS`` of its own rate; None when it has no tbf or one bounded already."""
    root = _root_qdisc(qdiscs_json)
    if root is None or root.get("kind") != "tbf":
        return None
    options = root.get("options") or {}
    rate = int(options.get("rate") or 0)  # bytes/s
    burst = max(round(rate * BUCKET_BURST_SECONDS), BUCKET_MIN_BURST)
    if rate <= 0 or int(options.get("burst") or 0) <= burst:
        return None
    return [
        "qdisc", "change", "dev", dev, "root", "handle", root.get("handle") or "1:", "tbf",
        "rate", f"{rate * 8}bit", "burst", str(burst), "latency", BUCKET_LATENCY,
    ]  # fmt: skip


def redirected_to(filters_json: str) -> list[str]:
    """The devices a device's filters redirect to (``tc -j filter show ... ingress``): the
    bandwidth plugin's ifb, which carries what the peer sends."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("kind") == "mirred" and node.get("to_dev"):
                found.append(str(node["to_dev"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(filters_json or "[]"))
    return sorted(set(found))


def annotation(p: Plan, back: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The read-back state by zone (the pod annotation and the metrics): one row per class."""
    zones = {c.classid: c.zone for c in p.classes}
    rows = []
    for classid, values in sorted(back.get("classes", {}).items()):
        rate = values["rate_kbit"]
        rows.append({
            "to": zones.get(classid, "*" if classid == DEFAULT_CLASS else classid),
            "rate_mbit": None if rate >= UNLIMITED_KBIT else rate / 1000,
            "delay_ms": values["delay_ms"],
            "jitter_ms": values["jitter_ms"],
            "loss_percent": values["loss_percent"],
            "peers": sum(1 for c in back.get("filters", {}).values() if c == classid),
        })  # fmt: skip
    return rows
