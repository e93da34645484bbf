"""Rate schedules: constant, steps and linear ramps, as one piecewise-linear rate over time.

Text form (``--schedule``): segments ``RATE:DURATION`` (a step held for DURATION) or
``FROM..TO:DURATION`` (a linear ramp), separated by commas, e.g. ``1000:10s,2000:10s`` or
``100..5000:30s,5000:1m``. Rates are in the run's unit (messages/s, Mbit/s or requests/s).

The generator is open-loop: what is due at time ``t`` is ``amount_due(t)``, the integral of the
rate from 0 to ``t``, whatever happened to earlier sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nuclab.errors import ValidationError
from nuclab.loadgen.units import parse_duration, parse_rate

SCHEDULE_ALLOWED = (
    "comma-separated segments RATE:DURATION (a step) or FROM..TO:DURATION (a ramp) "
    "with rates above 0, e.g. 1000:10s,2000:10s or 100..5000:30s"
)


@dataclass(frozen=True)
class Segment:
    """A rate going linearly from ``start`` to ``end`` (per second) over ``duration`` seconds."""

    start: float
    end: float
    duration: float

    def amount(self, t: float) -> float:
        """What is due ``t`` seconds into this segment (0 <= t <= duration)."""
        return self.start * t + (self.end - self.start) * t * t / (2.0 * self.duration)

    @property
    def total(self) -> float:
        return (self.start + self.end) * self.duration / 2.0


@dataclass(frozen=True)
class Schedule:
    """A sequence of segments; times are seconds since the start of the run."""

    segments: tuple[Segment, ...]

    @classmethod
    def constant(cls, rate: float, duration: float) -> Schedule:
        return cls((Segment(rate, rate, duration),))

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def total(self) -> float:
        """What the whole schedule asks for (messages, bits or requests)."""
        return sum(s.total for s in self.segments)

    @property
    def mean_rate(self) -> float:
        return self.total / self.duration

    @property
    def peak_rate(self) -> float:
        return max(max(s.start, s.end) for s in self.segments)

    def rate_at(self, t: float) -> float:
        """The target rate at ``t`` (0 after the end)."""
        for seg in self.segments:
            if t < seg.duration:
                return seg.start + (seg.end - seg.start) * t / seg.duration
            t -= seg.duration
        return 0.0

    def amount_due(self, t: float) -> float:
        """The integral of the rate from 0 to ``t``: what should have been sent by then."""
        done = 0.0
        for seg in self.segments:
            if t < seg.duration:
                return done + seg.amount(max(t, 0.0))
            done += seg.total
            t -= seg.duration
        return done

    def time_of(self, amount: float) -> float:
        """When ``amount_due`` reaches ``amount`` (its inverse; ``inf`` past the end)."""
        start = 0.0
        for seg in self.segments:
            if amount <= seg.total:
                return start + _solve_segment(seg, amount)
            amount -= seg.total
            start += seg.duration
        return math.inf


def _solve_segment(seg: Segment, amount: float) -> float:
    slope = (seg.end - seg.start) / seg.duration
    if abs(slope) < 1e-12:
        return amount / seg.start
    # slope/2 t^2 + start t - amount = 0, the root in [0, duration]
    disc = max(seg.start * seg.start + 2.0 * slope * amount, 0.0)
    return min(max((-seg.start + math.sqrt(disc)) / slope, 0.0), seg.duration)


def parse_schedule(text: str, field: str = "--schedule") -> Schedule:
    """A ``Schedule`` from its text form; raises ``ValidationError`` on anything else."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError(field, text, SCHEDULE_ALLOWED)
    segments = []
    for part in text.split(","):
        rates, sep, duration = part.strip().partition(":")
        if not sep:
            raise ValidationError(field, text, SCHEDULE_ALLOWED)
        try:
            seconds = parse_duration(field, duration)
            if ".." in rates:
                first, _, last = rates.partition("..")
                start, end = parse_rate(field, first), parse_rate(field, last)
            else:
                start = end = parse_rate(field, rates)
        except ValidationError:
            raise ValidationError(field, text, SCHEDULE_ALLOWED) from None
        segments.append(Segment(start, end, seconds))
    return Schedule(tuple(segments))
