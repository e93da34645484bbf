"""The report's figures, each rendered to PNG bytes.

Built with matplotlib's object API (``Figure``, no pyplot): no backend or display is chosen
globally, so importing this module changes nothing for anyone else.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, datetime

import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nuclab.histogram import histogram_quantile
from nuclab.report.data import Dataset, Series, rate

MAX_LINES = 20  # more peers than this: the busiest ones, the legend says so


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _dates(t: np.ndarray) -> list[datetime]:
    return [datetime.fromtimestamp(x, UTC) for x in t]


def _time_axes(ax: Axes, ylabel: str) -> None:
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(ylabel)
    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.grid(alpha=0.3)


def _lines(title: str, ylabel: str, per_peer: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    ranked = sorted(
        per_peer.items(), key=lambda kv: -float(np.nanmean(kv[1][1]) if len(kv[1][1]) else 0)
    )
    for peer, (t, v) in ranked[:MAX_LINES]:
        ax.plot(_dates(t), v, linewidth=1, label=peer)
    if len(ranked) > MAX_LINES:
        title += f" (top {MAX_LINES} of {len(ranked)} by mean)"
    ax.set_title(title)
    _time_axes(ax, ylabel)
    if ranked:
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def gauge_per_peer(series: list[Series], title: str, ylabel: str, scale: float = 1.0) -> bytes:
    summed: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in series:
        for t, v in zip(s.t, s.v, strict=True):
            summed[s.peer][float(t)] += float(v) * scale
    per_peer = {
        p: (np.array(sorted(d)), np.array([d[k] for k in sorted(d)])) for p, d in summed.items()
    }
    return _lines(title, ylabel, per_peer)


def rate_per_peer(series: list[Series], title: str, ylabel: str, scale: float = 1.0) -> bytes:
    summed: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for s in series:
        t, r = rate(s)
        for ti, ri in zip(t, r, strict=True):
            summed[s.peer][float(ti)] += float(ri) * scale
    per_peer = {
        p: (np.array(sorted(d)), np.array([d[k] for k in sorted(d)])) for p, d in summed.items()
    }
    return _lines(title, ylabel, per_peer)


def rtt_heatmap(sums: list[Series], counts: list[Series]) -> bytes:
    """Mean RTT per (source, target) over the window, in ms."""

    def key(s: Series) -> tuple[str, str]:
        return s.labels.get("source", "?"), s.labels.get("target", "?")

    total = {key(s): float(s.v[-1] - s.v[0]) for s in sums if len(s.v)}
    n = {key(s): float(s.v[-1] - s.v[0]) for s in counts if len(s.v)}
    names = sorted({k[0] for k in total} | {k[1] for k in total})
    grid = np.full((len(names), len(names)), np.nan)
    pos = {name: i for i, name in enumerate(names)}
    for k, sec in total.items():
        if n.get(k, 0) > 0:
            grid[pos[k[0]], pos[k[1]]] = sec / n[k] * 1000
    size = max(4.0, min(12.0, 0.35 * len(names) + 3))
    fig = Figure(figsize=(size + 1.5, size))
    ax = fig.subplots()
    img = ax.imshow(grid, cmap="viridis", interpolation="nearest")
    fig.colorbar(img, ax=ax, label="mean RTT (ms)")
    ticks = range(len(names))
    short = [name.rsplit("-", 1)[-1] if name.startswith("nuclab-exp-") else name for name in names]
    ax.set_xticks(ticks, short, rotation=90, fontsize=7)
    ax.set_yticks(ticks, short, fontsize=7)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    ax.set_title("Peer RTT: mean per pair over the experiment")
    return _png(fig)


def percentiles_over_time(
    buckets: list[Series], title: str, unit_scale: float = 1000.0, window: int = 60
) -> bytes:
    """p50/p90/p99 across all series of a histogram, over sliding windows of ``window`` samples."""
    by_le: dict[float, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for b in buckets:
        le = b.labels.get("le", "+Inf")
        bound = float("inf") if le in ("+Inf", "Inf") else float(le)
        for t, v in zip(b.t, b.v, strict=True):
            by_le[bound][float(t)] += float(v)
    bounds = np.array(sorted(by_le))
    times = (
        np.array(sorted(set().union(*[set(d) for d in by_le.values()]))) if by_le else np.array([])
    )
    cum = (
        np.array([[by_le[b].get(t, np.nan) for b in bounds] for t in times]) if len(times) else None
    )
    fig = Figure(figsize=(9, 3.6))
    ax = fig.subplots()
    if cum is not None and len(times) > 1:
        step = max(1, min(window, len(times) // 4 or 1))
        xs, qs = [], {0.5: [], 0.9: [], 0.99: []}
        for i in range(step, len(times), max(1, step // 2)):
            inc = np.nan_to_num(cum[i] - cum[i - step])
            xs.append(times[i])
            for q, ys in qs.items():
                ys.append(histogram_quantile(q, bounds, inc) * unit_scale)
        for q, ys in qs.items():
            ax.plot(_dates(np.array(xs)), ys, label=f"p{round(q * 100)}")
        ax.legend(fontsize=8)
    ax.set_title(title)
    _time_axes(ax, "ms")
    return _png(fig)


def available(ds: Dataset, family: str) -> bool:
    return bool(ds.family(family))


def bars(title: str, unit: str, names: list[str], values: list[float | None]) -> bytes:
    """One horizontal bar per dataset (the baseline on top); a missing value has no bar."""
    fig = Figure(figsize=(9, 0.5 + 0.45 * len(names)))
    ax = fig.subplots()
    y = np.arange(len(names))[::-1]
    heights = [np.nan if v is None else v for v in values]
    ax.barh(y, heights, color=["#4a7ab5", *["#d08a3c"] * (len(names) - 1)])
    ax.set_yticks(y, names, fontsize=8)
    for yi, v in zip(y, values, strict=True):
        label, at = ("no data", 0.0) if v is None else (f"{v:.4g}", v)
        ax.annotate(label, (at, yi), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
