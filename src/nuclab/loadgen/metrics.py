"""Prometheus metrics while a run goes: scraped (``--metrics-port``) or pushed (``--pushgateway``).

Short jobs push to the Pushgateway at every report interval and once at the end, so the last
values (achieved rate, percentiles, held or not) stay there for Prometheus to scrape.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.error
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, push_to_gateway, start_http_server

from nuclab.errors import NuclabError
from nuclab.loadgen.results import RunResult
from nuclab.loadgen.stats import QUANTILES, Samples, summarize

JOB = "nuclab-loadgen"


@dataclass
class Progress:
    """Counters the send/receive loop updates and the reporter reads (plain ints under the GIL)."""

    mode: str
    unit: str
    target_rate: float = 0.0  # current target in `unit` (0 = none)
    sent: int = 0
    completed: int = 0
    errors: int = 0
    bytes: int = 0
    amount: float = 0.0  # completed, in `unit`-seconds (messages, Mbit or requests)
    samples: Samples = field(default_factory=Samples)


class Reporter:
    """Turns a ``Progress`` into Prometheus metrics every ``interval`` seconds."""

    def __init__(
        self,
        progress: Progress,
        *,
        pushgateway: str | None = None,
        metrics_port: int | None = None,
        experiment: str = "",
        interval: float = 5.0,
        timeout: float = 5.0,
    ) -> None:
        self.progress = progress
        self.pushgateway = pushgateway
        self.metrics_port = metrics_port
        self.interval = interval
        self.timeout = timeout
        self.grouping = {
            "instance": socket.gethostname(),
            "mode": progress.mode,
            "experiment": experiment or "none",
        }
        reg = self.registry = CollectorRegistry()
        unit = ["unit"]
        self.g_target = Gauge("nuclab_loadgen_target_rate", "Target rate now", unit, registry=reg)
        self.g_achieved = Gauge(
            "nuclab_loadgen_achieved_rate",
            "Achieved rate over the last interval",
            unit,
            registry=reg,
        )
        self.c_sent = Counter("nuclab_loadgen_sent", "Messages or requests sent", registry=reg)
        self.c_done = Counter(
            "nuclab_loadgen_completed",
            "Messages acknowledged/received, requests answered",
            registry=reg,
        )
        self.c_err = Counter("nuclab_loadgen_errors", "Failed messages or requests", registry=reg)
        self.c_bytes = Counter("nuclab_loadgen_bytes", "Payload bytes completed", registry=reg)
        self.g_latency = Gauge(
            "nuclab_loadgen_latency_seconds",
            "Latency quantiles over the last interval",
            ["quantile"],
            registry=reg,
        )
        self.g_running = Gauge("nuclab_loadgen_running", "1 while the run goes", registry=reg)
        self.g_result_rate = Gauge(
            "nuclab_loadgen_result_achieved_rate", "Achieved rate of the run", unit, registry=reg
        )
        self.g_result_held = Gauge(
            "nuclab_loadgen_result_target_held", "1 if the run held its target rate", registry=reg
        )
        self.g_result_short = Gauge(
            "nuclab_loadgen_result_shortfall_ratio",
            "How far below target (0.1 = 10 %)",
            registry=reg,
        )
        self._last = (time.monotonic(), 0.0, 0, 0, 0, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def start(self) -> None:
        """Expose or push the first values; an unreachable Pushgateway fails here, before load."""
        self.g_running.set(1)
        if self.metrics_port is not None:
            start_http_server(self.metrics_port, registry=self.registry)
        if self.pushgateway:
            try:
                self._push()
            except (OSError, urllib.error.URLError) as exc:
                raise NuclabError(
                    f"--pushgateway: cannot push to {self.pushgateway!r} "
                    f"within {self.timeout:g}s ({_reason(exc)})"
                ) from None
        if self.pushgateway or self.metrics_port is not None:
            self._thread = threading.Thread(target=self._loop, name="loadgen-metrics", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.update()
            if self.pushgateway:
                try:
                    self._push()
                except (OSError, urllib.error.URLError) as exc:
                    if not self._warned:
                        print(
                            f"nuclab loadgen: warning: push failed: {_reason(exc)}", file=sys.stderr
                        )
                        self._warned = True

    def update(self) -> None:
        p = self.progress
        now = time.monotonic()
        t, amount, sent, done, err, nbytes = self._last
        dt = max(now - t, 1e-9)
        self.g_target.labels(p.unit).set(p.target_rate)
        self.g_achieved.labels(p.unit).set((p.amount - amount) / dt)
        self.c_sent.inc(max(p.sent - sent, 0))
        self.c_done.inc(max(p.completed - done, 0))
        self.c_err.inc(max(p.errors - err, 0))
        self.c_bytes.inc(max(p.bytes - nbytes, 0))
        recent = summarize(p.samples.recent())
        for q in QUANTILES:
            self.g_latency.labels(str(q)).set(recent[f"p{round(q * 100)}"])
        self._last = (now, p.amount, p.sent, p.completed, p.errors, p.bytes)

    def finish(self, result: RunResult | None) -> None:
        """Final values (and push); a failure to push at the end is a warning, not an error."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)
        self.update()
        self.g_running.set(0)
        if result is not None:
            self.g_result_rate.labels(result.unit).set(result.achieved_rate)
            self.g_result_held.set(1 if result.held else 0)
            self.g_result_short.set(max(result.shortfall, 0.0))
        if self.pushgateway:
            try:
                self._push()
            except (OSError, urllib.error.URLError) as exc:
                print(
                    f"nuclab loadgen: warning: final push failed: {_reason(exc)}", file=sys.stderr
                )

    def _push(self) -> None:
        push_to_gateway(
            self.pushgateway,
            job=JOB,
            registry=self.registry,
            grouping_key=self.grouping,
            timeout=self.timeout,
        )


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason)
