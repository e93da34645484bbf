"""``nuclab compare``: the key figures of exported datasets side by side, and regressions.

Each figure is computed from a dataset's own files (``nuclab.report.data``), the same way for
every dataset: delivery latency and probe RTT percentiles over the whole window (PromQL's
``histogram_quantile`` over the summed bucket increases), messages published and delivered
(counter increases, resets counted from zero as PromQL's ``increase`` does), delivery
throughput, CPU and memory per peer (cAdvisor), and energy (the integral of the lab's Kepler
recording rule of the experiment's power) where the dataset has it.
A figure a dataset lacks is ``None``: shown as ``-``, never compared.

The first dataset is the baseline. ``--max-regression 5%`` (all figures) or
``--max-regression delivery_p99_ms=10%`` (one) sets how much worse, in the figure's own
direction (latency up, delivered down), another dataset may be before the command exits 4.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nuclab.errors import ValidationError
from nuclab.lab import ZONE_LABEL, place
from nuclab.report.data import Dataset, Series, increase, once_per_pod, overall_percentiles

REGRESSION_EXIT = 4
FORMATS = ("table", "json", "csv")


def window_seconds(ds: Dataset) -> float | None:
    """The export's window (the manifest's start and end), in seconds."""
    from nuclab.export.cluster import parse_time

    window = ds.manifest.get("window") or {}
    try:
        span = (parse_time(window["end"]) - parse_time(window["start"])).total_seconds()
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return span if span > 0 else None


def _quantile(ds: Dataset, family: str, q: float) -> float | None:
    buckets = ds.metric(family, f"{family}_bucket")
    if not buckets:
        return None
    value = overall_percentiles(buckets, (q,))[f"p{round(q * 100)}"]
    return None if math.isnan(value) else value * 1000


def _total(ds: Dataset, metric: str) -> float | None:
    series = ds.metric(metric, metric)
    return sum(increase(s) for s in series) if series else None


def _throughput(ds: Dataset) -> float | None:
    delivered, seconds = _total(ds, "nuclab_peer_messages_received_total"), window_seconds(ds)
    return None if delivered is None or not seconds else delivered / seconds


def _cpu_per_peer(ds: Dataset) -> float | None:
    series = once_per_pod(
        ds.metric("container_cpu_usage_seconds_total", "container_cpu_usage_seconds_total")
    )
    per_peer: dict[str, float] = {}
    for s in series:
        if len(s.t) >= 2 and s.t[-1] > s.t[0]:
            per_peer[s.peer] = per_peer.get(s.peer, 0.0) + increase(s) / float(s.t[-1] - s.t[0])
    return sum(per_peer.values()) / len(per_peer) if per_peer else None


def _memory_per_peer(ds: Dataset) -> float | None:
    series = once_per_pod(
        ds.metric("container_memory_working_set_bytes", "container_memory_working_set_bytes")
    )
    peaks: dict[str, float] = {}
    for s in series:
        if len(s.v):
            peaks[s.peer] = peaks.get(s.peer, 0.0) + float(np.max(s.v))  # its containers
    return sum(peaks.values()) / len(peaks) / 2**20 if peaks else None


# The lab's recording rule of an experiment's power from Kepler (roles/monitoring's rules), in
# watts: its integral over the window is the experiment's energy.
EXPERIMENT_POWER = "nuclab:experiment_kepler_joules:rate2m"


def _energy(ds: Dataset) -> float | None:
    series = [s for s in ds.metric(EXPERIMENT_POWER, EXPERIMENT_POWER) if len(s.t) >= 2]
    return sum(float(np.trapezoid(s.v, s.t)) for s in series) if series else None


@dataclass(frozen=True)
class Figure:
    key: str
    title: str
    unit: str
    lower_is_better: bool
    compute: Callable[[Dataset], float | None]
    source: str  # how it is computed, for the docs' table


def docs_table() -> list[str]:
    """The figures as the Markdown table of docs/measurement.md (``make generate``)."""
    rows = ["| figure | unit | better | computed from |", "|---|---|---|---|"]
    rows += [
        f"| `{f.key}` | {f.unit} | {'lower' if f.lower_is_better else 'higher'} | {f.source} |"
        for f in FIGURES
    ]
    return rows


_DELIVERY = "nuclab_peer_delivery_latency_seconds"
_RTT = "nuclab_peer_rtt_seconds"
_QUANTILE = "over the whole window (summed bucket increases, as PromQL's `histogram_quantile`)"
FIGURES: tuple[Figure, ...] = (
    *(
        Figure(f"delivery_p{p}_ms", f"delivery latency p{p}", "ms", True,
               lambda ds, q=p / 100: _quantile(ds, _DELIVERY, q),
               f"`{_DELIVERY}` {_QUANTILE}")
        for p in (50, 90, 99)
    ),
    *(
        Figure(f"rtt_p{p}_ms", f"probe RTT p{p}", "ms", True,
               lambda ds, q=p / 100: _quantile(ds, _RTT, q), f"`{_RTT}` {_QUANTILE}")
        for p in (50, 90, 99)
    ),
    Figure("messages_sent", "messages published", "messages", False,
           lambda ds: _total(ds, "nuclab_peer_messages_sent_total"),
           "the increase of `nuclab_peer_messages_sent_total` summed over peers (a reset, a "
           "restarted peer, counts from zero, as PromQL's `increase`)"),
    Figure("messages_delivered", "messages delivered", "messages", False,
           lambda ds: _total(ds, "nuclab_peer_messages_received_total"),
           "the same of `nuclab_peer_messages_received_total`"),
    Figure("throughput_msg_s", "delivery throughput", "messages/s", False, _throughput,
           "messages delivered over the export's window (the manifest's start and end)"),
    Figure("cpu_cores_per_peer", "CPU per peer (mean)", "cores", True, _cpu_per_peer,
           "cAdvisor's `container_cpu_usage_seconds_total` per peer over its span (its "
           "containers, else its pod's cgroup: each pod counted once), averaged over peers"),
    Figure("memory_mib_per_peer", "memory per peer (mean of peaks)", "MiB", True,
           _memory_per_peer,
           "each peer's peak `container_memory_working_set_bytes` (its containers' peaks "
           "summed, else its pod's cgroup), averaged over peers"),
    Figure("energy_j", "energy (Kepler)", "J", True, _energy,
           f"the integral over time of `{EXPERIMENT_POWER}` (the lab's Kepler rule, watts)"),
)  # fmt: skip
KEYS = tuple(f.key for f in FIGURES)


def parse_thresholds(given: Sequence[str]) -> dict[str, float]:
    """``5%`` (every figure: key ``*``) and ``KEY=5%`` (one; later wins) -> {key: fraction}.
    KEY is one of ``KEYS`` or a zone pair's RTT, ``rtt_p50_ms[ZONE>ZONE]``."""
    out: dict[str, float] = {}
    for item in given:
        key, sep, value = item.rpartition("=")
        match = re.fullmatch(r"(\d+(?:\.\d+)?)%", value.strip())
        if not match or (sep and key not in KEYS and not ZONE_PAIR_KEY.fullmatch(key)):
            raise ValidationError(
                "--max-regression",
                item,
                f"PERCENT% or FIGURE=PERCENT% (e.g. 5%, delivery_p99_ms=10%), FIGURE one of "
                f"{', '.join(KEYS)} or rtt_p50_ms[ZONE>ZONE]",
            )
        out[key if sep else "*"] = float(match.group(1)) / 100
    return out


# The probe's RTT between two zones: its peers' pods placed by the manifest's pods and nodes.
ZONE_PAIR_KEY = re.compile(r"rtt_p50_ms\[[^\]>=]+>[^\]>=]+\]")


def peer_zones(manifest: dict) -> dict[str, str]:
    """Peer (pod) name -> the zone of the node it ran on, where the manifest says both."""
    nodes = manifest.get("nodes") if isinstance(manifest.get("nodes"), list) else []
    pods = manifest.get("pods") if isinstance(manifest.get("pods"), list) else []
    zones = {
        n.get("name"): (n.get("labels") or {}).get(ZONE_LABEL) for n in nodes if isinstance(n, dict)
    }
    found = {p.get("name"): zones.get(p.get("node")) for p in pods if isinstance(p, dict)}
    return {str(k): str(v) for k, v in found.items() if k and v}


def zone_pair_rtt(ds: Dataset) -> dict[str, float]:
    """``rtt_p50_ms[ZONE>ZONE]`` -> the median RTT (ms) from peers in one zone to the other's."""
    zones = peer_zones(ds.manifest)
    groups: dict[str, list[Series]] = {}
    for b in ds.metric(_RTT, f"{_RTT}_bucket"):
        src, dst = zones.get(b.labels.get("source", "")), zones.get(b.labels.get("target", ""))
        if src and dst:
            groups.setdefault(f"rtt_p50_ms[{src}>{dst}]", []).append(b)
    out = {}
    for key, buckets in sorted(groups.items()):
        value = overall_percentiles(buckets, (0.5,))["p50"]
        if not math.isnan(value):
            out[key] = value * 1000
    return out


@dataclass
class Comparison:
    figures: dict[str, Figure]  # the fixed ones, then each zone pair's RTT any dataset has
    names: list[str]
    values: dict[str, list[float | None]]  # figure key -> one value per dataset
    regressions: list[str]  # one line each: dataset, figure, baseline, value, change, limit
    differences: dict[str, list[str]]  # dataset -> what differs from the baseline's run and lab


def lab_of(manifest: dict) -> dict[str, object]:
    """What a run's figures depend on besides the code under test, from its manifest: the spec,
    the chart, K3s, the nodes by role and zone with their kernels and architectures, the images.
    ``None`` where the manifest does not say (an export without the cluster)."""
    nodes = manifest.get("nodes")
    lab: dict[str, object] = {
        f"spec.{k}": v for k, v in sorted((manifest.get("spec") or {}).items())
    }
    lab["chart"] = (manifest.get("chart") or {}).get("version")
    lab["k3s"] = ", ".join(manifest.get("k3s_versions") or []) or None
    if isinstance(nodes, list):
        places: dict[str, int] = {}
        for n in nodes:
            where = place(n.get("labels") or {})
            places[where] = places.get(where, 0) + 1
        lab["nodes (role/zone)"] = ", ".join(f"{k}: {v}" for k, v in sorted(places.items()))
        lab["kernels"] = ", ".join(sorted({str(n.get("kernel")) for n in nodes})) or None
        lab["architectures"] = ", ".join(sorted({str(n.get("architecture")) for n in nodes}))
    images = manifest.get("images")
    if isinstance(images, list):
        lab["images"] = ", ".join(sorted(f"{i.get('image')}@{i.get('digest')}" for i in images))
    return lab


def differences(baseline: dict, other: dict) -> list[str]:
    """One line per thing that differs between two runs' manifests (``lab_of``)."""
    a, b = lab_of(baseline), lab_of(other)
    return [
        f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    ]


def _change(base: float | None, value: float | None) -> float | None:
    if base is None or value is None or base == 0:
        return None
    return (value - base) / abs(base)


def compare(paths: Sequence[Path], thresholds: dict[str, float]) -> Comparison:
    if len(paths) < 2:
        raise ValidationError("datasets", [str(p) for p in paths], "two or more dataset folders")
    datasets = [Dataset(p) for p in paths]
    names = [_name(ds) for ds in datasets]
    figures = {f.key: f for f in FIGURES}
    values = {f.key: [f.compute(ds) for ds in datasets] for f in FIGURES}
    pairs = [zone_pair_rtt(ds) for ds in datasets]
    for key in sorted({k for found in pairs for k in found}):
        pair = key[len("rtt_p50_ms[") : -1].replace(">", " to ")
        figures[key] = Figure(key, f"probe RTT p50, {pair}", "ms", True, lambda ds: None,
                              "the probe's RTT histogram between the two zones' peers")  # fmt: skip
        values[key] = [found.get(key) for found in pairs]
    regressions = []
    for key, f in figures.items():
        limit = thresholds.get(key, thresholds.get("*"))
        if limit is None:
            continue
        base = values[key][0]
        for name, value in zip(names[1:], values[key][1:], strict=True):
            change = _change(base, value)
            if change is None:
                continue
            worse = change if f.lower_is_better else -change
            if worse > limit + 1e-12:
                regressions.append(
                    f"{name}: {key} {_fmt(value)} {f.unit} against {_fmt(base)} "
                    f"({change:+.1%}; at most {limit:.1%} worse allowed)"
                )
    diffs = {
        name: differences(datasets[0].manifest, ds.manifest)
        for name, ds in zip(names[1:], datasets[1:], strict=True)
    }
    return Comparison(figures, names, values, regressions, diffs)


def _name(ds: Dataset) -> str:
    return f"{ds.manifest.get('experiment', '?')} ({ds.path.name})"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _table_rows(result: Comparison) -> list[list[str]]:
    """The header, then per figure: key, unit, the baseline, each other value with its change."""
    rows = [["figure", "unit", *result.names]]
    for key, values in result.values.items():
        cells = [_fmt(values[0])]
        for x in values[1:]:
            change = _change(values[0], x)
            cells.append(_fmt(x) + ("" if change is None else f" ({change:+.1%})"))
        rows.append([key, result.figures[key].unit, *cells])
    return rows


def render(result: Comparison, fmt: str) -> str:
    figures = result.figures
    if fmt == "json":
        return (
            json.dumps(
                {
                    "datasets": result.names,
                    "figures": {
                        k: {
                            "unit": figures[k].unit,
                            "lower_is_better": figures[k].lower_is_better,
                            "values": v,
                        }
                        for k, v in result.values.items()
                    },
                    "regressions": result.regressions,
                },
                indent=2,
            )
            + "\n"
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["figure", "unit", *result.names])
        for k, v in result.values.items():
            writer.writerow([k, figures[k].unit, *("" if x is None else repr(x) for x in v)])
        return out.getvalue()
    rows = _table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )
    notes = [
        f"differs from the baseline: {name}: {line}\n"
        for name, lines in result.differences.items()
        for line in lines
    ]
    return table + ("\n" + "".join(notes) if notes else "")


def html(result: Comparison) -> tuple[str, list[str]]:
    """A self-contained page: the table, the regressions, a bar chart per figure with data."""
    import html as escape

    from nuclab.report import page, plots

    figures = result.figures
    header, *table = _table_rows(result)
    head = "".join(f"<th>{escape.escape(h)}</th>" for h in header)
    rows = [
        "<tr>" + "".join(f"<td>{escape.escape(c)}</td>" for c in row) + "</tr>" for row in table
    ]
    parts = [
        "<h1>nuclab compare</h1>",
        f"<p>Baseline: {escape.escape(result.names[0])}.</p>",
        f"<table><tr>{head}</tr>{''.join(rows)}</table>",
    ]
    if result.regressions:
        items = "".join(f"<li>{escape.escape(r)}</li>" for r in result.regressions)
        parts.append(f"<h2>Regressions</h2><ul>{items}</ul>")
    notes = [f"{name}: {line}" for name, lines in result.differences.items() for line in lines]
    if notes:
        items = "".join(f"<li>{escape.escape(n)}</li>" for n in notes)
        parts.append(f"<h2>What differs from the baseline's run</h2><ul>{items}</ul>")
    drawn = []
    for key, values in result.values.items():
        if all(v is None for v in values):
            continue
        f = figures[key]
        title = f"{f.title} ({'lower' if f.lower_is_better else 'higher'} is better)"
        parts += [
            f"<h2>{escape.escape(key)}</h2>",
            page.img(plots.bars(title, f.unit, result.names, values), key),
        ]
        drawn.append(key)
    return page.html_page("nuclab compare", parts), drawn


def write_html(result: Comparison, output: Path) -> list[str]:
    from nuclab.report import page

    text, drawn = html(result)
    page.write_page("--html", output, text)
    return drawn
