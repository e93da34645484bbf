"""Kafka producer load: messages at the rate a schedule asks for, measured by acknowledgements.

Open loop: the schedule decides how much is due at each moment; the loop hands that much to
librdkafka in batches (``produce_batch``) every millisecond or so, whatever the broker does. The
achieved rate counts only messages the broker acknowledged, over the span from the first to the
last acknowledgement (at least the scheduled duration): a broker that falls behind stretches
that span and shows as a shortfall; a steady delivery delay does not.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from nuclab.errors import NuclabError
from nuclab.loadgen.kafka_common import (
    KafkaLogin,
    check_broker,
    check_size,
    client_config,
    ensure_topic,
)
from nuclab.loadgen.metrics import Progress
from nuclab.loadgen.payload import Payloads, stamp
from nuclab.loadgen.results import RunResult
from nuclab.loadgen.schedule import Schedule
from nuclab.loadgen.stats import PerSecond, summarize

MAX_BATCH = 5_000


@dataclass
class ProduceConfig:
    bootstrap: str
    topic: str
    payloads: Payloads
    schedule: Schedule | None  # None: as fast as possible for `duration`
    duration: float
    unit: str = "msg/s"  # msg/s or Mbit/s
    timeout: float = 10.0
    tolerance: float = 0.02
    partitions: int | None = None
    create_topic: bool = True
    acks: str = "all"
    linger_ms: float = 5.0
    client: dict[str, Any] = field(default_factory=dict)  # extra librdkafka settings
    login: KafkaLogin | None = None


def preflight(cfg: ProduceConfig) -> dict[str, Any]:
    """Broker reachable, topic there (or created), payloads within the limit: before any send."""
    admin = check_broker(cfg.bootstrap, cfg.timeout, cfg.login)
    info = ensure_topic(admin, cfg.topic, cfg.timeout, cfg.partitions, cfg.create_topic)
    check_size("--size", cfg.payloads.max_size, info)
    return {
        "topic": info.name,
        "partitions": info.partitions,
        "topic_created": info.created,
        "max_message_bytes": info.max_message_bytes,
    }


def run_produce(cfg: ProduceConfig, progress: Progress) -> RunResult:
    """Produce for the schedule's duration; return what was acknowledged, and how fast."""
    topic_info = preflight(cfg)
    conf = client_config(cfg.bootstrap, cfg.timeout, cfg.login)
    conf.update(
        {
            "acks": cfg.acks,
            "linger.ms": cfg.linger_ms,
            "message.max.bytes": max(topic_info["max_message_bytes"], 1_000_000),
            "message.timeout.ms": max(int((cfg.duration + cfg.timeout) * 1000), 5000),
            # As much as the Java producer buffers (buffer.memory = 32 MiB): a broker that
            # cannot keep up pushes back within the run instead of after it.
            "queue.buffering.max.kbytes": 32768,
        }
    )
    conf.update(cfg.client)
    run = _ProduceRun(cfg, progress, Producer(conf))
    if cfg.schedule is None:
        run.as_fast_as_possible()
    else:
        run.paced(cfg.schedule)
    elapsed = run.finish()
    return _result(cfg, progress, run.per_second, elapsed, topic_info, run.seq)


class _ProduceRun:
    """The send loop's state: what was queued, what the broker acknowledged and when."""

    def __init__(self, cfg: ProduceConfig, progress: Progress, producer: Producer) -> None:
        self.cfg = cfg
        self.progress = progress
        self.producer = producer
        self.mbit = cfg.unit == "Mbit/s"
        self.per_second = PerSecond()
        self.run_id = random.getrandbits(32)
        self.seq = 0
        self.first_ack: float | None = None
        self.last_ack = 0.0
        self.t0 = time.perf_counter()

    def on_delivery(self, err: Any, msg: Any) -> None:
        progress = self.progress
        if err is not None:
            progress.errors += 1
            return
        t = time.perf_counter() - self.t0
        size = len(msg)
        progress.completed += 1
        progress.bytes += size
        progress.amount += size * 8e-6 if self.mbit else 1.0
        progress.samples.add(msg.latency())
        self.per_second.add(t)
        if self.first_ack is None:
            self.first_ack = t
        self.last_ack = t

    def send(self, batch: list[dict[str, Any]]) -> None:
        producer = self.producer
        while batch:
            queued = producer.produce_batch(self.cfg.topic, batch, on_delivery=self.on_delivery)
            self.progress.sent += queued
            if queued == len(batch):
                return
            batch = [m for m in batch if "_error" in m]  # local queue full: wait, resend
            for m in batch:
                del m["_error"]
            producer.poll(0.001)

    def cost(self, payload: bytes) -> float:
        return len(payload) * 8e-6 if self.mbit else 1.0

    def as_fast_as_possible(self) -> None:
        payloads, clock, deadline = self.cfg.payloads, time.perf_counter, self.cfg.duration
        while clock() - self.t0 < deadline:
            now_ns = time.time_ns()
            batch = []
            for seq in range(self.seq, self.seq + MAX_BATCH // 5):
                batch.append({"value": next(payloads), "key": stamp(self.run_id, seq, now_ns)})
            self.seq += len(batch)
            self.send(batch)
            self.producer.poll(0)

    def paced(self, schedule: Schedule) -> None:
        payloads, clock, producer = self.cfg.payloads, time.perf_counter, self.producer
        nxt = next(payloads)
        cost = self.cost(nxt)
        sent_amount = 0.0
        ended = False
        while not ended:
            now = clock() - self.t0
            if now >= schedule.duration:
                now, ended = schedule.duration, True
            self.progress.target_rate = schedule.rate_at(now)
            due = schedule.amount_due(now) + 1e-9
            batch = []
            now_ns = time.time_ns()
            while sent_amount + cost <= due:
                batch.append({"value": nxt, "key": stamp(self.run_id, self.seq, now_ns)})
                self.seq += 1
                sent_amount += cost
                nxt = next(payloads)
                cost = self.cost(nxt)
                if len(batch) >= MAX_BATCH:
                    self.send(batch)
                    batch = []
            if batch:
                self.send(batch)
            producer.poll(0)
            if not ended:
                wait = schedule.time_of(sent_amount + cost) - (clock() - self.t0)
                if wait > 0.002:
                    producer.poll(min(wait - 0.001, 0.01))
                elif wait > 0:
                    time.sleep(wait)

    def finish(self) -> float:
        """Wait for the acknowledgements; the run's elapsed time (at least its duration)."""
        progress, cfg = self.progress, self.cfg
        progress.target_rate = 0.0
        remaining = self.producer.flush(cfg.timeout)
        if remaining:
            progress.errors += remaining
            self.producer.purge()
            self.producer.flush(0)
        if progress.completed == 0 and progress.sent > 0:
            raise NuclabError(
                f"--bootstrap: the broker at {cfg.bootstrap} acknowledged none of "
                f"{progress.sent:,} messages within {cfg.timeout:g}s"
            )
        # The span of the acknowledgements: a steady delay shifts it, a broker falling behind
        # stretches it. Never shorter than the schedule.
        return max(self.last_ack - (self.first_ack or 0.0), cfg.duration)


def _result(  # noqa: PLR0917 - internal, called once
    cfg: ProduceConfig,
    progress: Progress,
    per_second: PerSecond,
    elapsed: float,
    topic_info: dict[str, Any],
    seq: int,
) -> RunResult:
    schedule = cfg.schedule
    mbit = cfg.unit == "Mbit/s"
    amount = progress.bytes * 8e-6 if mbit else float(progress.completed)
    if schedule is None:
        target, target_rate = f"max for {cfg.duration:g}s", None
    else:
        target_rate = schedule.mean_rate
        target = _describe(schedule, cfg.unit)
    return RunResult(
        mode="kafka-produce",
        target=target,
        unit=cfg.unit,
        target_rate=target_rate,
        achieved_rate=amount / elapsed,
        duration_s=cfg.duration,
        elapsed_s=elapsed,
        sent=seq,
        completed=progress.completed,
        errors=progress.errors,
        bytes=progress.bytes,
        messages_per_s=progress.completed / elapsed,
        megabytes_per_s=progress.bytes / elapsed / 1e6,
        latency_s=summarize(progress.samples.values),
        per_second=per_second.counts,
        extra={**topic_info, "payload": cfg.payloads.source, "latency": "produce to broker ack"},
        tolerance=cfg.tolerance,
    )


def _describe(schedule: Schedule, unit: str) -> str:
    if len(schedule.segments) == 1 and schedule.segments[0].start == schedule.segments[0].end:
        return f"{schedule.mean_rate:g} {unit} for {schedule.duration:g}s"
    parts = [
        f"{s.start:g}" + (f"..{s.end:g}" if s.end != s.start else "") + f":{s.duration:g}s"
        for s in schedule.segments
    ]
    return f"{','.join(parts)} ({unit}, mean {schedule.mean_rate:g})"
