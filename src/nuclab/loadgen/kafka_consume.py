"""Kafka consumer: end-to-end latency (send stamp in the key to receipt) and throughput.

It stops after ``duration``, after ``expect`` messages, or when nothing arrived for
``idle_timeout`` once messages were flowing. Sequence numbers in the keys tell what was lost
or duplicated, per producer run.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message

from nuclab.errors import NuclabError
from nuclab.loadgen.kafka_common import KafkaLogin, check_broker, client_config, ensure_topic
from nuclab.loadgen.metrics import Progress
from nuclab.loadgen.payload import read_stamp
from nuclab.loadgen.results import RunResult
from nuclab.loadgen.stats import PerSecond, summarize

# Refusals by the broker's ACLs, and the option that chose what was refused.
_REFUSED = {
    KafkaError.GROUP_AUTHORIZATION_FAILED: "--group",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "--topic",
}


@dataclass
class ConsumeConfig:
    bootstrap: str
    topic: str
    duration: float | None = None
    expect: int | None = None
    idle_timeout: float = 10.0
    group: str | None = None
    from_beginning: bool = True
    timeout: float = 10.0
    login: KafkaLogin | None = None


def run_consume(cfg: ConsumeConfig, progress: Progress) -> RunResult:
    admin = check_broker(cfg.bootstrap, cfg.timeout, cfg.login)
    ensure_topic(admin, cfg.topic, cfg.timeout, None, create=True)
    conf = client_config(cfg.bootstrap, cfg.timeout, cfg.login)
    conf.update(
        {
            # A new group per run, named after the topic: a Kafka user whose ACLs allow a
            # prefix of topics and groups (docs/tenancy.md) may use it.
            "group.id": cfg.group or f"{cfg.topic}.loadgen-{uuid.uuid4().hex[:12]}",
            "auto.offset.reset": "earliest" if cfg.from_beginning else "latest",
            "enable.auto.commit": True,
            "fetch.wait.max.ms": 10,
        }
    )
    consumer = Consumer(conf)
    consumer.subscribe([cfg.topic])
    tally = _Tally(progress)
    try:
        while not tally.done(cfg):
            for msg in consumer.consume(num_messages=1000, timeout=0.05):
                tally.add(msg)
    finally:
        consumer.close()
    if tally.received == 0 and cfg.expect:
        raise NuclabError(
            f"--expect: no message arrived on topic {cfg.topic!r} "
            f"within {cfg.idle_timeout + cfg.timeout:g}s"
        )
    return tally.result(cfg)


class _Tally:
    """What arrived: counts, sequence numbers per producer run, latencies, timing."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seen: dict[int, set[int]] = {}
        self.received = self.duplicates = self.unstamped = 0
        self.per_second = PerSecond()
        self.t0 = time.perf_counter()
        self.first: float | None = None
        self.last: float | None = None

    def done(self, cfg: ConsumeConfig) -> bool:
        now = time.perf_counter()
        if cfg.duration is not None:
            return now - self.t0 >= cfg.duration
        if cfg.expect is not None and self.received >= cfg.expect:
            return True
        if self.last is None:
            return now - self.t0 > cfg.idle_timeout + cfg.timeout
        return now - self.last > cfg.idle_timeout

    def add(self, msg: Message) -> None:
        progress = self.progress
        err = msg.error()
        if err is not None:
            if err.code() in _REFUSED:
                field = _REFUSED[err.code()]
                raise NuclabError(
                    f"{field}: the broker refused this Kafka user ({err.str()}): its ACLs "
                    "allow only the topics and groups of its own group (docs/tenancy.md)"
                )
            if err.code() != KafkaError._PARTITION_EOF:
                progress.errors += 1
            return
        t_ns = time.time_ns()
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last
        self.received += 1
        progress.completed += 1
        progress.bytes += len(msg)
        progress.amount += 1.0
        self.per_second.add(self.last - self.t0)
        info = read_stamp(msg.key())
        if info is None:
            self.unstamped += 1
            return
        run_id, seq, sent_ns = info
        seqs = self.seen.setdefault(run_id, set())
        if seq in seqs:
            self.duplicates += 1
        else:
            seqs.add(seq)
        progress.samples.add((t_ns - sent_ns) / 1e9)

    def result(self, cfg: ConsumeConfig) -> RunResult:
        progress = self.progress
        end = self.last if self.last is not None else time.perf_counter()
        elapsed = end - self.t0
        span = end - self.first if self.first is not None else 0.0
        rate_span = span if span > 0 else max(elapsed, 1e-9)
        unique = sum(len(s) for s in self.seen.values())
        return RunResult(
            mode="kafka-consume",
            target=f"expect {cfg.expect}" if cfg.expect else "consume",
            unit="msg/s",
            target_rate=None,
            achieved_rate=self.received / rate_span,
            duration_s=cfg.duration or elapsed,
            elapsed_s=elapsed,
            completed=self.received,
            errors=progress.errors,
            bytes=progress.bytes,
            messages_per_s=self.received / rate_span,
            megabytes_per_s=progress.bytes / rate_span / 1e6,
            latency_s=summarize(progress.samples.values),
            per_second=self.per_second.counts,
            extra={
                "topic": cfg.topic,
                "expect": cfg.expect,
                "unique": unique,
                "duplicates": self.duplicates,
                # Sequence numbers start at 0 per producer run: gaps below the highest seen.
                "missing": sum(max(s) + 1 - len(s) for s in self.seen.values() if s),
                "unstamped": self.unstamped,
                "producer_runs": len(self.seen),
                "latency": "end to end: producer send stamp to consumer receipt",
            },
        )
