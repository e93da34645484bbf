"""One duration grammar: the load generator's flags and the probe's environment read a
duration the same way (issue 11 found two parsers with two grammars)."""

from __future__ import annotations

import pytest

from nuclab.errors import ValidationError
from nuclab.loadgen.units import parse_duration
from nuclab.probe.config import env_number

GOOD = {"500ms": 0.5, "30s": 30, "2m": 120, "1h": 3600, "12.5": 12.5, ".5": 0.5, " 5 s ": 5}
BAD = ["", "5 minutes", "1e3", "5.", "-1s", "inf", "nan", "1d", "s"]


def probe_interval(text: str) -> float:
    env = {"NUCLAB_PROBE_INTERVAL": text}
    return env_number(env, "NUCLAB_PROBE_INTERVAL", 1.0, 0.0005, 3600, duration=True)


@pytest.mark.parametrize(("text", "expected"), sorted(GOOD.items()))
def test_both_read_a_duration_alike(text: str, expected: float) -> None:
    assert parse_duration("--duration", text) == pytest.approx(expected)
    assert probe_interval(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", BAD)
def test_both_refuse_what_is_no_duration(text: str) -> None:
    with pytest.raises(ValidationError) as loadgen:
        parse_duration("--duration", text)
    assert loadgen.value.field == "--duration"
    if text == "":
        return  # an empty variable is an unset one for the probe: its default
    with pytest.raises(ValidationError) as probe:
        probe_interval(text)
    assert probe.value.field == "NUCLAB_PROBE_INTERVAL"
