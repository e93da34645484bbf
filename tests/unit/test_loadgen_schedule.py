"""Rate schedules: parsing, what is due when, and the inverse used to pace sends."""

from __future__ import annotations

import itertools
import math

import pytest

from nuclab.errors import ValidationError
from nuclab.loadgen.http_load import arrival_times
from nuclab.loadgen.schedule import Schedule, parse_schedule
from nuclab.loadgen.units import parse_duration, parse_size


def test_steps_and_ramp_parse_into_segments() -> None:
    sched = parse_schedule("1000:10s, 100..2000:30s,500:1m")
    assert [(s.start, s.end, s.duration) for s in sched.segments] == [
        (1000, 1000, 10),
        (100, 2000, 30),
        (500, 500, 60),
    ]
    assert sched.duration == 100
    assert sched.total == pytest.approx(1000 * 10 + (100 + 2000) / 2 * 30 + 500 * 60)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1000",
        "1000:",
        ":10s",
        "0:10s",
        "-5:10s",
        "abc:10s",
        "100..0:5s",
        "100:0s",
        "100:10x",
        "100..:5s",
        "1000:10s,,",
        "nan:1s",
        "inf:1s",
    ],
)
def test_bad_schedules_are_rejected_with_the_allowed_form(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_schedule(text)
    assert "--schedule" in str(err.value)
    assert "RATE:DURATION" in str(err.value)


def test_amount_due_integrates_the_rate() -> None:
    sched = parse_schedule("100:2s,100..300:2s")
    assert sched.amount_due(0) == 0
    assert sched.amount_due(1) == pytest.approx(100)
    assert sched.amount_due(2) == pytest.approx(200)
    assert sched.amount_due(3) == pytest.approx(200 + 100 + 50 / 1)  # 100*1 + 100*1^2/(2*2)*2
    assert sched.amount_due(4) == pytest.approx(600)
    assert sched.amount_due(99) == pytest.approx(600)
    assert sched.rate_at(3) == pytest.approx(200)
    assert sched.rate_at(5) == 0


@pytest.mark.parametrize("amount", [0, 1, 57.5, 199.9, 200, 350, 599.99])
def test_time_of_inverts_amount_due(amount: float) -> None:
    sched = parse_schedule("100:2s,100..300:2s")
    assert sched.amount_due(sched.time_of(amount)) == pytest.approx(amount, abs=1e-6)


def test_time_of_past_the_end_is_infinite() -> None:
    assert math.isinf(Schedule.constant(10, 1).time_of(10.5))


def test_constant_arrivals_are_evenly_spaced_and_count_the_total() -> None:
    times = list(arrival_times(Schedule.constant(50, 2), "constant", None))
    assert len(times) == 100
    assert times[:3] == pytest.approx([0, 0.02, 0.04])


def test_poisson_arrivals_keep_the_mean_rate_and_are_seeded() -> None:
    sched = Schedule.constant(1000, 20)
    a = list(arrival_times(sched, "poisson", 7))
    assert a == list(arrival_times(sched, "poisson", 7))
    assert len(a) == pytest.approx(20_000, rel=0.03)
    gaps = [y - x for x, y in itertools.pairwise(a)]
    mean = sum(gaps) / len(gaps)
    var = sum((g - mean) ** 2 for g in gaps) / len(gaps)
    assert mean == pytest.approx(0.001, rel=0.05)
    assert math.sqrt(var) / mean == pytest.approx(1.0, rel=0.1)  # exponential: CV = 1


def test_units() -> None:
    assert parse_duration("d", "500ms") == 0.5
    assert parse_duration("d", "2m") == 120
    assert parse_duration("d", "1.5") == 1.5
    assert parse_size("s", "100KiB") == 102400
    assert parse_size("s", "1MiB") == 1048576
    for bad in ("0", "-1s", "10 years"):
        with pytest.raises(ValidationError):
            parse_duration("--duration", bad)
    for bad in ("0", "1.5KiB", "big"):
        with pytest.raises(ValidationError):
            parse_size("--size", bad)
