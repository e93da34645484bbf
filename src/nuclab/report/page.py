"""``nuclab report``: one self-contained HTML page (PNG figures inline) for a dataset folder."""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from nuclab.errors import NuclabError, ValidationError
from nuclab.report import compare, plots
from nuclab.report.data import Dataset, once_per_pod, overall_percentiles

# (section title, family, metric, kind, y label, scale)
RESOURCE_PLOTS = [
    ("CPU", "container_cpu_usage_seconds_total", "container_cpu_usage_seconds_total",
     "rate", "cores", 1.0),
    ("Memory", "container_memory_working_set_bytes", "container_memory_working_set_bytes",
     "gauge", "MiB", 1 / 2**20),
    ("Network up", "container_network_transmit_bytes_total",
     "container_network_transmit_bytes_total", "rate", "Mbit/s", 8 / 1e6),
    ("Network down", "container_network_receive_bytes_total",
     "container_network_receive_bytes_total", "rate", "Mbit/s", 8 / 1e6),
    ("Messages published", "nuclab_peer_messages_sent_total", "nuclab_peer_messages_sent_total",
     "rate", "messages/s", 1.0),
    ("Messages received", "nuclab_peer_messages_received_total",
     "nuclab_peer_messages_received_total", "rate", "messages/s", 1.0),
]  # fmt: skip

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
img { max-width: 100%; } .missing { color: #888; font-style: italic; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _node_row(n: dict) -> str:
    labels = ", ".join(
        f"{k}={v}"
        for k, v in sorted(n.get("labels", {}).items())
        if k.startswith(("nuclab.io/", "topology."))
    )
    cells = [
        n["name"],
        str(n.get("kubelet_version")),
        json.dumps(n.get("capacity", {}), sort_keys=True),
        labels,
    ]
    return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"


def _link_text(values: dict) -> str:
    """A link's settings in the spec's units; a list where the peers carried different ones."""
    parts = []
    for key, unit, label in (
        ("delay_ms", "ms", "delay"),
        ("jitter_ms", "ms", "jitter"),
        ("loss_percent", "%", "loss"),
        ("rate_mbit", " Mbit/s", "rate"),
    ):
        value = values.get(key)
        shown = value if isinstance(value, list) else [value]
        if key == "rate_mbit":
            text = "/".join("unlimited" if v is None else f"{v:g}{unit}" for v in shown)
        elif any(shown):
            text = "/".join(f"{v:g}{unit}" for v in shown if v is not None)
        else:
            continue
        parts.append(f"{label} {text}")
    return ", ".join(parts) or "-"


def _network_section(ds: Dataset) -> list[str]:
    """Configured, applied (read back by the node agent) and measured (the probe's median RTT
    between the zones, against the configured delay both ways), per directed zone pair."""
    rows = ds.manifest.get("network")
    if not rows:
        return []
    rtt = compare.zone_pair_rtt(ds)
    configured = {(r["from"], r["to"]): r["configured"] for r in rows}
    head = ("<tr><th>link</th><th>configured</th><th>applied (read back)</th><th>peers in sync"
            "</th><th>probe RTT p50</th><th>configured delay, both ways</th></tr>")  # fmt: skip
    body = ""
    for row in rows:
        src, dst = row["from"], row["to"]
        both = [configured.get(p) for p in ((src, dst), (dst, src))]
        delay = f"{sum(c['delay_ms'] for c in both if c):g} ms" if src != "*" and all(both) else "-"
        measured = rtt.get(f"rtt_p50_ms[{src}>{dst}]")
        cells = [
            f"{src} > {dst}", _link_text(row["configured"]),
            _link_text(row["applied"]) if row["peers"] else "no peer read back",
            f"{row['peers_in_sync']}/{row['peers']}",
            "-" if measured is None else f"{measured:.3f} ms", delay,
        ]  # fmt: skip
        body += "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
    return [
        "<h2>Network emulation: configured, applied, measured</h2>",
        f"<table>{head}{body}</table>",
    ]


def render(ds: Dataset) -> tuple[str, list[str]]:
    """The page, and the titles of the figures it contains."""
    m = ds.manifest
    name = html.escape(str(m.get("experiment", "?")))
    window = m.get("window", {})
    figures: list[str] = []
    parts = [
        f"<h1>Experiment {name}</h1>",
        _table(
            [
                ("window (UTC)", html.escape(f"{window.get('start')} → {window.get('end')}")),
                ("window from", html.escape(str(window.get("source")))),
                ("chart", html.escape(json.dumps(m.get("chart")))),
                ("nuclab", html.escape(json.dumps(m.get("nuclab")))),
                ("K3s", html.escape(", ".join(m.get("k3s_versions") or []) or "unknown")),
                ("nodes", str(len(m.get("nodes") or []))),
                ("files", str(len(m.get("files") or []))),
            ]
        ),
        "<h2>Spec</h2>",
        f"<pre>{html.escape(json.dumps(m.get('spec'), indent=2, sort_keys=True))}</pre>",
    ]

    def section(title: str, make: Callable[[], bytes] | None, why: str = "") -> None:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if make is None:
            parts.append(f'<p class="missing">No data for this in the dataset{why}.</p>')
            return
        parts.append(img(make(), title))
        figures.append(title)

    for title, family, metric, kind, ylabel, scale in RESOURCE_PLOTS:
        series = once_per_pod(ds.metric(family, metric))
        draw = plots.rate_per_peer if kind == "rate" else plots.gauge_per_peer
        section(
            f"{title} per peer",
            (lambda s=series, d=draw, t=title, y=ylabel, k=scale: d(s, t, y, k))
            if series
            else None,
            f" ({metric})",
        )

    sums = ds.metric("nuclab_peer_rtt_seconds", "nuclab_peer_rtt_seconds_sum")
    counts = ds.metric("nuclab_peer_rtt_seconds", "nuclab_peer_rtt_seconds_count")
    buckets = ds.metric("nuclab_peer_rtt_seconds", "nuclab_peer_rtt_seconds_bucket")
    heatmap = (lambda: plots.rtt_heatmap(sums, counts)) if sums and counts else None
    section("RTT heatmap", heatmap, " (nuclab_peer_rtt_seconds)")
    rtt_q = (lambda: plots.percentiles_over_time(buckets, "Peer RTT")) if buckets else None
    section("RTT percentiles", rtt_q, " (nuclab_peer_rtt_seconds_bucket)")
    if buckets:
        overall = overall_percentiles(buckets)
        parts.append(_table([(k, f"{v * 1000:.3f} ms") for k, v in overall.items()]))
    lat = ds.metric(
        "nuclab_peer_delivery_latency_seconds", "nuclab_peer_delivery_latency_seconds_bucket"
    )
    lat_q = (lambda: plots.percentiles_over_time(lat, "Delivery latency")) if lat else None
    section("Delivery latency", lat_q, " (nuclab_peer_delivery_latency_seconds)")
    if lat:
        overall = overall_percentiles(lat)
        parts.append(_table([(k, f"{v * 1000:.3f} ms") for k, v in overall.items()]))

    parts += _network_section(ds)
    nodes = m.get("nodes") or []
    if nodes:
        parts.append("<h2>Nodes</h2>")
        rows = "".join(_node_row(n) for n in nodes)
        head = "<tr><th>node</th><th>version</th><th>capacity</th><th>labels</th></tr>"
        parts.append(f"<table>{head}{rows}</table>")
    return html_page(f"nuclab report: {m.get('experiment', '?')}", parts), figures


def write_report(dataset: Path, output: Path | None = None) -> tuple[Path, list[str]]:
    target = output or dataset / "report.html"
    if output is not None:
        check_output("output", output)
    ds = Dataset(dataset)
    page, figures = render(ds)
    write_page("output", target, page)
    return target, figures


def check_output(field: str, output: Path) -> None:
    """Before any work: an HTML file to be written in a folder that exists."""
    if not output.parent.is_dir() or output.is_dir():
        raise ValidationError(field, str(output), "an HTML file in a folder that exists")


def write_page(field: str, target: Path, page: str) -> None:
    """The whole page or nothing: written beside ``target``, then renamed onto it."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".report.", suffix=".html", dir=target.parent)
    except OSError as exc:
        raise NuclabError(
            f"{field}: cannot write in {str(target.parent)!r}: {exc.strerror}"
        ) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(page)
    os.replace(tmp, target)


def html_page(title: str, parts: list[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n"
    )
