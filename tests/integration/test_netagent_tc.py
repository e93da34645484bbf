"""The node agent's tc work on real devices: network namespaces joined by a bridge, the agent's own
apply and read-back (``nuclab.netagent.agent``) run through nsenter as on a node, and the rates
measured by a TCP transfer, not by asking the code under test.

The CNI bandwidth plugin's layout (a tbf on the veth's node end, the veth's ingress redirected to
an ifb with a tbf, both with the burst containerd asks for) is rebuilt here too, to show what the
agent's ``bound_buckets`` changes in the rate a peer really gets.

This kernel has no netem: a plan with delay, jitter or loss is then refused whole (and the
device left as it was), which the netem test checks; on a kernel with netem it checks the read
back of the netem child instead (the simulated lab's real nodes share this kernel).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from nuclab.netagent import agent
from nuclab.netagent import plan as planning
from tests.integration import test_netns

NetLab = test_netns.NetLab
lab = test_netns.lab  # the fixture: namespaces removed after each test

SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(); print("ready", flush=True)
skip = float(sys.argv[2])  # seconds not counted (the queue filling)
c, _ = s.accept(); got = 0; t0 = None
while True:
    data = c.recv(65536)
    if not data: break
    now = time.monotonic()
    if t0 is None: t0 = now
    if now - t0 >= skip:
        got += len(data); last = now
print(got * 8 / (last - t0 - skip) / 1e6, flush=True)
"""
SOURCE = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2]))); end = time.monotonic() + 4
chunk = b"x" * 65536
while time.monotonic() < end: c.sendall(chunk)
c.close()
"""
ZONES = {"a": "zone-a", "b": "zone-b", "c": "zone-a"}
ADDRESSES = {"a": "10.231.9.1", "b": "10.231.9.2", "c": "10.231.9.3"}


def _mbit(
    lab: NetLab, src: str, dst: str, port: int, *, address: str = "", skip: float = 1.0
) -> float:
    """Goodput of a 4 s TCP transfer from namespace src to namespace dst (at ``address``, by
    default the bridged peer's), not counting its first ``skip`` seconds."""
    sink = subprocess.Popen(
        ["ip", "netns", "exec", dst, sys.executable, "-c", SINK, str(port), str(skip)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab.procs.append(sink)
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    target = address or ADDRESSES[dst[-1]]
    subprocess.run(
        ["ip", "netns", "exec", src, sys.executable, "-c", SOURCE, target, str(port)],
        check=True, timeout=30,
    )  # fmt: skip
    return float(sink.stdout.readline())


@pytest.fixture
def bridged(lab: NetLab) -> tuple[NetLab, agent.Settings, int]:
    """Three peers on a bridge; the agent's settings and a process in a's namespace."""
    _, names = lab.switch(ADDRESSES)
    for short, ns in names.items():
        assert ns.endswith(short)
    holder = lab.start(names["a"], "sleep", "600")
    dev = subprocess.run(
        ["ip", "-n", names["a"], "-o", "link", "show", "type", "veth"],
        capture_output=True, text=True, check=True,
    ).stdout.split(":")[1].strip().split("@")[0]  # fmt: skip
    return lab, agent.Settings(node="n", interface=dev), holder.pid


def _plan(matrix: list[dict]) -> planning.Plan:
    peers = [(ADDRESSES[s], ZONES[s]) for s in ("b", "c")]
    return planning.plan("zone-a", {"matrix": matrix}, peers, ADDRESSES["a"])


def _converge(settings: agent.Settings, pid: int, p: planning.Plan) -> dict:
    back = agent.read_device(settings, pid)
    if back != planning.expected(p):
        agent.apply(settings, pid, p, back)
    return agent.read_device(settings, pid)


def test_each_destination_zone_gets_its_rate_and_the_read_back_says_so(bridged) -> None:  # type: ignore[no-untyped-def]
    lab, settings, pid = bridged
    a, b, c = (f"{lab.prefix}{s}" for s in "abc")
    assert agent.read_device(settings, pid)["root"] is None  # a veth starts with noqueue

    p = _plan([{"from": "zone-a", "to": "zone-b", "rate": 4}])
    back = _converge(settings, pid, p)
    assert back == planning.expected(p)
    assert back["filters"] == {ADDRESSES["b"]: "1:10"}
    assert planning.annotation(p, back) == [
        {"to": "zone-b", "rate_mbit": 4.0, "delay_ms": 0.0, "jitter_ms": 0.0,
         "loss_percent": 0.0, "peers": 1},
    ]  # fmt: skip
    to_b, to_c = _mbit(lab, a, b, 5001), _mbit(lab, a, c, 5002)
    # Goodput is the shaped rate less TCP/IP/Ethernet headers (about 4.4 % at MTU 1500).
    assert 0.8 * 4 <= to_b <= 4.2, to_b
    assert to_c > 40, f"zone-a to zone-a is not in the matrix: unshaped, got {to_c:.1f} Mbit/s"

    # A new spec is one more pass: the device is rebuilt, nothing else restarts.
    p = _plan([{"from": "zone-a", "to": "zone-b", "rate": 12}])
    assert _converge(settings, pid, p) == planning.expected(p)
    assert 0.8 * 12 <= _mbit(lab, a, b, 5003) <= 12.5
    assert _converge(settings, pid, p) == planning.expected(p)  # in sync: nothing applied

    # The matrix removed: the agent's root goes, and the link is unshaped again.
    p = _plan([])
    assert _converge(settings, pid, p) == {"root": None, "classes": {}, "filters": {}}
    assert _mbit(lab, a, b, 5004) > 40


def _has_netem() -> bool:
    """Whether this kernel has netem, asked of a namespace of its own."""
    name = f"nlnetem{time.monotonic_ns() % 100000}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
             "delay", "1ms"], capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_link_with_delay_and_loss_is_applied_whole_or_not_at_all(bridged) -> None:  # type: ignore[no-untyped-def]
    _, settings, pid = bridged
    p = _plan([{"from": "zone-a", "to": "zone-b", "rate": 8, "delay": 20, "jitter": 2, "loss": 1}])
    if _has_netem():
        assert _converge(settings, pid, p) == planning.expected(p)
        return
    with pytest.raises(agent.AgentError, match="Specified qdisc kind is unknown"):
        _converge(settings, pid, p)
    assert agent.read_device(settings, pid) == {"root": None, "classes": {}, "filters": {}}


# containerd asks the bandwidth plugin for a burst of 2^32 bits: this many bytes (tc rounds it).
PLUGIN_BURST = 261993004


def _tc_in(ns: str, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "tc", *args], check=True)


def test_the_bandwidth_plugins_buckets_hold_their_rate_from_the_first_byte_once_bounded(
    lab: NetLab,
) -> None:
    node, peer = lab.ns("node"), lab.ns("peer")
    eth, veth = lab.link(peer, "10.231.8.2/24", node, "10.231.8.1/24")
    ifb = f"{lab.prefix}ifb"
    subprocess.run(["ip", "-n", node, "link", "add", ifb, "type", "ifb"], check=True)
    subprocess.run(["ip", "-n", node, "link", "set", ifb, "up"], check=True)
    for dev in (veth, ifb):  # as the plugin makes them, at 8 Mbit/s
        _tc_in(node, "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate", "8mbit",
               "burst", str(PLUGIN_BURST), "latency", "275s")  # fmt: skip
    _tc_in(node, "qdisc", "add", "dev", veth, "ingress")
    _tc_in(node, "filter", "add", "dev", veth, "parent", "ffff:", "protocol", "all", "u32", "match",
           "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb)  # fmt: skip
    holder = lab.start(peer, "sleep", "600")

    sent = _mbit(lab, peer, node, 5011, address="10.231.8.1", skip=0)
    assert sent > 40, f"the plugin's burst lets the first seconds through unshaped: {sent:.1f}"

    def bound() -> list[str]:  # the agent's call, run in the node's namespace as on a node
        code = (
            "import json, sys; from nuclab.netagent import agent; "
            "print(json.dumps(agent.bound_buckets(agent.Settings(node='n', interface=sys.argv[1]),"
            " int(sys.argv[2]))))"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", node, sys.executable, "-c", code, eth, str(holder.pid)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(done.stdout)

    assert bound() == [veth, ifb]
    sent = _mbit(lab, peer, node, 5012, address="10.231.8.1", skip=0)
    received = _mbit(lab, node, peer, 5013, address="10.231.8.2", skip=0)
    print(f"8 Mbit/s from the first byte: {sent:.2f} sent, {received:.2f} received")
    assert 0.8 * 8 <= sent <= 8 * 1.05, sent
    assert 0.8 * 8 <= received <= 8 * 1.05, received
    assert bound() == []  # bounded already: a second round changes nothing
