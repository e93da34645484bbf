"""``nuclab peer``: the default experiment workload, a small gossip network over TCP.

Each peer connects to ``connect_to`` others (the next ones in sorted ring order, so the peers
always form one connected network), publishes a ``msg_size``-byte message every ``msg_rate``
ms, relays every message it sees for the first time to all its other connections, and exports
sent / received / duplicate counts and delivery latency (sender's wall clock to receiver's: on
one machine exact, across nodes as good as their NTP). One log line ``sending at <UTC time>``
per published message, which the logs dashboard counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from nuclab.errors import ValidationError
from nuclab.probe.config import check_range, env_first, env_number
from nuclab.probe.targets import Endpoint, discover, parse_port, parse_target, ring_neighbours

DEFAULT_PORT = 4001
DEFAULT_METRICS_PORT = 9401
MAGIC = b"NLG1"
# magic, payload length, sequence, sent-at (ns since the epoch, UTC), origin length
HEADER = struct.Struct("!4sIQQH")
MAX_PAYLOAD = 16 * 1024 * 1024
SEEN_CAPACITY = 200_000
# Like GossipSub's message cache: the latest messages are replayed to every new connection, so a
# peer that connects late (or reconnects) still gets what was published meanwhile.
HISTORY_MESSAGES = 2048
HISTORY_BYTES = 32 * 1024 * 1024
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

log = logging.getLogger("nuclab.peer")


@dataclass(slots=True)
class PeerConfig:
    name: str
    experiment: str = ""
    service: str = ""
    peers: int = 0
    statefulset: str = ""
    connect_to: int = 3
    msg_size: int = 1024
    msg_rate: float = 1000.0
    targets: list[Endpoint] = field(default_factory=list)
    bind: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    count: int = 0
    duration: float = 0.0
    rediscover: float = 30.0
    params: dict[str, str] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--name", help="this peer's name (env POD_NAME, default hostname)")
    a("--experiment", help="experiment name (env NUCLAB_EXPERIMENT)")
    a("--service", help="headless Service DNS name to discover peers (env NUCLAB_SERVICE)")
    a("--peers", type=int, help="number of peers in the experiment (env NUCLAB_PEERS)")
    a("--connect-to", type=int, help="peers to connect to (env NUCLAB_CONNECT_TO, default 3)")
    a("--msg-size", type=int, help="message size in bytes (env NUCLAB_MSG_SIZE, default 1024)")
    a("--msg-rate", type=float, help="ms between messages (env NUCLAB_MSG_RATE, default 1000)")
    a(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=HOST[:PORT]",
        help="a peer to consider instead of discovering (repeatable)",
    )
    a("--bind", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    a("--port", help=f"gossip TCP port (env NUCLAB_PEER_PORT, default {DEFAULT_PORT})")
    a("--metrics-port", help=f"/metrics port, 0 = off (default {DEFAULT_METRICS_PORT})")
    a("--count", type=int, default=0, help="publish this many messages, then only relay (0 = ∞)")
    a("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run forever)")
    a("--rediscover", type=float, default=30.0, help="seconds between DNS discoveries (30)")


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> PeerConfig:
    env = os.environ if environ is None else environ

    def number(
        flag: str, value: float | None, env_name: str, default: float, high: float, *alias: str
    ) -> float:
        if value is None:
            return env_number(env, env_name, default, 0, high, *alias)
        return check_range(flag, value, 0, high)

    # The experiment chart's names first (NUCLAB_PORT, NUCLAB_METRICS_PORT, NUCLAB_POD_NAME,
    # NUCLAB_MSG_INTERVAL_MS), the documented ones as aliases.
    port_env = env_first(env, "NUCLAB_PORT", "NUCLAB_PEER_PORT")[1]
    port = parse_port("--port", args.port or port_env or DEFAULT_PORT)
    metrics_env = env_first(env, "NUCLAB_METRICS_PORT", "NUCLAB_PEER_METRICS_PORT")[1]
    metrics_raw = args.metrics_port if args.metrics_port is not None else metrics_env
    if metrics_raw is None:
        metrics_raw = DEFAULT_METRICS_PORT
    cfg = PeerConfig(
        name=args.name or env_first(env, "POD_NAME", "NUCLAB_POD_NAME")[1] or socket.gethostname(),
        experiment=args.experiment or env.get("NUCLAB_EXPERIMENT", ""),
        service=args.service or env.get("NUCLAB_SERVICE", ""),
        peers=int(number("--peers", args.peers, "NUCLAB_PEERS", 0, 100_000)),
        statefulset=env.get("NUCLAB_STATEFULSET", ""),
        connect_to=int(number("--connect-to", args.connect_to, "NUCLAB_CONNECT_TO", 3, 10_000)),
        msg_size=int(number("--msg-size", args.msg_size, "NUCLAB_MSG_SIZE", 1024, MAX_PAYLOAD)),
        msg_rate=number(
            "--msg-rate",
            args.msg_rate,
            "NUCLAB_MSG_RATE",
            1000,
            86_400_000,
            "NUCLAB_MSG_INTERVAL_MS",
        ),
        targets=[parse_target(p, port, "--peer") for p in args.peer],
        bind=args.bind,
        port=port,
        metrics_port=0 if str(metrics_raw) == "0" else parse_port("--metrics-port", metrics_raw),
        count=int(check_range("--count", args.count, 0, 1e12)),
        duration=check_range("--duration", args.duration, 0, 1e9),
        rediscover=check_range("--rediscover", args.rediscover, 1, 86400),
        params={
            k.removeprefix("NUCLAB_PARAM_").lower(): v
            for k, v in env.items()
            if k.startswith("NUCLAB_PARAM_")
        },
    )
    if not cfg.targets and not cfg.service:
        raise ValidationError(
            "--peer/--service",
            "",
            "give --peer NAME=HOST[:PORT] or a headless Service (--service, env NUCLAB_SERVICE)",
        )
    return cfg


@dataclass(slots=True)
class PeerMetrics:
    registry: CollectorRegistry
    sent: Counter
    received: Counter
    duplicate: Counter
    bytes_sent: Counter
    bytes_received: Counter
    latency: Histogram
    connections: Gauge


def peer_metrics(experiment: str, name: str) -> PeerMetrics:
    r = CollectorRegistry(auto_describe=False)
    labels = ("experiment", "peer")

    def counter(metric: str, text: str) -> Counter:
        return Counter(metric, text, labels, registry=r).labels(experiment, name)

    return PeerMetrics(
        registry=r,
        sent=counter("nuclab_peer_messages_sent", "Messages this peer published."),
        received=counter("nuclab_peer_messages_received", "Messages of others received first."),
        duplicate=counter("nuclab_peer_messages_duplicate", "Messages received again (gossip)."),
        bytes_sent=counter("nuclab_peer_bytes_sent", "Gossip bytes written (published+relayed)."),
        bytes_received=counter("nuclab_peer_bytes_received", "Gossip bytes read."),
        latency=Histogram(
            "nuclab_peer_delivery_latency_seconds",
            "Time from a message's publication to its first arrival at this peer.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        ).labels(experiment, name),
        connections=Gauge(
            "nuclab_peer_connections", "Open gossip connections.", labels, registry=r
        ).labels(experiment, name),
    )


def encode(origin: bytes, seq: int, sent_at_ns: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), seq, sent_at_ns, len(origin)) + origin + payload


def rfc3339(ns: int) -> str:
    """UTC time with microseconds, e.g. ``2025-09-20T11:57:09.123456Z``."""
    sec, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


class Peer:
    def __init__(self, cfg: PeerConfig, metrics: PeerMetrics) -> None:
        self.cfg = cfg
        self.m = metrics
        self.origin = cfg.name.encode()
        self.seen: OrderedDict[tuple[bytes, int], None] = OrderedDict()
        self.conns: set[asyncio.StreamWriter] = set()
        self.outbound: dict[tuple[str, int], asyncio.Task[None]] = {}
        self.published = 0
        self.history: deque[bytes] = deque()
        self.history_bytes = 0

    def _remember(self, frame: bytes) -> None:
        self.history.append(frame)
        self.history_bytes += len(frame)
        while len(self.history) > HISTORY_MESSAGES or self.history_bytes > HISTORY_BYTES:
            self.history_bytes -= len(self.history.popleft())

    def _mark_seen(self, key: tuple[bytes, int]) -> bool:
        """True when the message is new."""
        if key in self.seen:
            return False
        self.seen[key] = None
        if len(self.seen) > SEEN_CAPACITY:
            self.seen.popitem(last=False)
        return True

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        self.m.connections.set(len(self.conns))
        for frame in self.history:  # the receiver drops what it already has
            writer.write(frame)
            self.m.bytes_sent.inc(len(frame))
        try:
            while True:
                head = await reader.readexactly(HEADER.size)
                magic, size, seq, sent_at, olen = HEADER.unpack(head)
                if magic != MAGIC or size > MAX_PAYLOAD:
                    log.warning("dropping a connection that does not speak nuclab gossip")
                    return
                body = await reader.readexactly(olen + size)
                now = time.time_ns()
                self.m.bytes_received.inc(HEADER.size + olen + size)
                origin = body[:olen]
                if origin == self.origin or not self._mark_seen((origin, seq)):
                    self.m.duplicate.inc()
                    continue
                self.m.received.inc()
                self.m.latency.observe(max(0, now - sent_at) / 1e9)
                frame = head + body
                self._remember(frame)
                for other in list(self.conns):
                    if other is not writer and not other.is_closing():
                        other.write(frame)
                        self.m.bytes_sent.inc(len(frame))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.conns.discard(writer)
            self.m.connections.set(len(self.conns))
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._read_loop(reader, writer)

    async def _dial(self, ep: Endpoint) -> None:
        """Keep one outbound connection to ``ep`` open, reconnecting after failures."""
        while True:
            try:
                reader, writer = await asyncio.open_connection(ep.host, ep.port)
            except OSError:
                await asyncio.sleep(1)
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            log.info("connected to %s (%s:%d)", ep.label, ep.host, ep.port)
            await self._read_loop(reader, writer)
            await asyncio.sleep(1)

    def _neighbours(self) -> list[Endpoint]:
        cfg = self.cfg
        if cfg.targets:
            candidates = cfg.targets
        else:
            candidates = discover(
                experiment=cfg.experiment,
                service=cfg.service,
                peers=cfg.peers,
                self_name=cfg.name,
                port=cfg.port,
                statefulset=cfg.statefulset,
            )
        by_key = {ep.label: ep for ep in candidates}
        self_key = cfg.name
        if candidates and all(ep.name is None for ep in candidates):
            with contextlib.suppress(OSError):  # IP-only discovery: we are our own pod IP
                self_key = socket.gethostbyname(socket.gethostname())
        by_key.pop(self_key, None)
        return [by_key[k] for k in ring_neighbours(self_key, by_key, cfg.connect_to)]

    async def _discovery_loop(self) -> None:
        while True:
            neighbours = await asyncio.to_thread(self._neighbours)
            for ep in neighbours:
                key = (ep.host, ep.port)
                if key not in self.outbound:
                    self.outbound[key] = asyncio.create_task(self._dial(ep))
            await asyncio.sleep(self.cfg.rediscover)

    async def _publish_loop(self) -> None:
        cfg = self.cfg
        payload = os.urandom(cfg.msg_size)
        period = cfg.msg_rate / 1000
        next_at = time.monotonic()
        while cfg.count == 0 or self.published < cfg.count:
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:  # fell behind (a slow link): do not burst to catch up
                next_at = time.monotonic()
            if not self.conns:
                continue
            self.published += 1
            now = time.time_ns()
            frame = encode(self.origin, self.published, now, payload)
            self._mark_seen((self.origin, self.published))
            self._remember(frame)
            print(f"sending at {rfc3339(now)} seq={self.published} size={cfg.msg_size}", flush=True)
            self.m.sent.inc()
            targets = [w for w in self.conns if not w.is_closing()]
            for w in targets:
                w.write(frame)
                self.m.bytes_sent.inc(len(frame))
            for w in targets:  # backpressure: a slow link slows publishing, nothing is dropped
                with contextlib.suppress(ConnectionError, OSError):
                    await w.drain()

    async def run(self, stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._accept, self.cfg.bind, self.cfg.port)
        log.info("peer %s listening on %s:%d", self.cfg.name, self.cfg.bind, self.cfg.port)
        tasks = [
            asyncio.create_task(self._discovery_loop()),
            asyncio.create_task(self._publish_loop()),
        ]
        try:
            if self.cfg.duration > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.cfg.duration)
            else:
                await stop.wait()
        finally:
            for task in [*tasks, *self.outbound.values()]:
                task.cancel()
            server.close()
            for w in list(self.conns):
                w.close()


def run(cfg: PeerConfig) -> int:
    disable_created_metrics()
    metrics = peer_metrics(cfg.experiment, cfg.name)
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.bind, registry=metrics.registry)
    if cfg.params:
        log.info("experiment parameters: %s", cfg.params)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Peer(cfg, metrics).run(stop)

    asyncio.run(main())
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nuclab.peer``: the peer without the rest of the CLI (lighter in a pod)."""
    parser = argparse.ArgumentParser(prog="python -m nuclab.peer", description=__doc__)
    add_arguments(parser)
    try:
        cfg = from_args(parser.parse_args(argv))
    except ValidationError as exc:
        print(f"nuclab peer: error: {exc}", file=sys.stderr)
        return exc.exit_code
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
