"""How much of an export's window Prometheus (and Loki) still hold.

Retention deletes whole TSDB blocks, oldest first, so Prometheus holds every sample from its
lowest timestamp on and none before. That bound is ``prometheus_tsdb_lowest_timestamp`` (ms) on
the server's own ``/metrics``: the oldest block's start, or the head's when no block is
persisted yet. It is read directly, so it needs no self-scrape and costs one small request.
A series that merely starts later than the window (a pod that came up late) is not a gap.

Loki reports no oldest entry; its compactor deletes what is older than its retention period
(``limits_config.retention_period`` with ``compactor.retention_enabled``, read from ``/config``),
so it holds at most from ``now - retention_period`` on (nuclab.export.loki).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def iso_ms(ms: int) -> str:
    """An epoch-ms time as RFC 3339 UTC, to the second when it is a whole second. An empty
    TSDB reports the largest int64 as its lowest timestamp: that is ``never``."""
    try:
        text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (ValueError, OverflowError, OSError):
        return "never"
    return text.replace(".000+00:00", "Z").replace("+00:00", "Z")


def span(ms: int) -> str:
    """A duration as ``1h02m03s`` (or ``45s``), for messages."""
    minutes, sec = divmod(round(ms / 1000), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{sec:02d}s"
    return f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


PROMETHEUS_SOURCE = "prometheus_tsdb_lowest_timestamp"


@dataclass(frozen=True, slots=True)
class Coverage:
    start_ms: int
    end_ms: int
    oldest_ms: int | None  # the server's oldest data; None when it does not say
    server: str = "Prometheus"
    source: str = PROMETHEUS_SOURCE  # where oldest_ms comes from
    unit: str = "sample"  # what the server holds, in messages

    @property
    def held(self) -> tuple[int, int] | None:
        """The part of the window Prometheus holds (None: none of it, or unknown)."""
        if self.oldest_ms is None or self.oldest_ms > self.end_ms:
            return None
        return max(self.start_ms, self.oldest_ms), self.end_ms

    @property
    def gone(self) -> bool:
        """Retention has dropped the whole window."""
        return self.oldest_ms is not None and self.oldest_ms > self.end_ms

    @property
    def complete(self) -> bool | None:
        return None if self.oldest_ms is None else self.oldest_ms <= self.start_ms

    @property
    def missing_ms(self) -> int | None:
        if self.oldest_ms is None:
            return None
        held = self.held
        return self.end_ms - self.start_ms if held is None else held[0] - self.start_ms

    def manifest(self) -> dict[str, Any]:
        held = self.held
        return {
            "requested": [iso_ms(self.start_ms), iso_ms(self.end_ms)],
            "held": None if held is None else [iso_ms(held[0]), iso_ms(held[1])],
            "complete": self.complete,
            "missing_seconds": None if self.missing_ms is None else self.missing_ms / 1000,
            "oldest_sample": None if self.oldest_ms is None else iso_ms(self.oldest_ms),
            "source": self.source,
        }

    def problem(self, url: str) -> str | None:
        """One sentence on what is missing, or None when the window is complete."""
        if self.oldest_ms is None:
            return (
                f"{self.server} at {url} does not report its oldest {self.unit} "
                f"({self.source}): the window's coverage is unknown"
            )
        if self.complete:
            return None
        window = f"the window {iso_ms(self.start_ms)} to {iso_ms(self.end_ms)}"
        if self.held is None:
            return (
                f"{self.server} holds no {self.unit} of {window}: it holds nothing older than "
                f"{iso_ms(self.oldest_ms)}"
            )
        missing = self.missing_ms or 0
        share = 100 * missing / max(1, self.end_ms - self.start_ms)
        return (
            f"{window} starts before the oldest {self.unit} {self.server} holds, "
            f"{iso_ms(self.oldest_ms)}: its first {span(missing)} ({share:.0f}%) is missing "
            "(gone with retention, or never scraped)"
        )
