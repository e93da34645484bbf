"""Open-loop HTTP load: requests fire at scheduled times, whatever earlier responses do.

Arrival times come from the schedule: evenly spaced (constant) or with exponential gaps
(Poisson, seeded). Each request gets one trace row: scheduled and actual start, status,
latency, bytes, error. Requests are never delayed for a response; past ``max_in_flight``
open requests a due request is dropped and counted as an error, so overload shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from nuclab.errors import NuclabError, ValidationError
from nuclab.loadgen.metrics import Progress
from nuclab.loadgen.results import RunResult
from nuclab.loadgen.schedule import Schedule
from nuclab.loadgen.stats import PerSecond, summarize

ARRIVALS = ("constant", "poisson")
TRACE_FIELDS = (
    "seq",
    "scheduled_s",
    "start_unix_s",
    "lag_s",
    "status",
    "latency_s",
    "bytes",
    "error",
)


@dataclass
class HttpConfig:
    url: str
    schedule: Schedule
    arrivals: str = "constant"
    method: str = "GET"
    timeout: float = 10.0
    wait_for_target: float = 0.0  # seconds to keep trying the first connection (0: one try)
    tolerance: float = 0.02
    max_in_flight: int = 10_000
    seed: int | None = None
    trace: Path | None = None


def check_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("--url", url, "an http:// or https:// URL with a host")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def arrival_times(schedule: Schedule, arrivals: str, seed: int | None) -> Iterator[float]:
    """Send times (s from start) for the schedule: the k-th request at ``time_of(k)``.

    Poisson arrivals are a unit-rate Poisson process mapped through the schedule's cumulative
    rate (time-rescaling), so a ramp stays a ramp and the mean count stays the target.
    """
    if arrivals not in ARRIVALS:
        raise ValidationError("--arrivals", arrivals, f"one of {', '.join(ARRIVALS)}")
    total = schedule.total - 1e-9
    rng = random.Random(seed)
    amount = 0.0 if arrivals == "constant" else rng.expovariate(1.0)
    while amount < total:
        yield schedule.time_of(amount)
        amount += 1.0 if arrivals == "constant" else rng.expovariate(1.0)


async def _preflight(host: str, port: int, url: str, timeout: float, wait: float = 0.0) -> None:
    """Connect once before any load; with ``wait``, try again each second until then (a Job
    that starts beside its target: the name resolves, then the port listens)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            break
        except (OSError, TimeoutError) as exc:
            if time.monotonic() < deadline:
                await asyncio.sleep(1.0)
                continue
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            within = f"{timeout:g}s" if not wait else f"{wait:g}s of tries"
            raise NuclabError(
                f"--url: cannot connect to {url} within {within} ({reason})"
            ) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


class _HttpRun:
    """The open-loop send loop and its trace rows."""

    def __init__(self, cfg: HttpConfig, progress: Progress) -> None:
        self.cfg = cfg
        self.progress = progress
        self.rows: list[tuple] = []
        self.per_second = PerSecond()
        self.in_flight: set[asyncio.Task] = set()
        self.loop = asyncio.get_running_loop()
        self.wall0 = time.time()
        self.t0 = self.loop.time()
        self.last_lag = 0.0

    async def one(self, seq: int, at: float, session: aiohttp.ClientSession) -> None:
        loop, progress = self.loop, self.progress
        start = loop.time()
        status, nbytes, error = 0, 0, ""
        try:
            async with session.request(self.cfg.method, self.cfg.url) as resp:
                body = await resp.read()
                status, nbytes = resp.status, len(body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        end = loop.time()
        if error or status >= 500:
            progress.errors += 1
        if not error:
            progress.completed += 1
            progress.amount += 1.0
            progress.bytes += nbytes
            progress.samples.add(end - start)
            self.per_second.add(end - self.t0)
        self.rows.append(
            (
                seq,
                at,
                self.wall0 + (start - self.t0),
                start - self.t0 - at,
                status,
                end - start,
                nbytes,
                error,
            )
        )

    async def send_all(self, times: Iterator[float]) -> None:
        cfg, loop, progress = self.cfg, self.loop, self.progress
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for seq, at in enumerate(times):
                delay = self.t0 + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                progress.target_rate = cfg.schedule.rate_at(at)
                progress.sent += 1
                lag = max(loop.time() - self.t0 - at, 0.0)
                self.last_lag = lag
                if len(self.in_flight) >= cfg.max_in_flight:
                    progress.errors += 1
                    self.rows.append((seq, at, time.time(), lag, 0, math.nan, 0, "dropped"))
                    continue
                task = loop.create_task(self.one(seq, at, session))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)
            progress.target_rate = 0.0
            if self.in_flight:
                await asyncio.wait(set(self.in_flight), timeout=cfg.timeout + 1)

    def result(self) -> RunResult:
        cfg, progress = self.cfg, self.progress
        duration = cfg.schedule.duration
        # Open loop: the rate is what went out on schedule and was answered. A request sent
        # late stretches the run (the generator could not keep up); a slow answer does not.
        elapsed = duration + self.last_lag
        lags = [r[3] for r in self.rows]
        statuses: dict[str, int] = {}
        for r in self.rows:
            key = str(r[4]) if not r[7] else r[7].split(":")[0]
            statuses[key] = statuses.get(key, 0) + 1
        return RunResult(
            mode="http",
            target=f"{cfg.schedule.mean_rate:g} req/s mean, {cfg.arrivals} arrivals, {duration:g}s",
            unit="req/s",
            target_rate=cfg.schedule.mean_rate,
            achieved_rate=progress.completed / elapsed,
            duration_s=duration,
            elapsed_s=elapsed,
            sent=progress.sent,
            completed=progress.completed,
            errors=progress.errors,
            bytes=progress.bytes,
            messages_per_s=progress.completed / elapsed,
            megabytes_per_s=progress.bytes / elapsed / 1e6,
            latency_s=summarize(progress.samples.values),
            per_second=self.per_second.counts,
            extra={
                "url": cfg.url,
                "arrivals": cfg.arrivals,
                "statuses": statuses,
                "send_lag_p99_s": summarize(lags)["p99"] if lags else None,
                "latency": "request start to full response",
            },
            tolerance=cfg.tolerance,
        )


async def _run(cfg: HttpConfig, progress: Progress) -> RunResult:
    host, port = check_url(cfg.url)
    times = arrival_times(cfg.schedule, cfg.arrivals, cfg.seed)
    await _preflight(host, port, cfg.url, cfg.timeout, cfg.wait_for_target)
    run = _HttpRun(cfg, progress)
    await run.send_all(times)
    if cfg.trace is not None:
        _write_trace(cfg.trace, run.rows)
    return run.result()


def _write_trace(path: Path, rows: list[tuple]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRACE_FIELDS)
        for r in sorted(rows):
            writer.writerow(
                [r[0], f"{r[1]:.6f}", f"{r[2]:.6f}", f"{r[3]:.6f}", r[4], f"{r[5]:.6f}", r[6], r[7]]
            )


def run_http(cfg: HttpConfig, progress: Progress) -> RunResult:
    return asyncio.run(_run(cfg, progress))
