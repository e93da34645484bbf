"""The gossip peer's settings and frame format."""

from __future__ import annotations

import argparse
import re

import pytest

from nuclab import peer
from nuclab.errors import ValidationError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    peer.add_arguments(parser)
    return parser.parse_args(list(argv))


CHART_ENV = {
    "POD_NAME": "nuclab-exp-purple-0",
    "NUCLAB_EXPERIMENT": "purple",
    "NUCLAB_PEERS": "5",
    "NUCLAB_SERVICE": "nuclab-exp-purple",
    "NUCLAB_CONNECT_TO": "5",
    "NUCLAB_MSG_SIZE": "1440",
    "NUCLAB_MSG_RATE": "2000",
    "NUCLAB_PARAM_TOPIC": "blocks",
}


def test_settings_come_from_the_chart_environment() -> None:
    cfg = peer.from_args(_args(), CHART_ENV)
    assert (cfg.name, cfg.experiment, cfg.peers, cfg.service) == (
        "nuclab-exp-purple-0", "purple", 5, "nuclab-exp-purple",
    )  # fmt: skip
    assert (cfg.connect_to, cfg.msg_size, cfg.msg_rate) == (5, 1440, 2000.0)
    assert cfg.params == {"topic": "blocks"}
    assert (cfg.port, cfg.metrics_port) == (4001, 9401)


def test_flags_override_the_environment() -> None:
    cfg = peer.from_args(_args("--msg-size", "100", "--connect-to", "1"), CHART_ENV)
    assert (cfg.msg_size, cfg.connect_to) == (100, 1)


@pytest.mark.parametrize(
    ("argv", "env", "field"),
    [
        ([], {}, "--peer/--service"),
        (["--service", "s"], {"NUCLAB_MSG_SIZE": "-1"}, "NUCLAB_MSG_SIZE"),
        (["--service", "s"], {"NUCLAB_MSG_RATE": "fast"}, "NUCLAB_MSG_RATE"),
        (["--service", "s", "--msg-size", str(32 * 2**20)], {}, "--msg-size"),
        (["--peer", "x=h:0"], {}, "--peer"),
    ],
)
def test_bad_settings_name_the_field(argv: list[str], env: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        peer.from_args(_args(*argv), env)
    assert exc.value.field == field


def test_frame_round_trip() -> None:
    frame = peer.encode(b"p1", 7, 123, b"hello")
    magic, size, seq, sent, olen = peer.HEADER.unpack_from(frame)
    assert (magic, size, seq, sent, olen) == (peer.MAGIC, 5, 7, 123, 2)
    assert frame[peer.HEADER.size :] == b"p1hello"


def test_log_time_is_rfc3339_utc_with_microseconds() -> None:
    assert peer.rfc3339(1_758_369_429_123_456_789) == "2025-09-20T11:57:09.123456Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", peer.rfc3339(0))


def test_the_experiment_charts_names_are_understood_too() -> None:
    """charts/experiment passes NUCLAB_POD_NAME, NUCLAB_PORT, NUCLAB_METRICS_PORT and
    NUCLAB_MSG_INTERVAL_MS; they win over the documented aliases."""
    env = {
        "NUCLAB_POD_NAME": "nuclab-exp-blue-2", "NUCLAB_SERVICE": "s", "NUCLAB_PORT": "7000",
        "NUCLAB_METRICS_PORT": "9464", "NUCLAB_MSG_INTERVAL_MS": "250",
        "NUCLAB_STATEFULSET": "nuclab-exp-blue",
    }  # fmt: skip
    cfg = peer.from_args(_args(), env)
    assert (cfg.name, cfg.port, cfg.metrics_port, cfg.msg_rate) == (
        "nuclab-exp-blue-2",
        7000,
        9464,
        250.0,
    )
    assert cfg.statefulset == "nuclab-exp-blue"
