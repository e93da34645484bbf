"""Prometheus range queries cut into chunks of at most 11,000 points per series, in parallel.

Prometheus refuses a ``query_range`` whose resolution exceeds 11,000 points per series; a long
experiment at a fine step therefore needs several queries. Chunks sit on one grid (start + k *
step) and never overlap, so every evaluation timestamp is fetched exactly once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nuclab.errors import NuclabError, ValidationError
from nuclab.export.http import HttpError, JsonClient

MAX_POINTS = 11_000
MAX_QUERIES = 100  # per metric: 1,100,000 points per series (a week at 1 s, a day at 0.1 s)
STEP_ALLOWED = "a finite number of seconds, at least 0.001"
_SELECTOR = re.compile(r"^\{(.*)\}$", re.S)
_LOWEST = re.compile(r"^prometheus_tsdb_lowest_timestamp (\S+)$", re.M)


@dataclass(frozen=True, slots=True)
class Chunk:
    start_ms: int
    end_ms: int  # inclusive: the last evaluation timestamp of this chunk


def plan_chunks(
    start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS
) -> list[Chunk]:
    """Split [start, end] (ms, inclusive) on the step grid into chunks of <= max_points points."""
    if step_ms <= 0:
        raise ValueError("step must be positive")
    if end_ms < start_ms:
        return []
    points = (end_ms - start_ms) // step_ms + 1
    chunks = []
    for first in range(0, points, max_points):
        last = min(points, first + max_points) - 1
        chunks.append(Chunk(start_ms + first * step_ms, start_ms + last * step_ms))
    return chunks


def matchers(selector: str) -> str:
    """The inside of a ``{...}`` series selector (validated loosely; Prometheus checks it)."""
    m = _SELECTOR.match(selector.strip())
    if not m:
        raise NuclabError(f'selector {selector!r} is not a series selector like {{job="x"}}')
    return m.group(1).strip()


def metric_query(name: str, selectors: Iterable[str]) -> str:
    """``name`` restricted to any of the selectors (PromQL ``or`` drops duplicate series)."""
    parts = []
    for sel in selectors:
        inner = matchers(sel)
        parts.append(f'{{__name__="{name}"{", " + inner if inner else ""}}}')
    return " or ".join(parts)


@dataclass(slots=True)
class Series:
    labels: dict[str, str]
    timestamps_ms: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class Prometheus:
    def __init__(self, url: str, *, timeout: float = 120) -> None:
        self.http = JsonClient(url, what="Prometheus", field="prometheus_url", timeout=timeout)

    def check(self) -> str:
        """The server's version; raises a clear error when it is unreachable."""
        info = self.http.get("/api/v1/status/buildinfo", {})
        return str(info.get("data", {}).get("version", "unknown"))

    def oldest_sample_ms(self) -> int | None:
        """``prometheus_tsdb_lowest_timestamp`` (ms) from the server's own /metrics (see
        nuclab.export.coverage); None when the server does not expose it."""
        try:
            text = self.http.get_bytes("/metrics", {}).decode("utf-8", "replace")
        except HttpError:
            return None
        match = _LOWEST.search(text)
        if match is None:
            return None
        try:
            return int(float(match.group(1)))
        except (ValueError, OverflowError):  # NaN, +Inf
            return None

    def metric_names(self, selectors: Iterable[str], start_ms: int, end_ms: int) -> list[str]:
        params = [("match[]", s) for s in selectors]
        params += [("start", _sec(start_ms)), ("end", _sec(end_ms))]
        data = self.http.get("/api/v1/label/__name__/values", params)
        return sorted(data.get("data") or [])

    def query_range(self, query: str, chunk: Chunk, step_ms: int) -> list[dict]:
        params = {
            "query": query,
            "start": _sec(chunk.start_ms),
            "end": _sec(chunk.end_ms),
            "step": _sec(step_ms),
        }
        data = self.http.get("/api/v1/query_range", params)
        if data.get("status") != "success":
            raise NuclabError(f"Prometheus refused {query!r}: {data.get('error')}")
        return data["data"]["result"]

    def fetch(
        self,
        queries: dict[str, str],
        start_ms: int,
        end_ms: int,
        step_ms: int,
        *,
        workers: int = 4,
        max_points: int = MAX_POINTS,
    ) -> Iterator[tuple[str, list[Series]]]:
        """(name, series) per query, each query's chunks fetched in parallel and stitched."""
        chunks = plan_chunks(start_ms, end_ms, step_ms, max_points)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            jobs = {
                name: [pool.submit(self.query_range, q, c, step_ms) for c in chunks]
                for name, q in queries.items()
            }
            for name, futures in jobs.items():
                merged: dict[tuple[tuple[str, str], ...], Series] = {}
                for fut in futures:  # in chunk order: timestamps stay sorted
                    for item in fut.result():
                        key = tuple(sorted(item["metric"].items()))
                        s = merged.get(key)
                        if s is None:
                            s = merged[key] = Series(dict(item["metric"]))
                        for ts, value in item["values"]:
                            s.timestamps_ms.append(round(ts * 1000))
                            s.values.append(float(value))
                yield name, list(merged.values())


def _sec(ms: int) -> str:
    """Seconds with millisecond precision, as Prometheus takes them (no float rounding)."""
    sign = "-" if ms < 0 else ""
    q, r = divmod(abs(ms), 1000)
    return f"{sign}{q}.{r:03d}"


def step_ms_of(seconds: float) -> int:
    """The step in ms; a step that is not finite or rounds to 0 ms is refused."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValidationError("step", seconds, STEP_ALLOWED)
    if not math.isfinite(seconds) or round(seconds * 1000) < 1:
        raise ValidationError("step", seconds, STEP_ALLOWED)
    return round(seconds * 1000)


def check_queries(start_ms: int, end_ms: int, step_ms: int, max_points: int = MAX_POINTS) -> int:
    """The queries per metric a window takes at a step: at most ``MAX_QUERIES`` (a step far
    too fine for the window would send thousands, each answered with 11,000 points)."""
    points = max(0, (end_ms - start_ms) // step_ms + 1)
    queries = -(-points // max_points)
    if queries > MAX_QUERIES:
        window_ms = end_ms - start_ms
        least_ms = -(-window_ms // (MAX_QUERIES * max_points - 1))
        raise ValidationError(
            "step",
            step_ms / 1000,
            f"at least {least_ms / 1000:g} s for this {window_ms / 1000:g} s window: at most "
            f"{MAX_QUERIES} queries of {max_points} points per metric (this step needs {queries})",
        )
    return queries
