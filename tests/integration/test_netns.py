"""Probe and peer as real processes in network namespaces joined by veth (needs root + iproute2).

Ground truth comes from the kernel and from our delaying proxy, never from the code under test:
latency from ``test_netns_delayproxy.py`` (this kernel has no netem), loss from iptables'
``statistic`` match, bandwidth from a tbf qdisc. Every namespace is removed after each test,
also when it fails. Addresses are 10.231.x.y inside the test's own namespaces only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.scrape import get_in_netns, samples

DELAYPROXY = Path(__file__).with_name("test_netns_delayproxy.py")
NUCLAB = [sys.executable, "-m", "nuclab.cli"]


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"
    return done.stdout


class NetLab:
    """Namespaces, veth links and processes of one test; ``close`` removes all of them."""

    def __init__(self) -> None:
        self.prefix = f"nlt{os.getpid() % 100000}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []
        self._links = 0

    def ns(self, short: str) -> str:
        name = f"{self.prefix}{short}"
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, a_cidr: str, b: str, b_cidr: str | None) -> tuple[str, str]:
        """A veth pair between namespaces a and b; ``b_cidr`` None leaves b's end unaddressed."""
        self._links += 1
        ea, eb = f"{self.prefix}a{self._links}", f"{self.prefix}b{self._links}"
        _run("ip", "link", "add", ea, "netns", a, "type", "veth", "peer", "name", eb, "netns", b)
        _run("ip", "-n", a, "addr", "add", a_cidr, "dev", ea)
        if b_cidr:
            _run("ip", "-n", b, "addr", "add", b_cidr, "dev", eb)
        _run("ip", "-n", a, "link", "set", ea, "up")
        _run("ip", "-n", b, "link", "set", eb, "up")
        return ea, eb

    def switch(self, hosts: dict[str, str]) -> tuple[str, dict[str, str]]:
        """A bridge namespace with each host namespace attached: {short name: ip} -> namespaces."""
        sw = self.ns("sw")
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        names = {}
        for short, ip in hosts.items():
            ns = self.ns(short)
            _, port = self.link(ns, f"{ip}/24", sw, None)
            _run("ip", "-n", sw, "link", "set", port, "master", "br0")
            names[short] = ns
        return sw, names

    def start(self, ns: str, *argv: str, log: Path | None = None) -> subprocess.Popen[str]:
        out = log.open("w") if log else subprocess.DEVNULL
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT, text=True,
            env=env,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def wait_bound(self, ns: str, port: int, proto: str = "udp", wait: float = 20) -> None:
        """Until a socket in ``ns`` is bound to ``port``: a probe sent before the answering side
        has bound its port is refused and rightly counted as lost."""
        deadline = time.monotonic() + wait
        argv = ["ip", "netns", "exec", ns, "ss", "-Hn", f"-{proto[0]}l", f"sport = :{port}"]
        while not subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip():
            assert time.monotonic() < deadline, f"nothing bound {proto} port {port} in {ns}"
            time.sleep(0.1)

    def start_proxy(self, ns: str, listen: str, upstream: str, delay: float, mode: str) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(DELAYPROXY), "--listen", listen,
             "--upstream", upstream, "--delay", str(delay), f"--{mode}"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the delaying proxy did not start"

    def scrape(self, ns: str, url: str, wait: float = 10) -> dict[tuple[str, tuple], float]:
        """Samples of a /metrics endpoint inside a namespace: (name, sorted labels) -> value.
        Retries for ``wait`` seconds while the process starts."""
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for s in samples(get_in_netns(ns, url, wait))
        }

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True, check=False)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def lab() -> Iterator[NetLab]:
    missing = [tool for tool in ("ip", "tc", "iptables") if shutil.which(tool) is None]
    assert not missing, f"needs {missing} (iproute2, iptables: run make setup)"
    assert os.geteuid() == 0, "network namespace tests need root"
    netlab = NetLab()
    try:
        yield netlab
    finally:
        netlab.close()
    left = _run("ip", "netns", "list")
    assert netlab.prefix not in left, f"namespaces left behind: {left}"


def _value(samples: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"{name}{labels} not exported; have {sorted({k[0] for k in samples})}"
    return samples[key]


def _summary(proc: subprocess.Popen[str], log: Path) -> list[dict]:
    proc.wait(timeout=30)
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


# Measured to a few percent: runs when nothing else does (marker quiet, the end of make test-lab).
@pytest.mark.quiet
def test_probe_rtt_matches_the_delay_injected_by_a_proxy(lab: NetLab, tmp_path: Path) -> None:
    a, r, b = lab.ns("a"), lab.ns("r"), lab.ns("b")
    lab.link(a, "10.231.1.1/24", r, "10.231.1.2/24")
    lab.link(r, "10.231.2.2/24", b, "10.231.2.1/24")
    delay = 0.025  # each way: 50 ms round trip
    lab.start_proxy(r, "10.231.1.2:9402", "10.231.2.1:9402", delay, "udp")
    lab.start(b, *NUCLAB, "probe", "--name", "b", "--answer-only", "--metrics-port", "0")
    lab.wait_bound(b, 9402)
    log = tmp_path / "a.log"
    probe = lab.start(
        a, *NUCLAB, "probe", "--name", "a", "--experiment", "netns",
        "--target", "b=10.231.1.2:9402", "--interval", "0.1", "--timeout", "0.5",
        "--duration", "40", log=log,
    )  # fmt: skip
    labels = {"experiment": "netns", "source": "a", "target": "b"}
    deadline = time.monotonic() + 30
    count = 0.0
    while count < 40 and time.monotonic() < deadline:
        time.sleep(1)
        samples = lab.scrape(a, "http://10.231.1.1:9403/metrics")
        count = _value(samples, "nuclab_peer_rtt_seconds_count", **labels)
    mean = _value(samples, "nuclab_peer_rtt_seconds_sum", **labels) / count
    assert count >= 40
    expected = 2 * delay
    assert abs(mean - expected) <= max(0.001, 0.05 * expected), (mean, expected)
    le_25ms = _value(samples, "nuclab_peer_rtt_seconds_bucket", le="0.025", **labels)
    le_100ms = _value(samples, "nuclab_peer_rtt_seconds_bucket", le="0.1", **labels)
    assert (le_25ms, le_100ms) == (0, count), "every probe should fall in the 50-100 ms buckets"
    probe.send_signal(signal.SIGTERM)
    (row,) = _summary(probe, log)
    assert row["target"] == "b"
    assert row["lost"] == 0
    assert abs(row["rtt_avg_s"] - expected) <= max(0.001, 0.05 * expected), row


def test_probe_loss_matches_iptables_statistic_drops(lab: NetLab, tmp_path: Path) -> None:
    a, b = lab.ns("a"), lab.ns("b")
    lab.link(a, "10.231.1.1/24", b, "10.231.1.2/24")
    drop = 0.2
    _run(
        "ip", "netns", "exec", b, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "9402",
        "-m", "statistic", "--mode", "random", "--probability", str(drop), "-j", "DROP",
    )  # fmt: skip
    # a's 500 probes a second are more than b answers one address by default
    lab.start(
        b, *NUCLAB, "probe", "--name", "b", "--answer-only", "--metrics-port", "0",
        "--reply-rate", "1000",
    )  # fmt: skip
    lab.wait_bound(b, 9402)
    log = tmp_path / "a.log"
    probe = lab.start(
        a, *NUCLAB, "probe", "--name", "a", "--target", "b=10.231.1.2", "--interval", "0.002",
        "--timeout", "0.2", "--tcp-every", "0", "--duration", "14", "--metrics-port", "0",
        log=log,
    )  # fmt: skip
    (row,) = _summary(probe, log)
    counted = _run("ip", "netns", "exec", b, "iptables", "-L", "INPUT", "-v", "-x", "-n")
    dropped = int(re.search(r"^\s*(\d+)\s+\d+\s+DROP", counted, re.M).group(1))  # type: ignore[union-attr]
    assert row["sent"] >= 5000
    # 6000 probes: one standard deviation of the random drop rate is 0.5 points.
    assert abs(row["loss"] - drop) <= 0.02, row
    # ... and the probe counts exactly the probes the kernel dropped.
    assert row["lost"] == dropped, (row, dropped)


FLOOD = """
import json, socket, sys, time
from nuclab.probe import wire
target, seconds = (sys.argv[1], 9402), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sent = received = sent_bytes = received_bytes = 0
end = time.monotonic() + seconds
while time.monotonic() < end or time.monotonic() < end + 0.5:
    if time.monotonic() < end:
        packet = wire.request(sent)
        s.sendto(packet, target)
        sent, sent_bytes = sent + 1, sent_bytes + len(packet)
        time.sleep(0.0005)
    try:
        while True:
            received_bytes += len(s.recv(512))
            received += 1
    except BlockingIOError:
        pass
print(json.dumps({"sent": sent, "received": received, "sent_bytes": sent_bytes,
                  "received_bytes": received_bytes}))
"""


def test_a_flood_from_one_address_is_answered_at_the_reply_rate_and_others_in_full(
    lab: NetLab, tmp_path: Path
) -> None:
    # f floods b with echo requests (as a forged source would, to make b send to a victim);
    # c probes b as a peer does, at the same time
    _, ns = lab.switch({"f": "10.231.3.1", "b": "10.231.3.2", "c": "10.231.3.3"})
    rate, seconds = 50, 4.0
    lab.start(
        ns["b"], *NUCLAB, "probe", "--name", "b", "--answer-only", "--bind", "10.231.3.2",
        "--metrics-port", "9403", "--reply-rate", str(rate),
    )  # fmt: skip
    lab.wait_bound(ns["b"], 9402)
    log = tmp_path / "c.log"
    honest = lab.start(
        ns["c"], *NUCLAB, "probe", "--name", "c", "--target", "b=10.231.3.2", "--interval",
        "0.05", "--tcp-every", "0", "--duration", str(seconds + 1), "--metrics-port", "0",
        log=log,
    )  # fmt: skip
    flood = subprocess.run(
        ["ip", "netns", "exec", ns["f"], sys.executable, "-c", FLOOD, "10.231.3.2", str(seconds)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    got = json.loads(flood.stdout)
    print(f"flood from one address: {got}")
    assert got["sent"] >= 10 * rate * seconds  # at least 10 times the rate
    # a full bucket (one second's worth), then the rate
    assert rate * seconds * 0.8 <= got["received"] <= rate * (seconds + 1.5), got
    assert got["received_bytes"] <= got["sent_bytes"]
    (row,) = _summary(honest, log)
    assert row["answered"] == row["sent"] and row["lost"] == 0, row
    refused = _value(
        lab.scrape(ns["b"], "http://10.231.3.2:9403/metrics"), "nuclab_probe_answers_refused_total"
    )
    # every request b did not answer was refused (but for the few lost on the way)
    assert 0.95 * (got["sent"] - got["received"]) <= refused <= got["sent"] - got["received"]


def test_gossip_delivers_every_message_to_every_peer(
    lab: NetLab, tmp_path: Path, peer_binary: str
) -> None:
    hosts = {f"p{i}": f"10.231.0.{i + 1}" for i in range(5)}
    _, ns = lab.switch(hosts)
    peers = [arg for name, ip in hosts.items() for arg in ("--peer", f"{name}={ip}:4001")]
    count = 40
    for name in hosts:
        lab.start(
            ns[name], peer_binary, "--name", name, "--experiment", "netns", *peers,
            "--connect-to", "2", "--msg-size", "512", "--msg-rate", "50", "--count", str(count),
            "--duration", "60", log=tmp_path / f"{name}.log",
        )  # fmt: skip
    want = {"sent": count, "received": count * (len(hosts) - 1)}
    got: dict[str, dict[str, float]] = {}
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        time.sleep(1)
        for name, ip in hosts.items():
            s = lab.scrape(ns[name], f"http://{ip}:9401/metrics")
            got[name] = {
                k: _value(s, f"nuclab_peer_messages_{k}_total", experiment="netns", peer=name)
                for k in ("sent", "received", "duplicate")
            } | {
                "latency_count": _value(
                    s, "nuclab_peer_delivery_latency_seconds_count", experiment="netns", peer=name
                )
            }
        if all(
            g["sent"] == want["sent"] and g["received"] == want["received"] for g in got.values()
        ):
            break
    for name, g in got.items():
        assert (g["sent"], g["received"]) == (want["sent"], want["received"]), (name, got)
        assert g["latency_count"] == want["received"]
    assert sum(g["duplicate"] for g in got.values()) > 0, "gossip over a ring with chords repeats"
    for name in hosts:
        lines = (tmp_path / f"{name}.log").read_text().splitlines()
        sending = [line for line in lines if line.startswith("sending at ")]
        assert len(sending) == count
        assert re.fullmatch(
            r"sending at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z seq=1 size=512", sending[0]
        )


# Measured to a few percent: runs when nothing else does (marker quiet, the end of make test-lab).
@pytest.mark.quiet
def test_peer_delivery_latency_matches_a_tcp_delaying_proxy(lab: NetLab, peer_binary: str) -> None:
    a, r, b = lab.ns("a"), lab.ns("r"), lab.ns("b")
    lab.link(a, "10.231.1.1/24", r, "10.231.1.2/24")
    lab.link(r, "10.231.2.2/24", b, "10.231.2.1/24")
    delay = 0.05
    lab.start_proxy(r, "10.231.1.2:4001", "10.231.2.1:4001", delay, "tcp")
    lab.start(
        b, peer_binary, "--name", "b", "--peer", "a=10.231.2.2:1", "--connect-to", "0",
        "--msg-rate", "3600000", "--duration", "60",
    )  # fmt: skip
    lab.start(
        a, peer_binary, "--name", "a", "--peer", "b=10.231.1.2:4001", "--connect-to", "1",
        "--msg-size", "100", "--msg-rate", "100", "--count", "30", "--duration", "60",
    )  # fmt: skip
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        time.sleep(1)
        s = lab.scrape(b, "http://10.231.2.1:9401/metrics")
        count = _value(s, "nuclab_peer_delivery_latency_seconds_count", experiment="", peer="b")
        if count >= 30:
            break
    assert count == 30
    mean = _value(s, "nuclab_peer_delivery_latency_seconds_sum", experiment="", peer="b") / count
    assert abs(mean - delay) <= max(0.001, 0.05 * delay), mean


def test_peer_throughput_under_tbf_matches_the_configured_rate(
    lab: NetLab, peer_binary: str
) -> None:
    a, b = lab.ns("a"), lab.ns("b")
    dev_a, _ = lab.link(a, "10.231.1.1/24", b, "10.231.1.2/24")
    mbit = 20
    _run(
        "ip", "netns", "exec", a, "tc", "qdisc", "add", "dev", dev_a, "root", "tbf",
        "rate", f"{mbit}mbit", "burst", "32kb", "latency", "50ms",
    )  # fmt: skip
    # b only receives; a offers 64 KiB every ms (~500 Mbit/s), far more than the link takes.
    lab.start(
        b, peer_binary, "--name", "b", "--peer", "a=10.231.1.1", "--connect-to", "0",
        "--msg-rate", "3600000", "--duration", "60",
    )  # fmt: skip
    lab.start(
        a, peer_binary, "--name", "a", "--peer", "b=10.231.1.2", "--connect-to", "1",
        "--msg-size", "65536", "--msg-rate", "1", "--duration", "60",
    )  # fmt: skip
    url = "http://10.231.1.2:9401/metrics"
    key = {"experiment": "", "peer": "b"}
    deadline = time.monotonic() + 30
    while _value(lab.scrape(b, url), "nuclab_peer_bytes_received_total", **key) < 2e6:
        assert time.monotonic() < deadline, "a never got its messages through to b"
        time.sleep(0.5)
    t0, first = time.monotonic(), lab.scrape(b, url)
    time.sleep(8)
    t1, last = time.monotonic(), lab.scrape(b, url)
    got = _value(last, "nuclab_peer_bytes_received_total", **key)
    got -= _value(first, "nuclab_peer_bytes_received_total", **key)
    rate_mbit = got * 8 / (t1 - t0) / 1e6
    # Goodput is the shaped rate less TCP/IP/Ethernet headers (~4.4% at MTU 1500).
    assert abs(rate_mbit - mbit) <= 0.1 * mbit, rate_mbit


def test_node_probe_pushes_percentiles_and_writes_the_csv(lab: NetLab, tmp_path: Path) -> None:
    gateway = shutil.which("prometheus-pushgateway")
    assert gateway, "needs prometheus-pushgateway (Debian package; run make setup)"
    hosts = {"nuc-1": "10.231.0.1", "nuc-2": "10.231.0.2", "nuc-3": "10.231.0.3"}
    _, ns = lab.switch({k.replace("nuc-", "n"): v for k, v in hosts.items()})
    node_ns = {k: ns[k.replace("nuc-", "n")] for k in hosts}
    lab.start(node_ns["nuc-1"], gateway, "--web.listen-address=10.231.0.1:9091")
    lab.scrape(node_ns["nuc-1"], "http://10.231.0.1:9091/metrics")  # waits until it is up
    procs = []
    for node, ip in hosts.items():
        targets = [a for other, oip in hosts.items() if other != node for a in ("--target", oip)]
        argv = [
            *NUCLAB, "probe", "--node", "--name", node, *targets, "--bind", ip,
            "--interval", "0.02", "--pushgateway", "http://10.231.0.1:9091",
            "--push-interval", "1", "--csv", str(tmp_path / f"{node}.csv"),
            "--duration", "8", "--metrics-port", "0",
        ]  # fmt: skip
        procs.append(lab.start(node_ns[node], *argv, log=tmp_path / f"{node}.log"))
    for proc in procs:
        assert proc.wait(timeout=30) == 0
    pushed = lab.scrape(node_ns["nuc-1"], "http://10.231.0.1:9091/metrics")
    for node in hosts:
        rows = (tmp_path / f"{node}.csv").read_text().splitlines()
        assert rows[0] == "origin,destination,p50_us,p90_us,p99_us"
        assert len(rows) == 3
        for row in rows[1:]:
            origin, dest, p50, p90, p99 = row.split(",")
            assert origin == node and dest in hosts and dest != node  # names learned from replies
            assert 0 < int(p50) <= int(p90) <= int(p99) < 100_000
            for q, us in (("0.5", p50), ("0.9", p90), ("0.99", p99)):
                value = _value(
                    pushed, "nuclab_node_rtt_seconds", destination=dest, instance="",
                    job="nuclab_node_probe", origin=origin, quantile=q,
                )  # fmt: skip
                assert round(value * 1e6) == int(us)


def test_probe_stops_cleanly_on_sigterm(lab: NetLab, tmp_path: Path) -> None:
    a = lab.ns("a")
    log = tmp_path / "a.log"
    proc = lab.start(
        a, *NUCLAB, "probe", "--name", "a", "--target", "b=127.0.0.2:9999", "--metrics-port", "0",
        log=log,
    )  # fmt: skip
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    (row,) = _summary(proc, log)
    assert row["sent"] >= 1 and row["answered"] == 0
