"""Quantiles, once: of samples (``quantile``: linear interpolation, numpy's default method), and
PromQL's ``histogram_quantile`` over classic (cumulative ``le``) buckets, without numpy.

One implementation for the report (over a dataset's bucket increases) and ``nuclab stats`` (over
the buckets the peers serve right now); it interpolates as Prometheus' ``bucketQuantile`` does:
linearly inside the bucket the rank falls in, from 0 for the first bucket, and the highest
finite bound when the rank falls in the ``+Inf`` bucket.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, linearly interpolated between the two
    nearest ranks (numpy's default, ``statistics.quantiles(method="inclusive")``); NaN if empty."""
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float:
    """The ``q`` quantile (0..1) of cumulative bucket ``counts`` (``bounds`` ascending, +Inf
    last); NaN without observations, or without a +Inf bucket and another one."""
    usable = len(bounds) >= 2 and len(bounds) == len(counts) and bounds[-1] == math.inf
    total = float(counts[-1]) if usable else 0.0
    if math.isnan(q) or total <= 0:
        return math.nan
    if not 0 <= q <= 1:
        return -math.inf if q < 0 else math.inf
    rank = q * total
    i = bisect.bisect_left(list(counts[:-1]), rank)
    if i >= len(bounds) - 1 or (i == 0 and bounds[0] <= 0):
        # in the +Inf bucket: the highest finite bound; a first bucket up to <= 0: its bound
        return float(bounds[i - 1] if i >= len(bounds) - 1 else bounds[0])
    low_bound = 0.0 if i == 0 else float(bounds[i - 1])
    low_count = 0.0 if i == 0 else float(counts[i - 1])
    width = float(counts[i]) - low_count
    if width <= 0:
        return float(bounds[i])
    # in Prometheus' order of operations, so that the float result is the same to the last bit
    return low_bound + (float(bounds[i]) - low_bound) * ((rank - low_count) / width)
