"""The probe's pure parts: wire format, targets and discovery, settings, node percentiles."""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nuclab.errors import ValidationError
from nuclab.histogram import quantile
from nuclab.probe import config, nodes, wire
from nuclab.probe.limit import ReplyLimiter
from nuclab.probe.targets import (
    Endpoint,
    discover,
    parse_target,
    pod_names,
    ring_neighbours,
    select_from_outside,
    select_targets,
    spread_offsets,
)


def test_echo_answer_carries_the_sequence_and_the_responder_name() -> None:
    answer = wire.reply_to(wire.request(42), b"nuc-2")
    assert answer is not None
    assert wire.parse_reply(answer) == (42, "nuc-2")


@pytest.mark.parametrize("packet", [b"", b"NLQ1", b"NLR1" + b"\0" * 8, b"GET / HTTP/1.1\r\n"])
def test_only_well_formed_requests_are_answered(packet: bytes) -> None:
    assert wire.reply_to(packet, b"x") is None


def test_an_answer_is_never_larger_than_its_request() -> None:
    """No amplification: a request with a forged source gets back at most what it carried, even
    from a responder with the longest name."""
    longest = b"n" * wire.MAX_NAME
    full = wire.request(7)
    assert wire.parse_reply(wire.reply_to(full, longest) or b"") == (7, longest.decode())
    for size in (12, 13, 40, len(full)):
        answer = wire.reply_to(full[:size], longest)
        assert answer is not None and len(answer) <= size, size
    assert wire.reply_to(full + b"\0", longest) is None  # longer than any request: not one


def test_parse_target_forms() -> None:
    assert parse_target("b=10.0.0.2:9", 7) == Endpoint("b", "10.0.0.2", 9)
    assert parse_target("b=10.0.0.2", 7) == Endpoint("b", "10.0.0.2", 7)
    assert parse_target("10.0.0.2", 7) == Endpoint(None, "10.0.0.2", 7)


@pytest.mark.parametrize("text", ["b=", "=10.0.0.1", "b=h:0", "b=h:99999", "b=h:x"])
def test_parse_target_rejects_bad_input_naming_the_flag(text: str) -> None:
    with pytest.raises(ValidationError, match="--target"):
        parse_target(text, 7)


def test_discovery_prefers_per_pod_names_and_skips_itself() -> None:
    table = {
        "nuclab-exp-e-0.svc": ["10.0.0.10"],
        "nuclab-exp-e-2.svc": ["10.0.0.12"],  # -1 is ourselves, -3 not up yet
        "svc": ["10.0.0.10", "10.0.0.11", "10.0.0.12"],
    }
    found = discover(
        experiment="e", service="svc", peers=4, self_name="nuclab-exp-e-1", port=9,
        resolve=lambda h: table.get(h, []),
    )  # fmt: skip
    assert found == [
        Endpoint("nuclab-exp-e-0", "10.0.0.10", 9),
        Endpoint("nuclab-exp-e-2", "10.0.0.12", 9),
    ]


def test_discovery_falls_back_to_service_records_with_names_learned_later() -> None:
    found = discover(
        experiment="", service="svc", peers=0, self_name="x", port=9,
        resolve=lambda h: ["10.0.0.1", "10.0.0.2"] if h == "svc" else [],
    )  # fmt: skip
    assert found == [Endpoint(None, "10.0.0.1", 9), Endpoint(None, "10.0.0.2", 9)]
    assert pod_names("purple", 2) == ["nuclab-exp-purple-0", "nuclab-exp-purple-1"]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_ring_neighbours_always_connect_every_peer(count: int) -> None:
    peers = [f"p{i}" for i in range(7)]
    edges = {(p, q) for p in peers for q in ring_neighbours(p, [x for x in peers if x != p], count)}
    reached, todo = {"p0"}, ["p0"]
    while todo:
        p = todo.pop()
        for a, b in edges:
            for x, y in ((a, b), (b, a)):
                if x == p and y not in reached:
                    reached.add(y)
                    todo.append(y)
    assert reached == set(peers)
    assert all(len(ring_neighbours(p, peers, count)) == count for p in peers)


@pytest.mark.parametrize(("peers", "bound"), [(2, 16), (17, 16), (18, 16), (50, 16), (200, 16),
                                              (200, 5), (200, 1), (31, 0), (1, 16)])  # fmt: skip
def test_target_selection_is_bounded_spread_and_covers_every_peer(peers: int, bound: int) -> None:
    chosen = {i: select_targets(i, peers, bound) for i in range(peers)}
    want = peers - 1 if bound == 0 else min(bound, peers - 1)
    measured_by: dict[int, int] = dict.fromkeys(range(peers), 0)
    for i, targets in chosen.items():
        assert len(targets) == len(set(targets)) == want  # bounded, no duplicates
        assert i not in targets and all(0 <= t < peers for t in targets)
        for t in targets:
            measured_by[t] += 1
    # Every peer is the target of exactly as many peers as each one measures (no blind spot,
    # no hot spot), and the ring neighbours are always among them.
    assert set(measured_by.values()) <= {want}
    if peers > 1 and want:
        assert all((i + 1) % peers in chosen[i] for i in range(peers))
    # Deterministic: the same answer every time, whoever asks.
    assert chosen == {i: select_targets(i, peers, bound) for i in range(peers)}


def test_target_selection_strides_reach_across_the_ring() -> None:
    offsets = spread_offsets(200, 16)
    assert offsets[:8] == list(range(1, 9))  # the 8 next neighbours
    far = offsets[8:]
    assert len(far) == 8 and far == sorted(far) and far[-1] > 180
    gaps = [b - a for a, b in itertools.pairwise(far)]
    assert max(gaps) - min(gaps) <= 1  # evenly strided
    # The graph "i measures i+d" has a small diameter: every peer reaches every other in few hops.
    hops, frontier, seen = 0, {0}, {0}
    while len(seen) < 200:
        frontier = {(p + d) % 200 for p in frontier for d in offsets} - seen
        seen |= frontier
        hops += 1
    assert hops <= 3


def test_a_prober_outside_the_peers_gets_the_same_bounded_spread() -> None:
    picked = select_from_outside("somebody", 100, 16)
    assert len(picked) == len(set(picked)) == 16
    assert picked == select_from_outside("somebody", 100, 16)
    assert sorted(select_from_outside("somebody", 10, 0)) == list(range(10))


def test_discovery_resolves_only_the_bounded_targets() -> None:
    asked: list[str] = []

    def resolve(host: str) -> list[str]:
        asked.append(host)
        return ["10.0.0.1"]

    found = discover(
        experiment="e", service="svc", peers=100, self_name="nuclab-exp-e-0", port=9,
        max_targets=4, resolve=resolve,
    )  # fmt: skip
    names = [e.name for e in found]
    assert names == [f"nuclab-exp-e-{i}" for i in sorted(select_targets(0, 100, 4))]
    assert len(asked) == 4  # 4 DNS lookups, not 99
    # The Service's A records (names unknown) are bounded the same way.
    ips = [f"10.0.1.{i}" for i in range(40)]
    found = discover(
        experiment="", service="svc", peers=0, self_name="x", port=9, max_targets=6,
        resolve=lambda h: ips if h == "svc" else [],
    )  # fmt: skip
    assert len(found) == 6 and len({e.host for e in found}) == 6


def test_max_targets_defaults_to_16_all_for_nodes_and_comes_from_the_chart() -> None:
    assert config.from_args(_args("--service", "s"), {}).max_targets == 16
    assert config.from_args(_args("--node", "--service", "s"), {}).max_targets == 0
    env = {"NUCLAB_PROBE_MAX_TARGETS": "0"}
    assert config.from_args(_args("--service", "s"), env).max_targets == 0
    assert config.from_args(_args("--service", "s", "--max-targets", "3"), env).max_targets == 3


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_come_from_the_chart_environment_and_flags_override() -> None:
    env = {
        "POD_NAME": "nuclab-exp-purple-3", "NUCLAB_EXPERIMENT": "purple", "NUCLAB_PEERS": "5",
        "NUCLAB_SERVICE": "nuclab-exp-purple-headless", "NUCLAB_PROBE_INTERVAL": "2",
    }  # fmt: skip
    cfg = config.from_args(_args(), env)
    assert (cfg.name, cfg.experiment, cfg.peers, cfg.service) == (
        "nuclab-exp-purple-3", "purple", 5, "nuclab-exp-purple-headless",
    )  # fmt: skip
    assert (cfg.interval, cfg.port, cfg.metrics_port) == (2.0, 9402, 9403)
    cfg = config.from_args(_args("--experiment", "blue", "--interval", "0.5", "--peers", "2"), env)
    assert (cfg.experiment, cfg.interval, cfg.peers) == ("blue", 0.5, 2)


def test_node_mode_names_itself_after_the_node() -> None:
    cfg = config.from_args(
        _args("--node", "--service", "s"), {"NODE_NAME": "nuc-1", "POD_NAME": "p"}
    )
    assert cfg.name == "nuc-1" and cfg.node


@pytest.mark.parametrize(
    ("argv", "env", "field"),
    [
        ([], {}, "--target/--service"),
        (["--service", "s", "--interval", "0"], {}, "--interval"),
        (["--service", "s"], {"NUCLAB_PEERS": "many"}, "NUCLAB_PEERS"),
        (["--service", "s", "--port", "70000"], {}, "--port"),
        (["--service", "s", "--pushgateway", "pgw:9091"], {}, "--pushgateway"),
        (["--service", "s", "--max-targets", "-1"], {}, "--max-targets"),
        (["--service", "s", "--reply-rate", "0"], {}, "--reply-rate"),
        (["--service", "s"], {"NUCLAB_PROBE_MAX_TARGETS": "2.5"}, "NUCLAB_PROBE_MAX_TARGETS"),
        (["--service", "s"], {"NUCLAB_PROBE_MAX_TARGETS": "lots"}, "NUCLAB_PROBE_MAX_TARGETS"),
    ],
)
def test_bad_settings_name_the_field(argv: list[str], env: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        config.from_args(_args(*argv), env)
    assert exc.value.field == field


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_replies_to_one_source_are_held_to_the_rate_and_others_are_answered() -> None:
    clock = Clock()
    limiter = ReplyLimiter(10, clock=clock)
    # a flood of 1000 requests in one second: a full bucket (10), then the 9 more the 999 ms
    # after the first refill
    answered = 0
    for _ in range(1000):
        clock.now += 0.001
        answered += limiter.allow("10.0.0.9")
    assert answered == 19 and limiter.refused == 981
    assert limiter.allow("10.0.0.2")  # another source keeps its own bucket
    clock.now += 0.1  # a tenth of a second refills one answer, not more
    assert limiter.allow("10.0.0.9") and not limiter.allow("10.0.0.9")


def test_a_prober_within_the_rate_is_always_answered() -> None:
    clock = Clock()
    limiter = ReplyLimiter(200, clock=clock)
    for _ in range(2000):  # one request every 5 ms for 10 s
        clock.now += 0.005
        assert limiter.allow("10.0.0.1")


def test_many_forged_sources_are_bounded_by_the_sources_remembered() -> None:
    clock = Clock()
    limiter = ReplyLimiter(5, sources=3, clock=clock)
    assert [limiter.allow(f"10.0.0.{i}") for i in range(5)] == [True] * 3 + [False] * 2
    clock.now += 0.5  # the oldest's bucket is not full again yet: still no room
    assert not limiter.allow("10.0.0.8")
    clock.now += 0.5  # now it is: the new source takes its place
    assert limiter.allow("10.0.0.8")
    assert len(limiter._buckets) == 3


def test_quantiles_interpolate_like_numpy() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert quantile(values, 0.5) == pytest.approx(50.5)
    assert quantile(values, 0.9) == pytest.approx(90.1)
    assert quantile(values, 0.99) == pytest.approx(99.01)


def test_node_csv_has_the_reference_shape(tmp_path: Path) -> None:
    window = nodes.LatencyWindow(size=3)
    for v in (0.001, 0.002, 0.003, 0.004):  # the oldest falls out of the window
        window.add("nuc-2", v)
    path = tmp_path / "sub" / "rtt.csv"
    nodes.write_csv(path, nodes.csv_rows("nuc-1", window.percentiles()))
    assert path.read_text().splitlines() == [
        "origin,destination,p50_us,p90_us,p99_us",
        "nuc-1,nuc-2,3000,3800,3980",
    ]
    assert [p.name for p in path.parent.iterdir()] == ["rtt.csv"]


def test_the_experiment_charts_names_are_understood_too() -> None:
    """charts/experiment passes NUCLAB_POD_NAME, NUCLAB_STATEFULSET and durations like 5s."""
    env = {
        "NUCLAB_POD_NAME": "nuclab-exp-blue-1", "NUCLAB_EXPERIMENT": "blue",
        "NUCLAB_STATEFULSET": "nuclab-exp-blue", "NUCLAB_SERVICE": "nuclab-exp-blue.nuclab.svc",
        "NUCLAB_PROBE_INTERVAL": "500ms",
    }  # fmt: skip
    cfg = config.from_args(_args(), env)
    assert (cfg.name, cfg.statefulset, cfg.interval) == (
        "nuclab-exp-blue-1",
        "nuclab-exp-blue",
        0.5,
    )
    assert config.from_args(_args(), {**env, "NUCLAB_PROBE_INTERVAL": "1m"}).interval == 60
    with pytest.raises(ValidationError, match="NUCLAB_PROBE_INTERVAL: '5 minutes'"):
        config.from_args(_args(), {**env, "NUCLAB_PROBE_INTERVAL": "5 minutes"})
    assert pod_names("x", 2, "custom-sts") == ["custom-sts-0", "custom-sts-1"]


def test_a_probe_that_finds_itself_among_ip_only_targets_keeps_probing_the_others() -> None:
    # The node probe discovers its Service's addresses, its own among them; the reply that tells
    # it so drops that target mid-round (on the simulated lab's real nodes this crashed it).
    from nuclab.net import free_port

    me, other = free_port(), free_port()
    answer = subprocess.Popen(  # the other probe only answers
        [sys.executable, "-m", "nuclab.probe", "--name", "b", "--answer-only", "--bind",
         "127.0.0.1", "--port", str(other), "--metrics-port", "0"],
    )  # fmt: skip
    try:
        time.sleep(0.5)
        run = subprocess.run(
            [sys.executable, "-m", "nuclab.probe", "--name", "a", "--bind", "127.0.0.1",
             "--port", str(me), "--metrics-port", "0", "--interval", "0.05", "--duration", "3",
             "--target", f"127.0.0.1:{me}", "--target", f"127.0.0.1:{other}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    finally:
        answer.terminate()
        answer.wait()
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
