"""Latency samples, percentiles and per-second counts, cheap enough for the send loop."""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

from nuclab.histogram import quantile

QUANTILES = (0.5, 0.9, 0.99)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99, mean and max of ``values`` (seconds), NaN when there are none."""
    ordered = sorted(values)
    out = {f"p{round(q * 100)}": quantile(ordered, q) for q in QUANTILES}
    out["mean"] = sum(ordered) / len(ordered) if ordered else math.nan
    out["max"] = ordered[-1] if ordered else math.nan
    return out


class Samples:
    """Latency samples (seconds) with a cursor, so a reporter can summarize the recent ones."""

    def __init__(self) -> None:
        self.values: array[float] = array("d")
        self._cursor = 0

    def add(self, value: float) -> None:
        self.values.append(value)

    def recent(self) -> list[float]:
        """Samples added since the previous call."""
        end = len(self.values)
        out = self.values[self._cursor : end].tolist()
        self._cursor = end
        return out


class PerSecond:
    """Counts per whole second since the start of a run (the achieved rate over time)."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def add(self, t: float, n: int = 1) -> None:
        idx = int(t) if t > 0 else 0
        if idx >= len(self.counts):
            self.counts.extend([0] * (idx + 1 - len(self.counts)))
        self.counts[idx] += n
