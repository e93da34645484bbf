"""Loki's ``query_range`` API, paged forward until the window is exhausted."""

from __future__ import annotations

from collections.abc import Iterator

from nuclab.errors import NuclabError
from nuclab.export.http import JsonClient


class Loki:
    def __init__(self, url: str, *, timeout: float = 60) -> None:
        self.http = JsonClient(url, what="Loki", field="loki_url", timeout=timeout)

    def check(self) -> None:
        """Raise a clear error when Loki is unreachable (any label query answers when it is up)."""
        self.http.get("/loki/api/v1/labels", {})

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
