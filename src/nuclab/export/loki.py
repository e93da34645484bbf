"""Loki's ``query_range`` API, paged forward until the window is exhausted, and how far back
Loki still holds lines (its retention, from ``/config``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

from nuclab.errors import NuclabError
from nuclab.export.http import HttpError, JsonClient

RETENTION_SOURCE = "loki limits_config.retention_period (compactor.retention_enabled)"

# Loki prints durations as Prometheus' model does: 2d, 1w3d, 1h30m, 500ms; 0s for none.
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
            "m": 60_000, "s": 1000, "ms": 1}  # fmt: skip


def duration_ms(text: str) -> int | None:
    """Milliseconds of a duration as Loki's /config prints it, or None when it is not one."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def retention_ms(config_text: str) -> int | None:
    """Loki's retention period in ms from its /config (0: it deletes nothing); None when the
    text does not say."""
    try:
        config = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return None
    if not isinstance(config, dict):
        return None
    compactor, limits = config.get("compactor") or {}, config.get("limits_config") or {}
    if not compactor.get("retention_enabled"):
        return 0
    period = limits.get("retention_period")
    return duration_ms(str(period)) if period is not None else None


class Loki:
    def __init__(self, url: str, *, timeout: float = 60) -> None:
        self.http = JsonClient(url, what="Loki", field="loki_url", timeout=timeout)

    def check(self) -> None:
        """Raise a clear error when Loki is unreachable (any label query answers when it is up)."""
        self.http.get("/loki/api/v1/labels", {})

    def oldest_kept_ms(self, now_ms: int) -> int | None:
        """The oldest time Loki still holds lines from: ``now - retention_period`` when its
        compactor deletes old lines, 0 when nothing is deleted, None when /config cannot say."""
        try:
            text = self.http.get_bytes("/config", {}).decode("utf-8", "replace")
        except HttpError:
            return None
        period = retention_ms(text)
        if period is None:
            return None
        return 0 if period == 0 else now_ms - period

    def entries(
        self, query: str, start_ns: int, end_ns: int, *, limit: int = 5000
    ) -> Iterator[tuple[int, dict[str, str], str]]:
        """(timestamp ns, stream labels, line) in time order, over the whole window.

        Each page starts at the last timestamp seen; entries of that same nanosecond that the
        previous page already returned are skipped, so paging neither loses nor repeats lines.
        """
        cursor = start_ns
        seen_at_cursor: set[tuple[tuple[tuple[str, str], ...], str]] = set()
        while True:
            params = {
                "query": query,
                "start": str(cursor),
                "end": str(end_ns),
                "limit": str(limit),
                "direction": "forward",
            }
            data = self.http.get("/loki/api/v1/query_range", params)
            if data.get("status") != "success":
                raise NuclabError(f"Loki refused {query!r}: {data.get('error', data)}")
            page: list[tuple[int, dict[str, str], str]] = []
            for stream in data["data"]["result"]:
                labels = stream.get("stream", {})
                for ts, line in stream.get("values", []):
                    page.append((int(ts), labels, line))
            page.sort(key=lambda e: e[0])
            fresh = 0
            for ts, labels, line in page:
                key = (tuple(sorted(labels.items())), line)
                if ts == cursor and key in seen_at_cursor:
                    continue
                if ts != cursor:
                    cursor, seen_at_cursor = ts, set()
                seen_at_cursor.add(key)
                fresh += 1
                yield ts, labels, line
            if len(page) < limit:
                return
            if fresh == 0:  # a full page of lines already returned: all at the cursor's ns
                raise NuclabError(
                    f"Loki has at least {limit} lines of {query!r} at one nanosecond "
                    f"({cursor}): paging by time cannot get past them; export with a larger "
                    "page size (limit)"
                )
