"""The probe's event loop: one thread, one UDP socket, one TCP listener, no asyncio.

Kept deliberately plain (``selectors`` and a few dicts) so that 100 targets at one probe a second
stay far below 2% of a core. Probes to the targets are spread evenly over each interval.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from nuclab.probe import wire
from nuclab.probe.config import ProbeConfig
from nuclab.probe.limit import ReplyLimiter
from nuclab.probe.metrics import ProbeMetrics
from nuclab.probe.targets import Endpoint

RttCallback = Callable[[str, float], None]
_NS = 1_000_000_000
# Linux: the kernel stamps each datagram on arrival (CLOCK_REALTIME), so a probe that is
# CPU-throttled (5% quotas are common in experiments) or merely busy still measures the network,
# not its own wake-up. Python does not export these constants.
SO_TIMESTAMPNS = 35
_TIMESPEC = struct.Struct("@qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)
SLOTS = 25


@dataclass(slots=True)
class _Target:
    endpoint: Endpoint
    label: str
    rtt: Histogram | None = None
    sent: Counter | None = None
    lost: Counter | None = None
    tcp: Histogram | None = None
    tcp_failed: Counter | None = None
    is_self: bool = False
    counts: list[int] = field(default_factory=lambda: [0, 0, 0])  # sent, answered, lost
    rtt_sum: float = 0.0
    rtt_min: float = float("inf")
    rtt_max: float = 0.0


class Prober:
    """Probes targets and answers other probes until ``stop`` is set or the duration ends."""

    def __init__(
        self,
        cfg: ProbeConfig,
        metrics: ProbeMetrics | None = None,
        on_rtt: RttCallback | None = None,
    ) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.on_rtt = on_rtt
        self._name = cfg.name.encode()
        self._targets: dict[tuple[str, int], _Target] = {}
        self._order: list[_Target] = []
        self._incoming: list[Endpoint] | None = None
        self._lock = threading.Lock()
        # seq -> (target, monotonic send time for timeouts, wall-clock send time for the RTT)
        self._pending: OrderedDict[int, tuple[_Target, int, int]] = OrderedDict()
        self._tcp_pending: dict[socket.socket, tuple[_Target, int]] = {}
        self._seq = 0
        self.limiter = ReplyLimiter(cfg.reply_rate)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        with contextlib.suppress(OSError):  # not on every kernel: then the wake-up time is used
            self.udp.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.udp.bind((cfg.bind, cfg.port))
        self.udp.setblocking(False)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((cfg.bind, cfg.port))
        self.tcp.listen(1024)
        self.tcp.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.udp, selectors.EVENT_READ, "udp")
        self.sel.register(self.tcp, selectors.EVENT_READ, "accept")

    # -- targets --------------------------------------------------------------------------

    def set_targets(self, endpoints: list[Endpoint]) -> None:
        """Replace the target list (thread-safe: applied by the loop at its next turn)."""
        with self._lock:
            self._incoming = list(endpoints)

    def summary(self) -> list[dict[str, object]]:
        """Per target: probes sent, answered and lost, loss and RTT min/avg/max (like ping's)."""
        rows: list[dict[str, object]] = []
        for t in self._targets.values():
            if t.is_self:
                continue
            sent, answered, lost = t.counts
            rows.append(
                {
                    "source": self.cfg.name,
                    "target": t.label,
                    "sent": sent,
                    "answered": answered,
                    "lost": lost,
                    "loss": lost / sent if sent else 0.0,
                    "rtt_min_s": t.rtt_min if answered else None,
                    "rtt_avg_s": t.rtt_sum / answered if answered else None,
                    "rtt_max_s": t.rtt_max if answered else None,
                }
            )
        return rows

    def _apply_targets(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, None
        if incoming is None:
            return
        kept: dict[tuple[str, int], _Target] = {}
        for ep in incoming:
            key = (ep.host, ep.port)
            old = self._targets.get(key)
            if old is not None and (ep.name is None or ep.name == old.label):
                kept[key] = old
            else:
                kept[key] = self._new_target(ep, ep.label)
        self._targets = kept
        self._order = [t for t in kept.values() if not t.is_self]

    def _new_target(self, ep: Endpoint, label: str) -> _Target:
        t = _Target(ep, label)
        m = self.metrics
        if m is not None:
            labels = (self.cfg.experiment, self.cfg.name, label)
            t.rtt = m.rtt.labels(*labels)
            t.sent = m.sent.labels(*labels)
            t.lost = m.lost.labels(*labels)
            t.tcp = m.tcp_connect.labels(*labels)
            t.tcp_failed = m.tcp_failed.labels(*labels)
        return t

    def _learn_name(self, t: _Target, name: str) -> None:
        if name == self.cfg.name:
            t.is_self = True
            self._order = [o for o in self._order if o is not t]
            return
        if not name or t.endpoint.name is not None or name == t.label:
            return
        renamed = self._new_target(t.endpoint, name)
        t.label, t.rtt, t.sent, t.lost = renamed.label, renamed.rtt, renamed.sent, renamed.lost
        t.tcp, t.tcp_failed = renamed.tcp, renamed.tcp_failed

    # -- the loop -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        cfg = self.cfg
        interval_ns = int(cfg.interval * _NS)
        timeout_ns = int(cfg.timeout * _NS)
        start = time.monotonic_ns()
        end = start + int(cfg.duration * _NS) if cfg.duration > 0 else None
        round_start, index, rounds = start, 0, 0
        self._apply_targets()
        while not stop.is_set():
            now = time.monotonic_ns()
            if end is not None and now >= end:
                break
            order = self._order
            n = len(order)
            # a reply may have dropped a target (ourselves) since the last send
            index = index if index < n else 0
            next_send = self._due(round_start, index, n, interval_ns) if n else now + interval_ns
            while n and now >= next_send:
                tcp_round = cfg.tcp_every and rounds % cfg.tcp_every == 0
                self._send(order[index], now, tcp_round)
                index += 1
                if index >= n:
                    index, rounds = 0, rounds + 1
                    round_start += interval_ns
                    if round_start + interval_ns < now:  # fell far behind: do not burst
                        round_start = now
                    self._apply_targets()
                    order = self._order
                    n = len(order)
                    if not n:
                        break
                next_send = self._due(round_start, index, n, interval_ns)
            if not n:
                round_start, index = now, 0
                self._apply_targets()
            self._expire(now, timeout_ns)
            wait_ns = max(0, min(next_send if n else now + interval_ns, now + 200_000_000) - now)
            if end is not None:
                wait_ns = max(0, min(wait_ns, end - now))
            for key, events in self.sel.select(wait_ns / _NS):
                kind = key.data
                if kind == "udp":
                    self._read_udp()
                elif kind == "accept":
                    self._accept()
                else:
                    self._tcp_done(key.fileobj, events)  # type: ignore[arg-type]
        self._drain(timeout_ns)

    def _drain(self, timeout_ns: int) -> None:
        """Like ping's last wait: answers still on their way count; only then is the rest lost."""
        drain_end = time.monotonic_ns() + timeout_ns
        while self._pending and time.monotonic_ns() < drain_end:
            wait_ns = max(0, drain_end - time.monotonic_ns())
            for key, _ in self.sel.select(min(wait_ns, 50_000_000) / _NS):
                if key.data == "udp":
                    self._read_udp()
        self._expire(time.monotonic_ns() + timeout_ns + 1, timeout_ns)

    @staticmethod
    def _due(round_start: int, index: int, n: int, interval_ns: int) -> int:
        """When target ``index`` of ``n`` is due: the interval is cut into at most SLOTS slots
        whose targets go out together, so 100 targets cost 25 wake-ups, not 100, and bursts of 4
        keep the queueing at the answering probe negligible."""
        slots = min(n, SLOTS)
        return round_start + ((index * slots) // n) * interval_ns // slots

    def close(self) -> None:
        for sock in list(self._tcp_pending):
            self._tcp_close(sock)
        self.sel.close()
        self.udp.close()
        self.tcp.close()

    def _send(self, t: _Target, now: int, tcp_round: bool) -> None:
        self._seq += 1
        packet = wire.request(self._seq)
        self._pending[self._seq] = (t, now, time.time_ns())
        # Unreachable right now: it counts as lost when the timeout passes.
        with contextlib.suppress(OSError):
            self.udp.sendto(packet, (t.endpoint.host, t.endpoint.port))
        t.counts[0] += 1
        if t.sent is not None:
            t.sent.inc()
        if tcp_round:
            self._tcp_start(t)

    def _expire(self, now: int, timeout_ns: int) -> None:
        pending = self._pending
        while pending:
            seq, (t, sent_at, _) = next(iter(pending.items()))
            if now - sent_at < timeout_ns:
                break
            del pending[seq]
            t.counts[2] += 1
            if t.lost is not None:
                t.lost.inc()
        for sock, (t, started) in list(self._tcp_pending.items()):
            if now - started >= timeout_ns:
                self._tcp_close(sock)
                if t.tcp_failed is not None:
                    t.tcp_failed.inc()

    def _answer(self, packet: bytes, addr: tuple[str, int]) -> bool:
        """Answer ``packet`` if it is an echo request and its source is within the reply rate;
        False when it is not a request."""
        answer = wire.reply_to(packet, self._name)
        if answer is None:
            return False
        if self.limiter.allow(addr[0]):
            with contextlib.suppress(OSError):
                self.udp.sendto(answer, addr)
        elif self.metrics is not None:
            self.metrics.refused.inc()
        return True

    def _read_udp(self) -> None:
        for _ in range(512):
            try:
                packet, ancillary, _flags, addr = self.udp.recvmsg(512, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error from an earlier send: nothing to read
            arrived = time.time_ns()
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    arrived = sec * _NS + nsec
            if self._answer(packet, addr):
                continue
            parsed = wire.parse_reply(packet)
            if parsed is None:
                continue
            entry = self._pending.pop(parsed[0], None)
            if entry is None:
                continue  # late (already counted as lost) or not ours
            t, _, sent_at = entry
            if t.endpoint.name is None:
                self._learn_name(t, parsed[1])
                if t.is_self:
                    continue
            rtt = max(0, arrived - sent_at) / _NS
            t.counts[1] += 1
            t.rtt_sum += rtt
            t.rtt_min = min(t.rtt_min, rtt)
            t.rtt_max = max(t.rtt_max, rtt)
            if t.rtt is not None:
                t.rtt.observe(rtt)
            if self.on_rtt is not None:
                self.on_rtt(t.label, rtt)

    def _accept(self) -> None:
        for _ in range(512):
            try:
                conn, _addr = self.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.close()

    def _tcp_start(self, t: _Target) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        started = time.monotonic_ns()
        err = sock.connect_ex((t.endpoint.host, t.endpoint.port))
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            if t.tcp_failed is not None:
                t.tcp_failed.inc()
            return
        self._tcp_pending[sock] = (t, started)
        self.sel.register(sock, selectors.EVENT_WRITE, "tcp")

    def _tcp_done(self, sock: socket.socket, _events: int) -> None:
        now = time.monotonic_ns()
        entry = self._tcp_pending.get(sock)
        if entry is None:
            return
        t, started = entry
        failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
        self._tcp_close(sock)
        if failed:
            if t.tcp_failed is not None:
                t.tcp_failed.inc()
        elif t.tcp is not None:
            t.tcp.observe((now - started) / _NS)

    def _tcp_close(self, sock: socket.socket) -> None:
        self._tcp_pending.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)
        sock.close()
