"""The node agent's loop: the experiments' peers on this node, shaped as their experiment says.

Every ``interval`` seconds it lists the lab's nodes (their zones), the experiments' peer pods and
their network ConfigMaps (``<release>-network``, labelled ``nuclab.io/network``, written by the
experiment chart), plans each local peer's egress (``plan.plan``), reads back what the peer's
``eth0`` carries (``tc`` run in the peer's network namespace, found through the pod's cgroup in
``/proc``), applies the plan where the two differ, and publishes what it read back: the pod
annotation ``nuclab.io/network-applied`` and the metrics ``nuclab_netagent_*``. A new spec, a
scale or a deleted pod is one more round: no peer restarts.

Once per peer it also bounds the CNI bandwidth plugin's two buckets (``plan.bucket_fix``) on the
node's side of the peer's veth: the agent runs in the node's network namespace (hostNetwork).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from nuclab.netagent import plan as planning
from nuclab.spec import ZONE_LABEL

log = logging.getLogger("nuclab.netagent")

EXPERIMENT_LABEL = "nuclab.io/experiment"
PEER_SELECTOR = f"{EXPERIMENT_LABEL},app.kubernetes.io/component=peer"
NETWORK_SELECTOR = f"{EXPERIMENT_LABEL},nuclab.io/network"
NETWORK_KEY = "network.json"
ANNOTATION = "nuclab.io/network-applied"

_LABELS = ("namespace", "pod", "experiment", "to")
RATE = Gauge(
    "nuclab_netagent_link_rate_bits",
    "Rate applied to a peer's link (bit/s; absent = no limit)",
    _LABELS,
)
DELAY = Gauge("nuclab_netagent_link_delay_seconds", "Delay applied to a peer's link", _LABELS)
JITTER = Gauge("nuclab_netagent_link_jitter_seconds", "Jitter applied to a peer's link", _LABELS)
LOSS = Gauge("nuclab_netagent_link_loss_ratio", "Loss applied to a peer's link (0-1)", _LABELS)
IN_SYNC = Gauge(
    "nuclab_netagent_in_sync", "1 when a peer carries what its experiment asks",
    ("namespace", "pod", "experiment"),
)  # fmt: skip
APPLIES = Counter("nuclab_netagent_applies_total", "Plans applied to a peer's device")
ERRORS = Counter("nuclab_netagent_errors_total", "Plans tc refused, or peers not found")


@dataclass
class Settings:
    node: str
    interface: str = "eth0"
    interval: float = 2.0
    proc: Path = Path("/proc")
    tc: str = "tc"
    ip: str = "ip"
    nsenter: str = "nsenter"


@dataclass
class State:
    pids: dict[str, int] = field(default_factory=dict)  # pod UID -> a process in the pod
    bounded: dict[str, int] = field(default_factory=dict)  # pod UID -> its pid when bounded
    published: dict[str, str] = field(default_factory=dict)  # pod UID -> its annotation
    series: set[tuple[str, ...]] = field(default_factory=set)


class AgentError(Exception):
    pass


def holds_address(fib_trie: str, address: str) -> bool:
    """Whether a network namespace's ``/proc/<pid>/net/fib_trie`` has ``address`` as a local
    (``host LOCAL``) address."""
    lines = fib_trie.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != f"|-- {address}":
            continue
        for following in lines[index + 1 :]:
            if "--" in following:
                break
            if "host LOCAL" in following:
                return True
    return False


def pod_pid(proc: Path, uid: str, cached: int | None = None, address: str = "") -> int:
    """A process of the pod ``uid``, found by its cgroup (cgroupfs ``pod<uid>`` or systemd's
    ``pod<uid with _>``) and, given the pod's ``address``, in a network namespace that holds it
    (a pod's cgroup can hold a process outside the pod's namespace: a sandbox being replaced, an
    exec being set up); kept while it is both."""
    needles = (f"pod{uid}", f"pod{uid.replace('-', '_')}")

    def member(pid: str) -> bool:
        try:
            if not any(n in (proc / pid / "cgroup").read_text() for n in needles):
                return False
            return not address or holds_address((proc / pid / "net/fib_trie").read_text(), address)
        except OSError:
            return False

    if cached is not None and member(str(cached)):
        return cached
    for entry in sorted(proc.iterdir(), key=lambda p: p.name):
        if entry.name.isdigit() and member(entry.name):
            return int(entry.name)
    holding = f" holding {address}" if address else ""
    raise AgentError(f"no process of pod {uid}{holding} in {proc}")


def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AgentError(" ".join(proc.stderr.split()) or f"{' '.join(argv)}: {proc.returncode}")
    return proc.stdout


def _in_peer(settings: Settings, pid: int) -> list[str]:
    return [settings.nsenter, f"--target={pid}", "--net"]


def _tc(settings: Settings, pid: int, args: list[str], stdin: str | None = None) -> str:
    return _run([*_in_peer(settings, pid), settings.tc, *args], stdin)


def bound_buckets(settings: Settings, pid: int) -> list[str]:
    """Bound the bandwidth plugin's buckets of the peer whose process is ``pid``: the tbf on its
    veth's node end (what it receives) and on the ifb that veth's ingress redirects to (what it
    sends). Runs in the node's network namespace; returns the devices it changed."""
    peer_link = [*_in_peer(settings, pid), settings.ip, "-j", "link", "show", settings.interface]
    (eth,) = json.loads(_run(peer_link))
    if "link_index" not in eth:
        return []
    veth = next(
        (link["ifname"] for link in json.loads(_run([settings.ip, "-j", "link", "show"]))
         if link.get("ifindex") == eth["link_index"] and link.get("link_index") == eth["ifindex"]),
        None,
    )  # fmt: skip
    if veth is None:
        raise AgentError(f"the node's end of the peer's {settings.interface} is not on this node")
    filters = _run([settings.tc, "-j", "filter", "show", "dev", veth, "ingress"])
    changed = []
    for dev in (veth, *planning.redirected_to(filters)):
        fix = planning.bucket_fix(_run([settings.tc, "-j", "qdisc", "show", "dev", dev]), dev)
        if fix is not None:
            _run([settings.tc, *fix])
            changed.append(dev)
    return changed


def read_device(settings: Settings, pid: int) -> dict[str, Any]:
    dev = ["dev", settings.interface]
    return planning.read_back(
        _tc(settings, pid, ["-j", "qdisc", "show", *dev]),
        _tc(settings, pid, ["qdisc", "show", *dev]),
        _tc(settings, pid, ["class", "show", *dev]),
        _tc(settings, pid, ["-j", "filter", "show", *dev]),
    )


def apply(settings: Settings, pid: int, p: planning.Plan, back: Mapping[str, Any]) -> None:
    """Replace the device's root with ``p`` (or remove the agent's root for an empty plan); a
    plan tc refuses is removed again, so that no peer is left half shaped."""
    if back.get("root") is not None and back["root"] != "htb (not the agent's)":
        _tc(settings, pid, ["qdisc", "del", "dev", settings.interface, "root"])
    if p.empty:
        return
    try:
        _tc(settings, pid, ["-batch", "-"], planning.batch(p, settings.interface))
    except AgentError:
        with contextlib.suppress(AgentError):
            _tc(settings, pid, ["qdisc", "del", "dev", settings.interface, "root"])
        raise


def network_of(configmap: Any) -> dict[str, Any]:
    """The network settings a chart wrote, with every number finite and not negative (tenants
    write their ConfigMaps: nothing else reaches tc)."""
    raw = json.loads((configmap.get("data") or {}).get(NETWORK_KEY) or "{}")
    numbers = ("latency", "jitter", "loss")
    entries = raw.get("matrix") or []
    if not isinstance(entries, list):
        raise AgentError("matrix: not a list")
    checked: dict[str, Any] = {key: _number(key, raw.get(key)) for key in numbers}
    checked["matrix"] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise AgentError(f"matrix[{index}]: not a mapping")
        row: dict[str, Any] = {
            key: _number(f"matrix[{index}].{key}", entry.get(key))
            for key in ("delay", "jitter", "loss")
        }
        rate = entry.get("rate")
        row["rate"] = (
            None if rate is None else _number(f"matrix[{index}].rate", rate, positive=True)
        )
        row["from"], row["to"] = str(entry.get("from")), str(entry.get("to"))
        row["symmetric"] = entry.get("symmetric", True) is True
        checked["matrix"].append(row)
    return checked


def _number(name: str, value: object, positive: bool = False) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AgentError(f"{name}: {value!r} is not a number")
    if not math.isfinite(value) or value < 0 or (positive and value <= 0):
        raise AgentError(f"{name}: {value!r} is out of range")
    return float(value)


def _published(p: planning.Plan, back: Mapping[str, Any], error: str | None, sync: bool) -> str:
    return json.dumps(
        {"links": planning.annotation(p, back), "in_sync": sync, "error": error},
        sort_keys=True,
    )


def _items(call: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """A list call's items as plain JSON: the client's models cost more CPU than the agent's
    whole round on a lab with hundreds of peers."""
    return json.loads(call(_preload_content=False, **kwargs).data).get("items") or []


def round_once(settings: Settings, core: Any, state: State) -> int:
    """One pass over this node's peers; the number of peers that carry what they should."""
    nodes = _items(core.list_node)
    zones = {n["metadata"]["name"]: _labels(n).get(ZONE_LABEL, "") for n in nodes}
    pods = _items(core.list_pod_for_all_namespaces, label_selector=PEER_SELECTOR)
    maps = _items(core.list_config_map_for_all_namespaces, label_selector=NETWORK_SELECTOR)
    world = World(
        zones=zones,
        networks={(m["metadata"]["namespace"], _labels(m)[EXPERIMENT_LABEL]): m for m in maps},
    )
    for pod in pods:
        key = (pod["metadata"]["namespace"], _labels(pod)[EXPERIMENT_LABEL])
        zone = zones.get(pod["spec"].get("nodeName") or "", "")
        world.peers.setdefault(key, []).append((pod.get("status", {}).get("podIP") or "", zone))
    in_sync = 0
    local = set()
    for pod in pods:
        spec, status = pod["spec"], pod.get("status") or {}
        if spec.get("nodeName") != settings.node or spec.get("hostNetwork"):
            continue
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        local.add(pod["metadata"]["uid"])
        in_sync += shape(settings, core, state, world, pod)
    # A replaced peer has the name of the one before it, not its UID: it is annotated anew.
    state.pids = {uid: pid for uid, pid in state.pids.items() if uid in local}
    state.bounded = {uid: pid for uid, pid in state.bounded.items() if uid in local}
    state.published = {uid: text for uid, text in state.published.items() if uid in local}
    _forget(state, world.seen)
    return in_sync


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


@dataclass
class World:
    """What one round knows of the lab: nodes' zones, experiments' settings and peers."""

    zones: dict[str, str]
    networks: dict[tuple[str, str], Any]
    peers: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    seen: set[tuple[str, ...]] = field(default_factory=set)  # the series this round sets


def shape(settings: Settings, core: Any, state: State, world: World, pod: Any) -> bool:
    """Bring one local peer to its plan, and publish what it carries; True when in sync."""
    seen = world.seen
    meta = pod["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    experiment = _labels(pod)[EXPERIMENT_LABEL]
    address = pod["status"]["podIP"]
    error, back = None, {"root": None, "classes": {}, "filters": {}}
    p = planning.Plan(default=planning.Link())
    try:
        configmap = world.networks.get((namespace, experiment))
        network = network_of(configmap) if configmap is not None else {}
        peers = world.peers[(namespace, experiment)]
        p = planning.plan(world.zones.get(settings.node, ""), network, peers, address)
        pid = pod_pid(settings.proc, uid, state.pids.get(uid), address)
        state.pids[uid] = pid
        if state.bounded.get(uid) != pid:
            bounded = bound_buckets(settings, pid)
            if bounded:
                log.info("%s/%s: bounded the bandwidth plugin's bursts on %s", namespace, name,
                         ", ".join(bounded))  # fmt: skip
            state.bounded[uid] = pid
        back = read_device(settings, pid)
        if back != planning.expected(p):
            log.info("%s/%s: applying %s", namespace, name, planning.expected(p))
            APPLIES.inc()
            try:
                apply(settings, pid, p, back)
            finally:
                back = read_device(settings, pid)
    except (AgentError, ValueError) as exc:
        error = str(exc)
        ERRORS.inc()
        log.warning("%s/%s: %s", namespace, name, error)
    sync = error is None and back == planning.expected(p)
    IN_SYNC.labels(namespace, name, experiment).set(1 if sync else 0)
    seen.add(("sync", namespace, name, experiment))
    for row in planning.annotation(p, back):
        labels = (namespace, name, experiment, row["to"])
        if row["rate_mbit"] is not None:
            RATE.labels(*labels).set(row["rate_mbit"] * 1e6)
            seen.add(("rate", *labels))
        DELAY.labels(*labels).set(row["delay_ms"] / 1000)
        JITTER.labels(*labels).set(row["jitter_ms"] / 1000)
        LOSS.labels(*labels).set(row["loss_percent"] / 100)
        seen.add(("link", *labels))
    text = _published(p, back, error, sync)
    current = (meta.get("annotations") or {}).get(ANNOTATION)
    if current != text and state.published.get(uid) != text:
        patch = {"metadata": {"annotations": {ANNOTATION: text}}}
        core.patch_namespaced_pod(name, namespace, patch)
        state.published[uid] = text
    return sync


def _forget(state: State, seen: set[tuple[str, ...]]) -> None:
    """Drop the series of peers (and links) that are gone."""
    for key in state.series - seen:
        kind, *labels = key
        gauges: Iterable[Gauge] = {
            "sync": (IN_SYNC,),
            "rate": (RATE,),
            "link": (DELAY, JITTER, LOSS),
        }[kind]
        for gauge in gauges:
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
    state.series = seen


def run(settings: Settings, core: Any) -> int:
    state = State()
    log.info("node agent on %s, every %gs", settings.node, settings.interval)
    while True:
        started = time.monotonic()
        try:
            round_once(settings, core, state)
        except Exception as exc:
            ERRORS.inc()
            log.warning("round failed: %s", exc)
        time.sleep(max(0.0, settings.interval - (time.monotonic() - started)))


def node_name() -> str:
    return os.environ.get("NODE_NAME", "")
