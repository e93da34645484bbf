"""``nuclab loadgen``: Kafka produce/consume and open-loop HTTP load at a measured rate.

Exit codes: 0 the target was held; 4 the run ended short of its target (the results are still
written, the message says by how much); 2 bad input or an unreachable broker/URL, before any load.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nuclab.errors import ValidationError
from nuclab.loadgen.results import TargetMissedError, check_results_path, write_results
from nuclab.loadgen.schedule import Schedule, parse_schedule
from nuclab.loadgen.units import parse_duration, parse_rate, parse_size

if TYPE_CHECKING:  # the clients are imported by the mode that runs, never when the CLI loads
    from nuclab.loadgen.kafka_common import KafkaLogin
    from nuclab.loadgen.metrics import Progress
    from nuclab.loadgen.results import RunResult

UNITS = {"msg": "msg/s", "mbit": "Mbit/s"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "loadgen",
        help="generate Kafka or HTTP load at a target rate and measure what was achieved",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_subparsers(dest="loadgen_mode", metavar="MODE", required=True)

    produce = modes.add_parser("produce", help="produce Kafka messages at a target rate")
    _kafka_args(produce)
    _rate_args(produce, allow_max=True)
    produce.add_argument(
        "--unit",
        choices=sorted(UNITS),
        default="msg",
        help="rate unit: msg = messages/s, mbit = Mbit/s of payload (default msg)",
    )
    size = produce.add_mutually_exclusive_group()
    size.add_argument("--size", default="1024", help="synthetic payload size (default 1024 B)")
    size.add_argument(
        "--payload",
        metavar="PATH",
        help="a file, or a directory whose files are sent in turn (e.g. frames)",
    )
    produce.add_argument("--partitions", type=int, help="partitions if the topic is created")
    produce.add_argument(
        "--no-create-topic",
        action="store_true",
        help="fail if the topic does not exist (default: create it)",
    )
    produce.add_argument("--acks", choices=["0", "1", "all"], default="all")
    produce.add_argument("--linger-ms", type=float, default=5.0)
    produce.add_argument(
        "-X",
        dest="client",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka producer setting (repeatable)",
    )
    _common_args(produce)
    produce.set_defaults(func=_produce)

    consume = modes.add_parser("consume", help="consume and measure end-to-end latency")
    _kafka_args(consume)
    consume.add_argument("--duration", help="stop after this long (e.g. 60s)")
    consume.add_argument("--expect", type=int, help="stop after this many messages; fewer fails")
    consume.add_argument(
        "--idle-timeout",
        default="10s",
        help="stop when nothing arrived for this long (default 10s)",
    )
    consume.add_argument("--group", help="consumer group (default: a new one per run)")
    consume.add_argument(
        "--latest",
        action="store_true",
        help="start at the end of the topic (default: its beginning)",
    )
    _common_args(consume)
    consume.set_defaults(func=_consume)

    http = modes.add_parser("http", help="open-loop HTTP requests at a target rate")
    http.add_argument("--url", required=True)
    _rate_args(http, allow_max=False)
    http.add_argument(
        "--arrivals", default="constant", help="constant or poisson (default constant)"
    )
    http.add_argument("--seed", type=int, help="random seed for Poisson arrivals")
    http.add_argument("--method", default="GET")
    http.add_argument(
        "--max-in-flight",
        type=int,
        default=10_000,
        help="open requests at most; a due request past this is dropped (error)",
    )
    http.add_argument("--trace", metavar="CSV", help="write one row per request here")
    http.add_argument(
        "--wait-for-target",
        metavar="DURATION",
        help="keep trying the first connection this long (e.g. 2m; default: one try)",
    )
    _common_args(http)
    http.set_defaults(func=_http)


def _kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="host:port of the brokers (default $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    p.add_argument("--topic", default="nuclab-load")
    p.add_argument(
        "--kafka-user",
        default=os.environ.get("KAFKA_USERNAME", ""),
        help="SCRAM-SHA-512 user (default $KAFKA_USERNAME; none: an unauthenticated listener)",
    )
    p.add_argument(
        "--kafka-password-file",
        metavar="FILE",
        help="the user's password, read from this file (default $KAFKA_PASSWORD)",
    )


def _kafka_login(args: argparse.Namespace) -> KafkaLogin | None:
    """The Kafka user and its password: from a file or the environment, never the command line."""
    from nuclab.loadgen.kafka_common import KafkaLogin

    if not args.kafka_user:
        if args.kafka_password_file:
            raise ValidationError("--kafka-user", "", "a user name with --kafka-password-file")
        return None
    if args.kafka_password_file:
        try:
            password = Path(args.kafka_password_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationError(
                "--kafka-password-file", args.kafka_password_file, f"a readable file ({exc})"
            ) from None
    else:
        password = os.environ.get("KAFKA_PASSWORD", "")
    if not password:
        raise ValidationError(
            "--kafka-user",
            args.kafka_user,
            "a password too, in $KAFKA_PASSWORD or a --kafka-password-file (not empty)",
        )
    return KafkaLogin(args.kafka_user, password)


def _rate_args(p: argparse.ArgumentParser, *, allow_max: bool) -> None:
    p.add_argument(
        "--rate",
        help="constant target rate" + (", or max (as fast as possible)" if allow_max else ""),
    )
    p.add_argument(
        "--schedule", help="steps/ramps: RATE:DURATION or FROM..TO:DURATION, comma-separated"
    )
    p.add_argument("--duration", help="how long, with --rate (e.g. 30s, 2m)")


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", default="10s", help="connect/ack/response timeout (default 10s)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=2.0,
        help="percent below target still counted as held (default 2)",
    )
    p.add_argument("--results", help="write the results here (.json or .csv)")
    p.add_argument("--pushgateway", help="push metrics to this Pushgateway URL while running")
    p.add_argument("--metrics-port", type=int, help="serve metrics for scraping on this port")
    p.add_argument("--report-interval", default="5s", help="metrics update period (default 5s)")
    p.add_argument(
        "--experiment",
        default=os.environ.get("NUCLAB_EXPERIMENT", ""),
        help="experiment name for the metrics (default $NUCLAB_EXPERIMENT)",
    )


def _schedule(args: argparse.Namespace, *, allow_max: bool) -> tuple[Schedule | None, float]:
    if (args.rate is None) == (args.schedule is None):
        raise ValidationError("--rate/--schedule", None, "exactly one of --rate or --schedule")
    if args.schedule is not None:
        if args.duration is not None:
            raise ValidationError("--duration", args.duration, "no --duration with --schedule")
        sched = parse_schedule(args.schedule)
        return sched, sched.duration
    if args.duration is None:
        raise ValidationError("--duration", None, "a duration with --rate, such as 30s")
    duration = parse_duration("--duration", args.duration)
    if allow_max and str(args.rate).lower() == "max":
        return None, duration
    return Schedule.constant(parse_rate("--rate", args.rate), duration), duration


@dataclass(frozen=True)
class _Common:
    timeout: float
    tolerance: float
    results: Path | None
    interval: float


def _common(args: argparse.Namespace) -> _Common:
    timeout = parse_duration("--timeout", args.timeout)
    if not 0 <= args.tolerance < 100:
        raise ValidationError("--tolerance", args.tolerance, "a percentage from 0 to below 100")
    results = check_results_path(args.results)
    interval = parse_duration("--report-interval", args.report_interval)
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        raise ValidationError("--metrics-port", args.metrics_port, "a TCP port 1-65535")
    return _Common(timeout, args.tolerance / 100.0, results, interval)


def _run(
    args: argparse.Namespace, progress: Progress, common: _Common, work: Callable[[], RunResult]
) -> int:
    """Metrics around ``work``, then the results file, the summary line and the verdict."""
    from nuclab.loadgen.metrics import Reporter

    reporter = Reporter(
        progress,
        pushgateway=args.pushgateway,
        metrics_port=args.metrics_port,
        experiment=args.experiment,
        interval=common.interval,
        timeout=common.timeout,
    )
    reporter.start()
    result: RunResult | None = None
    try:
        result = work()
    finally:
        reporter.finish(result)
    if common.results is not None:
        write_results(result, common.results)
    print(result.summary())
    if not result.held:
        raise TargetMissedError(
            f"target not held: achieved {result.achieved_rate:,.1f} of "
            f"{result.target_rate:,.1f} {result.unit} ({result.shortfall * 100:.1f} % short; "
            f"tolerance {result.tolerance * 100:g} %)"
        )
    expect = result.extra.get("expect")
    if expect and result.extra["unique"] < expect:
        raise TargetMissedError(
            f"expected {expect:,} messages, received {result.extra['unique']:,} distinct "
            f"({expect - result.extra['unique']:,} short)"
        )
    return 0


def _produce(args: argparse.Namespace) -> int:
    from nuclab.loadgen.kafka_produce import ProduceConfig, run_produce
    from nuclab.loadgen.metrics import Progress
    from nuclab.loadgen.payload import Payloads

    schedule, duration = _schedule(args, allow_max=True)
    common = _common(args)
    if args.partitions is not None and args.partitions < 1:
        raise ValidationError("--partitions", args.partitions, "1 or more")
    client = {}
    for item in args.client:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationError("-X", item, "KEY=VALUE, a librdkafka producer setting")
        client[key] = value
    payloads = (
        Payloads.from_path(args.payload)
        if args.payload
        else Payloads.synthetic(parse_size("--size", args.size))
    )
    cfg = ProduceConfig(
        bootstrap=args.bootstrap,
        topic=args.topic,
        payloads=payloads,
        schedule=schedule,
        duration=duration,
        unit=UNITS[args.unit],
        timeout=common.timeout,
        tolerance=common.tolerance,
        partitions=args.partitions,
        create_topic=not args.no_create_topic,
        acks=args.acks,
        linger_ms=args.linger_ms,
        client=client,
        login=_kafka_login(args),
    )
    progress = Progress(mode="kafka-produce", unit=cfg.unit)
    return _run(args, progress, common, lambda: run_produce(cfg, progress))


def _consume(args: argparse.Namespace) -> int:
    from nuclab.loadgen.kafka_consume import ConsumeConfig, run_consume
    from nuclab.loadgen.metrics import Progress

    common = _common(args)
    duration = parse_duration("--duration", args.duration) if args.duration else None
    if args.expect is not None and args.expect < 1:
        raise ValidationError("--expect", args.expect, "1 or more messages")
    cfg = ConsumeConfig(
        bootstrap=args.bootstrap,
        topic=args.topic,
        duration=duration,
        expect=args.expect,
        idle_timeout=parse_duration("--idle-timeout", args.idle_timeout),
        group=args.group,
        from_beginning=not args.latest,
        timeout=common.timeout,
        login=_kafka_login(args),
    )
    progress = Progress(mode="kafka-consume", unit="msg/s")

    def work() -> RunResult:
        result = run_consume(cfg, progress)
        result.tolerance = common.tolerance
        return result

    return _run(args, progress, common, work)


def _http(args: argparse.Namespace) -> int:
    from nuclab.loadgen.http_load import ARRIVALS, HttpConfig, check_url, run_http
    from nuclab.loadgen.metrics import Progress

    schedule, _ = _schedule(args, allow_max=False)
    common = _common(args)
    check_url(args.url)
    if args.arrivals not in ARRIVALS:
        raise ValidationError("--arrivals", args.arrivals, f"one of {', '.join(ARRIVALS)}")
    if args.max_in_flight < 1:
        raise ValidationError("--max-in-flight", args.max_in_flight, "1 or more")
    trace = Path(args.trace) if args.trace else None
    if trace is not None and not trace.parent.exists():
        raise ValidationError("--trace", args.trace, "a file in an existing directory")
    wait = 0.0
    if args.wait_for_target is not None:
        wait = parse_duration("--wait-for-target", args.wait_for_target)
    cfg = HttpConfig(
        url=args.url,
        schedule=schedule,
        arrivals=args.arrivals,
        method=args.method.upper(),
        timeout=common.timeout,
        wait_for_target=wait,
        tolerance=common.tolerance,
        max_in_flight=args.max_in_flight,
        seed=args.seed,
        trace=trace,
    )
    progress = Progress(mode="http", unit="req/s")
    return _run(args, progress, common, lambda: run_http(cfg, progress))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
