"""The node agent's work for one peer of a large experiment, on a real device: the agent's way (one
``tc -batch`` of the whole plan, then its read-back) against the obvious alternative (one ``tc``
command per qdisc, class and filter), for a peer with --peers destinations in 3 zones, and the
agent's follow of a scale (a plan with twice the destinations over the running one). Then the
agent's once-per-peer bound of the CNI bandwidth plugin's two buckets (``agent.bound_buckets``,
run in a node namespace as the agent runs in the node's): the plugin's layout (a veth whose node
end has a tbf with containerd's 2^32-bit burst, its ingress redirected to an ifb with the same)
built anew for each run.

The device is a veth in a network namespace of this bench's own (root; iproute2), with rates
only: this kernel has no netem. Each run applies to a fresh device, interleaved, and the medians
and their ratio are printed; plan and read-back are timed apart from tc.

    .venv/bin/python bench/netagent_apply.py [--peers 100 --peers 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import time

from nuclab.netagent import agent
from nuclab.netagent import plan as planning

NS = f"nlbench{os.getpid() % 100000}"
ZONES = ("zone-a", "zone-b", "zone-c")
MATRIX = [
    {"from": "zone-a", "to": "zone-b", "rate": 8},
    {"from": "zone-a", "to": "zone-c", "rate": 4},
    {"from": "zone-b", "to": "zone-c", "rate": 2},
]


def _run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def _peers(count: int) -> list[tuple[str, str]]:
    base = int(ipaddress.IPv4Address("10.232.0.10"))
    return [(str(ipaddress.IPv4Address(base + i)), ZONES[i % 3]) for i in range(count)]


def _fresh_device() -> None:
    subprocess.run(["ip", "-n", NS, "link", "del", "bv0"], capture_output=True, check=False)
    _run("ip", "-n", NS, "link", "add", "bv0", "type", "veth", "peer", "name", "bv1")
    _run("ip", "-n", NS, "link", "set", "bv0", "up")


def _one_by_one(p: planning.Plan) -> float:
    """The obvious alternative: every line of the plan as its own tc command."""
    started = time.perf_counter()
    for line in planning.batch(p, "bv0").splitlines():
        _run("ip", "netns", "exec", NS, "tc", *line.split())
    return time.perf_counter() - started


def _agent(settings: agent.Settings, pid: int, p: planning.Plan) -> float:
    started = time.perf_counter()
    back = agent.read_device(settings, pid)
    agent.apply(settings, pid, p, back)
    assert agent.read_device(settings, pid) == planning.expected(p)
    return time.perf_counter() - started


def _plugin_layout(peer: str) -> None:
    """A peer's link as the bandwidth plugin leaves it, at 16 Mbit/s, with the node's end in this
    process's namespace and eth0 in ``peer``."""
    for dev in ("bp0", "bpifb"):
        subprocess.run(["ip", "link", "del", dev], capture_output=True, check=False)
    _run("ip", "link", "add", "bp0", "type", "veth", "peer", "name", "eth0", "netns", peer)
    _run("ip", "link", "add", "bpifb", "type", "ifb")
    for dev in ("bp0", "bpifb"):
        _run("ip", "link", "set", dev, "up")
        _run("tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf", "rate", "16mbit",
             "burst", "261993004", "latency", "275s")  # fmt: skip
    _run("ip", "-n", peer, "link", "set", "eth0", "up")
    _run("tc", "qdisc", "add", "dev", "bp0", "ingress")
    _run("tc", "filter", "add", "dev", "bp0", "parent", "ffff:", "protocol", "all", "u32", "match",
         "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "bpifb")  # fmt: skip


def _bound(runs: int) -> None:
    """Run in the benchmark's namespace (the node's, for bound_buckets): its median time."""
    peer = f"{NS}p"
    _run("ip", "netns", "add", peer)
    holder = subprocess.Popen(["ip", "netns", "exec", peer, "sleep", "3600"], text=True)
    settings = agent.Settings(node="bench", interface="eth0")
    times = []
    try:
        for _ in range(runs):
            _plugin_layout(peer)
            started = time.perf_counter()
            assert agent.bound_buckets(settings, holder.pid) == ["bp0", "bpifb"]
            times.append(time.perf_counter() - started)
        t0 = time.perf_counter()
        assert agent.bound_buckets(settings, holder.pid) == []
        again = time.perf_counter() - t0
    finally:
        holder.kill()
        subprocess.run(["ip", "netns", "del", peer], check=False)
    print(f"bound the plugin's two buckets of one peer: {statistics.median(times) * 1000:.1f} ms "
          f"(median of {runs}); the same call once bounded: {again * 1000:.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers", type=int, action="append")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bound-here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bound_here:
        _bound(args.runs)
        return
    sizes = args.peers or [100, 200]
    _run("ip", "netns", "add", NS)
    holder = subprocess.Popen(["ip", "netns", "exec", NS, "sleep", "3600"], text=True)
    settings = agent.Settings(node="bench", interface="bv0")
    try:
        print(f"{'destinations':>12} {'agent batch s':>14} {'one by one s':>13} {'ratio':>6} "
              f"{'plan ms':>8} {'follow x2 s':>12}")  # fmt: skip
        for size in sizes:
            ours, theirs, plans, follows = [], [], [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                p = planning.plan("zone-a", {"matrix": MATRIX}, _peers(size))
                plans.append(time.perf_counter() - t0)
                _fresh_device()
                ours.append(_agent(settings, holder.pid, p))
                bigger = planning.plan("zone-a", {"matrix": MATRIX}, _peers(2 * size))
                follows.append(_agent(settings, holder.pid, bigger))
                _fresh_device()
                theirs.append(_one_by_one(p))
            a, b = statistics.median(ours), statistics.median(theirs)
            plan_ms, follow = statistics.median(plans) * 1000, statistics.median(follows)
            print(f"{size:>12} {a:>14.3f} {b:>13.3f} {b / a:>6.1f} {plan_ms:>8.2f} {follow:>12.3f}")
        me = [sys.executable, __file__, "--bound-here", "--runs", str(args.runs)]
        subprocess.run(["ip", "netns", "exec", NS, *me], check=True)
    finally:
        holder.kill()
        subprocess.run(["ip", "netns", "del", NS], check=False)


if __name__ == "__main__":
    main()
