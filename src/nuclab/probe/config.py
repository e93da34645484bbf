"""The probe's settings: flags override the environment the experiment chart gives each pod."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from nuclab.duration import seconds
from nuclab.errors import ValidationError
from nuclab.probe.limit import DEFAULT_RATE
from nuclab.probe.targets import Endpoint, parse_port, parse_target

DEFAULT_PORT = 9402
DEFAULT_METRICS_PORT = 9403
# Discovered peers each probe measures (0 = all): the peer x peer matrix grows with the square
# of the peers, this keeps it linear. Node mode measures every node by default (a lab has few).
DEFAULT_MAX_TARGETS = 16


def env_first(environ: Mapping[str, str], *names: str) -> tuple[str, str | None]:
    """(name, value) of the first of ``names`` set in the environment (the chart's names and
    their aliases), or (first name, None)."""
    for name in names:
        if environ.get(name, "") != "":
            return name, environ[name]
    return names[0], None


def env_number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    *aliases: str,
    duration: bool = False,
) -> float:
    """A number from the environment; ``duration`` also takes 500ms, 5s, 1m, 1h (in seconds)."""
    name, raw = env_first(environ, name, *aliases)
    if raw is None:
        return default
    if duration:
        found = seconds(raw)
        value = float("nan") if found is None else found
    else:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
    if not low <= value <= high:
        what = "a duration (500ms, 5s, 1m) or seconds" if duration else "a number"
        raise ValidationError(name, raw, f"{what} from {low:g} to {high:g}")
    return value


def check_range(field_name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise ValidationError(field_name, value, f"a number from {low:g} to {high:g}")
    return value


@dataclass(slots=True)
class ProbeConfig:
    name: str
    experiment: str = ""
    service: str = ""
    peers: int = 0
    statefulset: str = ""
    targets: list[Endpoint] = field(default_factory=list)
    bind: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    interval: float = 1.0
    timeout: float = 1.0
    tcp_every: int = 10
    rediscover: float = 30.0
    duration: float = 0.0
    node: bool = False
    pushgateway: str = ""
    push_interval: float = 30.0
    csv: str = ""
    window: int = 600
    answer_only: bool = False
    max_targets: int = DEFAULT_MAX_TARGETS
    reply_rate: float = DEFAULT_RATE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--name", help="this probe's name (env POD_NAME, or NODE_NAME with --node; default hostname)")
    a("--experiment", help="experiment name (env NUCLAB_EXPERIMENT)")
    a("--service", help="headless Service DNS name to discover peers (env NUCLAB_SERVICE)")
    a("--peers", type=int, help="number of peers in the experiment (env NUCLAB_PEERS)")
    a(
        "--target",
        action="append",
        default=[],
        metavar="NAME=HOST[:PORT]",
        help="probe this target instead of discovering (repeatable)",
    )
    a(
        "--max-targets",
        type=int,
        help="discovered peers to measure, a well-spread subset; 0 = all "
        f"(env NUCLAB_PROBE_MAX_TARGETS; default {DEFAULT_MAX_TARGETS}, all with --node)",
    )
    a("--answer-only", action="store_true", help="only answer other probes, probe no one")
    a("--bind", default="0.0.0.0", help="address to answer and probe from (default 0.0.0.0)")
    a(
        "--reply-rate",
        type=float,
        default=DEFAULT_RATE,
        help=f"echo answers a second to one source address, 1 to 100000 (default {DEFAULT_RATE})",
    )
    a("--port", help=f"UDP echo + TCP port (env NUCLAB_PROBE_PORT, default {DEFAULT_PORT})")
    a("--metrics-port", help=f"/metrics port, 0 = off (default {DEFAULT_METRICS_PORT})")
    a("--interval", type=float, help="seconds between probes of one target (default 1)")
    a("--timeout", type=float, help="seconds before an unanswered probe counts as lost (1)")
    a("--tcp-every", type=int, help="also time a TCP connect every N rounds, 0 = never (10)")
    a("--rediscover", type=float, default=30.0, help="seconds between DNS discoveries (30)")
    a("--duration", type=float, default=0.0, help="stop after this many seconds (0 = run forever)")
    a("--node", action="store_true", help="node-to-node mode (DaemonSet on the host network)")
    a("--pushgateway", help="node mode: Pushgateway URL (env NUCLAB_PUSHGATEWAY)")
    a("--push-interval", type=float, default=30.0, help="node mode: seconds between pushes (30)")
    a("--csv", help="node mode: write origin,destination,p50_us,p90_us,p99_us here")
    a("--window", type=int, default=600, help="node mode: RTT samples per destination kept (600)")


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> ProbeConfig:
    env = os.environ if environ is None else environ
    node = bool(args.node)
    if node:
        name = args.name or env_first(env, "NODE_NAME", "NUCLAB_NODE_NAME")[1]
    else:
        name = args.name or env_first(env, "POD_NAME", "NUCLAB_POD_NAME")[1]
    name = name or socket.gethostname()
    port = parse_port("--port", args.port or env.get("NUCLAB_PROBE_PORT") or DEFAULT_PORT)
    metrics_raw = (
        args.metrics_port
        if args.metrics_port is not None
        else env.get("NUCLAB_PROBE_METRICS_PORT", DEFAULT_METRICS_PORT)
    )
    metrics_port = 0 if str(metrics_raw) == "0" else parse_port("--metrics-port", metrics_raw)
    peers_raw = args.peers if args.peers is not None else env_number(env, "NUCLAB_PEERS", 0, 0, 1e5)
    peers = int(check_range("--peers", peers_raw, 0, 100_000))
    interval = args.interval
    if interval is None:
        interval = env_number(env, "NUCLAB_PROBE_INTERVAL", 1.0, 0.0005, 3600, duration=True)
    tcp_every = args.tcp_every if args.tcp_every is not None else 10
    max_targets = args.max_targets
    if max_targets is None:
        fallback = 0 if node else DEFAULT_MAX_TARGETS
        max_targets = env_number(env, "NUCLAB_PROBE_MAX_TARGETS", fallback, 0, 100_000)
        if max_targets != int(max_targets):
            raise ValidationError(
                "NUCLAB_PROBE_MAX_TARGETS", env["NUCLAB_PROBE_MAX_TARGETS"], "a whole number"
            )
    cfg = ProbeConfig(
        name=name,
        experiment=args.experiment or env.get("NUCLAB_EXPERIMENT", ""),
        service=args.service or env.get("NUCLAB_SERVICE", ""),
        peers=peers,
        statefulset=env.get("NUCLAB_STATEFULSET", ""),
        targets=[parse_target(t, port) for t in args.target],
        bind=args.bind,
        port=port,
        metrics_port=metrics_port,
        interval=check_range("--interval", interval, 0.0005, 3600),
        timeout=check_range("--timeout", args.timeout if args.timeout else 1.0, 0.001, 60),
        tcp_every=int(check_range("--tcp-every", tcp_every, 0, 1_000_000)),
        rediscover=check_range("--rediscover", args.rediscover, 1, 86400),
        duration=check_range("--duration", args.duration, 0, 1e9),
        node=node,
        pushgateway=args.pushgateway or env.get("NUCLAB_PUSHGATEWAY", ""),
        push_interval=check_range("--push-interval", args.push_interval, 0.1, 86400),
        csv=args.csv or "",
        window=int(check_range("--window", args.window, 1, 1_000_000)),
        answer_only=bool(args.answer_only),
        max_targets=int(check_range("--max-targets", max_targets, 0, 100_000)),
        reply_rate=check_range("--reply-rate", args.reply_rate, 1, 100_000),
    )
    if not cfg.targets and not cfg.service and not cfg.answer_only:
        raise ValidationError(
            "--target/--service",
            "",
            "give --target NAME=HOST[:PORT] or a headless Service (--service, env NUCLAB_SERVICE)",
        )
    if cfg.pushgateway and not cfg.pushgateway.startswith(("http://", "https://")):
        raise ValidationError("--pushgateway", cfg.pushgateway, "an http:// or https:// URL")
    return cfg
