"""The probe's pure parts: wire format, targets and discovery, settings, node percentiles."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nuclab.errors import ValidationError
from nuclab.probe import config, nodes, wire
from nuclab.probe.targets import Endpoint, discover, parse_target, pod_names, ring_neighbours


def test_echo_answer_carries_the_sequence_and_the_responder_name() -> None:
    answer = wire.reply_to(wire.request(42), b"nuc-2")
    assert answer is not None
    assert wire.parse_reply(answer) == (42, "nuc-2")


@pytest.mark.parametrize("packet", [b"", b"NLQ1", b"NLR1" + b"\0" * 8, b"GET / HTTP/1.1\r\n"])
def test_only_well_formed_requests_are_answered(packet: bytes) -> None:
    assert wire.reply_to(packet, b"x") is None


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
    ],
)
def test_bad_settings_name_the_field(argv: list[str], env: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        config.from_args(_args(*argv), env)
    assert exc.value.field == field


def test_quantiles_interpolate_like_numpy() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert nodes.quantile(values, 0.5) == pytest.approx(50.5)
    assert nodes.quantile(values, 0.9) == pytest.approx(90.1)
    assert nodes.quantile(values, 0.99) == pytest.approx(99.01)


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
