"""``nuclab export``: check every input, then fetch and write the dataset in one atomic step."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nuclab import __version__, spec
from nuclab.errors import NuclabError, ValidationError
from nuclab.export import cluster
from nuclab.export.coverage import Coverage
from nuclab.export.dataset import DatasetWriter, check_target, families, safe_name, series_table
from nuclab.export.http import check_url
from nuclab.export.loki import RETENTION_SOURCE, Loki
from nuclab.export.prom import (
    MAX_POINTS,
    Prometheus,
    check_queries,
    metric_query,
    plan_chunks,
    step_ms_of,
)
from nuclab.netagent import accuracy
from nuclab.rerun import recorded_parent

FORMAT = "nuclab-dataset/1"


def default_selectors(experiment: str, namespace: str = cluster.HELM_NAMESPACE) -> list[str]:
    """The experiment's own metrics (probe, peer: labelled ``experiment``) and its pods' metrics
    (cAdvisor, kube-state-metrics: labelled with namespace and pod)."""
    return [
        f'{{experiment="{experiment}"}}',
        f'{{namespace="{namespace}", pod=~"nuclab-exp-{experiment}-[0-9]+"}}',
    ]


@dataclass(slots=True)
class ExportOptions:
    experiment: str
    prometheus_url: str
    output: Path
    loki_url: str = ""
    kubeconfig: str | None = None
    namespace: str = cluster.HELM_NAMESPACE
    start: datetime | None = None
    end: datetime | None = None
    step: float = 15.0
    selectors: list[str] = field(default_factory=list)
    log_query: str = ""
    csv: bool = False
    workers: int = 4
    max_points: int = MAX_POINTS
    require_complete: bool = False


@dataclass(slots=True)
class ExportResult:
    path: Path
    samples: int
    log_lines: int
    files: int
    coverage: Coverage


def parse_utc(field_name: str, text: str) -> datetime:
    """RFC 3339 with an explicit offset (or Z), or seconds since the epoch: never local time."""
    allowed = (
        "an RFC 3339 time with Z or an offset (2025-09-20T11:57:09Z) or epoch s, "
        "between the years 1 and 9999"
    )
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (ValueError, OverflowError, OSError):  # nan, inf, beyond year 9999
            raise ValidationError(field_name, text, allowed) from None
    try:
        value = cluster.parse_time(text)
        if re.search(r"(Z|[+-]\d\d:?\d\d)$", text.strip()) is None:
            raise ValueError
    except (ValueError, OverflowError):
        raise ValidationError(field_name, text, allowed) from None
    return value


def nuclab_commit() -> dict[str, Any]:
    """The commit this nuclab runs from: its git checkout, else NUCLAB_COMMIT (set in images)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip() != ""  # fmt: skip
        return {"version": __version__, "commit": head, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"version": __version__, "commit": os.environ.get("NUCLAB_COMMIT", "unknown")}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ns_iso(ns: int) -> str:
    sec, rest = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


def validate(opts: ExportOptions) -> None:
    spec.check_name(opts.experiment, "experiment")
    if not 1 <= opts.workers <= 64:
        raise ValidationError("workers", opts.workers, "a number from 1 to 64")
    if not 2 <= opts.max_points <= MAX_POINTS:
        raise ValidationError("max_points", opts.max_points, f"a number from 2 to {MAX_POINTS}")
    check_url("prometheus_url", opts.prometheus_url)
    if opts.loki_url:
        check_url("loki_url", opts.loki_url)
    step_ms = step_ms_of(opts.step)
    if (opts.start is None) != (opts.end is None):
        raise ValidationError("start/end", "one of them", "both --start and --end, or neither")
    if opts.start and opts.end:
        if opts.end <= opts.start:
            raise ValidationError("end", _iso(opts.end), f"a time after start {_iso(opts.start)}")
        check_queries(_ms(opts.start), _ms(opts.end), step_ms, opts.max_points)
    check_target(opts.output)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _window(
    opts: ExportOptions, now: datetime | None
) -> tuple[Any, cluster.ReleaseInfo | None, datetime, datetime, str]:
    """(Kubernetes API or None, release or None, start, end, where the window came from)."""
    core = None
    if opts.start is None or opts.kubeconfig:
        core = cluster.core_api(opts.kubeconfig)
    if opts.start is not None and opts.end is not None:
        return core, None, opts.start, opts.end, "flags"
    release = cluster.read_release(core, opts.experiment, opts.namespace)
    start, end = release.window(now)
    return core, release, start, end, "helm-release"


def _coverage(
    opts: ExportOptions,
    coverage: Coverage,
    url: str,
    warn: Callable[[str], None] | None,
    *,
    fails_when_gone: bool,
) -> Coverage:
    """What a server still holds of the window; refused or warned about when not all. When
    ``fails_when_gone`` (the metrics), a window the server holds nothing of is not warned about:
    the export then fails, saying so."""
    problem = coverage.problem(url)
    if problem and opts.require_complete:
        raise NuclabError(
            f"experiment {opts.experiment!r}: {problem}; nothing was written (--require-complete)"
        )
    if problem and warn is not None and not (coverage.gone and fails_when_gone):
        warn(f"experiment {opts.experiment!r}: {problem}; manifest.json records the coverage")
    return coverage


def _log_coverage(
    opts: ExportOptions,
    loki: Loki | None,
    window_ms: tuple[int, int],
    now: datetime | None,
    warn: Callable[[str], None] | None,
) -> Coverage | None:
    """What Loki still holds of the window (its retention), when logs are exported."""
    if loki is None:
        return None
    oldest = loki.oldest_kept_ms(_ms(now or datetime.now(UTC)))
    held = Coverage(*window_ms, oldest, "Loki", RETENTION_SOURCE, "log line")
    return _coverage(opts, held, opts.loki_url, warn, fails_when_gone=False)


def export(
    opts: ExportOptions, now: datetime | None = None, warn: Callable[[str], None] | None = None
) -> ExportResult:
    """Fetch and write the dataset; ``warn`` gets one line when the window is not complete."""
    validate(opts)
    prom = Prometheus(opts.prometheus_url)
    loki = Loki(opts.loki_url) if opts.loki_url else None
    prom_version = prom.check()
    if loki is not None:
        loki.check()

    core, release, start, end, source = _window(opts, now)
    step_ms = step_ms_of(opts.step)
    start_ms, end_ms = _ms(start), _ms(end)
    check_queries(start_ms, end_ms, step_ms, opts.max_points)  # the release's window, too
    coverage = _coverage(
        opts,
        Coverage(start_ms, end_ms, prom.oldest_sample_ms()),
        opts.prometheus_url,
        warn,
        fails_when_gone=True,
    )
    log_coverage = _log_coverage(opts, loki, (start_ms, end_ms), now, warn)
    selectors = opts.selectors or default_selectors(opts.experiment, opts.namespace)
    names = prom.metric_names(selectors, start_ms, end_ms)
    if not names:
        why = f" ({coverage.problem(opts.prometheus_url)})" if coverage.gone else ""
        raise NuclabError(
            f"experiment {opts.experiment!r}: Prometheus has no data between {_iso(start)} and "
            f"{_iso(end)} for {' or '.join(selectors)}{why}; nothing was written"
        )

    writer = DatasetWriter(opts.output)
    try:
        samples = 0
        grouped = families(names)
        queries = {n: metric_query(n, selectors) for n in names}
        fetched = dict(
            prom.fetch(
                queries, start_ms, end_ms, step_ms, workers=opts.workers, max_points=opts.max_points
            )
        )
        metric_files = {}
        for family, members in grouped.items():
            table = series_table((m, fetched[m]) for m in members)
            if table.num_rows == 0:
                continue
            rel = f"metrics/{safe_name(family)}.parquet"
            writer.write_table(rel, table, csv=opts.csv)
            metric_files[family] = {"file": rel, "metrics": members, "rows": table.num_rows}
            samples += table.num_rows
        if samples == 0:
            raise NuclabError(
                f"experiment {opts.experiment!r}: no samples between {_iso(start)} and "
                f"{_iso(end)}; nothing was written"
            )

        log_lines = 0
        log_query = opts.log_query or f'{{experiment="{opts.experiment}"}}'
        if loki is not None:
            records = (
                {"time": _ns_iso(ts), "labels": labels, "line": line}
                for ts, labels, line in loki.entries(
                    log_query, start_ms * 1_000_000, end_ms * 1_000_000
                )
            )
            log_lines = writer.write_jsonl("logs/logs.jsonl", records)

        manifest = _manifest(
            opts, core, release, window=(start, end, source), selectors=selectors, step_ms=step_ms
        )
        manifest["prometheus"]["version"] = prom_version
        manifest["prometheus"]["chunks_per_metric"] = len(
            plan_chunks(start_ms, end_ms, step_ms, opts.max_points)
        )
        manifest["coverage"] = coverage.manifest()
        manifest["metrics"] = metric_files
        manifest["logs"] = (
            {
                "url": opts.loki_url,
                "query": log_query,
                "lines": log_lines,
                "file": "logs/logs.jsonl",
                "coverage": log_coverage.manifest() if log_coverage is not None else None,
            }
            if loki is not None
            else None
        )
        path = writer.commit(manifest)
    except BaseException:
        writer.abort()
        raise
    return ExportResult(path, samples, log_lines, len(writer.files) + 1, coverage)


def _manifest(
    opts: ExportOptions,
    core: Any,
    release: cluster.ReleaseInfo | None,
    *,
    window: tuple[datetime, datetime, str],
    selectors: list[str],
    step_ms: int,
) -> dict[str, Any]:
    start, end, source = window
    m: dict[str, Any] = {
        "format": FORMAT,
        "experiment": opts.experiment,
        "created": _iso(datetime.now(UTC)),
        "window": {"start": _iso(start), "end": _iso(end), "source": source},
        "nuclab": nuclab_commit(),
        "prometheus": {
            "url": opts.prometheus_url,
            "selectors": selectors,
            "step_seconds": step_ms / 1000,
            "max_points_per_query": opts.max_points,
        },
        "spec": None,
        "chart": None,
        "release": None,
        "nodes": None,
        "pods": None,
        "images": None,
        "k3s_versions": None,
        "rerun_of": None,
        "network": None,
    }
    if release is not None:
        latest = release.latest
        meta = latest.get("chart", {}).get("metadata", {})
        m["spec"] = latest.get("config") or {}
        # made by `nuclab rerun`: the dataset it came from, and what differed from it
        m["rerun_of"] = recorded_parent(m["spec"])
        m["chart"] = {k: meta.get(k) for k in ("name", "version", "appVersion")}
        info = latest.get("info", {})
        m["release"] = {
            "name": release.name,
            "namespace": latest.get("namespace"),
            "revision": latest.get("version"),
            "status": info.get("status"),
            "first_deployed": info.get("first_deployed"),
            "last_deployed": info.get("last_deployed"),
            "deleted": info.get("deleted") or None,
        }
    if core is not None:
        m["nodes"] = cluster.nodes_info(core)
        m["k3s_versions"] = sorted(
            {n["kubelet_version"] for n in m["nodes"] if n["kubelet_version"]}
        )
        m["pods"] = cluster.pods_info(core, opts.experiment, opts.namespace)
        m["network"] = accuracy.links(m)
        images = {(c["image"], c["image_id"]) for p in m["pods"] for c in p["containers"]}
        m["images"] = [{"image": i, "digest": d} for i, d in sorted(images, key=str)]
    return m
