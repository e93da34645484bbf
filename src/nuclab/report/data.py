"""Reading a dataset folder back: the manifest and each metric family as per-series arrays."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nuclab.errors import NotFoundError, NuclabError, ValidationError
from nuclab.export.dataset import sha256
from nuclab.histogram import histogram_quantile

PEER_LABELS = ("peer", "pod", "instance")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class Series:
    metric: str
    labels: dict[str, str]
    t: np.ndarray  # seconds since the epoch (UTC)
    v: np.ndarray

    @property
    def peer(self) -> str:
        for key in PEER_LABELS:
            if self.labels.get(key):
                return self.labels[key]
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) or self.metric


class Dataset:
    def __init__(self, path: Path) -> None:
        self.path = path
        manifest = path / "manifest.json"
        if not manifest.is_file():
            raise NotFoundError(f"dataset {str(path)!r}: no manifest.json (not a nuclab dataset)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise NuclabError(f"dataset {str(path)!r}: manifest.json is not JSON: {exc}") from exc
        self._cache: dict[str, list[Series]] = {}
        self._families = _families(path, self.manifest)
        verify_files(path, self.manifest, self._families.values())

    def family(self, name: str) -> list[Series]:
        """Every series of a metric family (empty when the dataset has none)."""
        if name in self._cache:
            return self._cache[name]
        rel = self._families.get(name)
        if rel is None:
            return []
        try:
            table = pq.read_table(self.path / rel)
        except (OSError, pa.ArrowException) as exc:
            raise NuclabError(f"dataset {str(self.path)!r}: cannot read {rel}: {exc}") from exc
        missing = {"metric", "timestamp", "value"} - set(table.column_names)
        if missing:
            raise NuclabError(
                f"dataset {str(self.path)!r}: {rel} has no column {', '.join(sorted(missing))} "
                "(not written by nuclab export)"
            )
        label_cols = [c for c in table.column_names if c not in ("metric", "timestamp", "value")]
        ts = table["timestamp"].cast("int64").to_numpy() / 1000.0
        values = table["value"].to_numpy()
        keys = [table[c].to_pylist() for c in ("metric", *label_cols)]
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(zip(*keys, strict=True)):
            groups.setdefault(key, []).append(i)
        out = []
        for key, rows in groups.items():
            idx = np.asarray(rows)
            labels = {c: v for c, v in zip(label_cols, key[1:], strict=True) if v is not None}
            order = np.argsort(ts[idx], kind="stable")
            out.append(Series(key[0], labels, ts[idx][order], values[idx][order]))
        self._cache[name] = out
        return out

    def families(self) -> list[str]:
        """The metric families the dataset holds."""
        return sorted(self._families)

    def metric(self, family: str, metric: str) -> list[Series]:
        return [s for s in self.family(family) if s.metric == metric]


METRICS_ALLOWED = (
    'a mapping of metric family to {"file": "metrics/<family>.parquet", ...} inside the '
    "dataset, as nuclab export writes it"
)


FILES_ALLOWED = (
    'a list of {"path": "<file inside the dataset>", "sha256": "<64 hex digits>", ...}, '
    "as nuclab export writes it"
)


def _relative(rel: object) -> bool:
    return isinstance(rel, str) and not Path(rel).is_absolute() and ".." not in Path(rel).parts


def verify_files(path: Path, manifest: dict[str, Any], needed: Iterable[str]) -> None:
    """Every file the manifest lists has the sha256 it had when exported, and every file the
    report reads (``needed``) is listed: a dataset changed after its export is refused whole."""
    where = f"dataset {str(path)!r}"
    files = manifest.get("files")
    if not isinstance(files, list):
        raise ValidationError(f"{where}: manifest.json files", files, FILES_ALLOWED)
    expected = {}
    for entry in files:
        rel = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not _relative(rel) or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ValidationError(f"{where}: manifest.json files", entry, FILES_ALLOWED)
        expected[rel] = digest
    for rel in needed:
        if rel not in expected:
            raise NuclabError(
                f"{where}: {rel} is not listed in manifest.json files (no checksum to check it)"
            )
    for rel, digest in expected.items():
        file = path / rel
        if not file.is_file():
            raise NuclabError(f"{where}: {rel} is missing; the manifest lists it (sha256 {digest})")
        got = sha256(file)
        if got != digest:
            raise NuclabError(
                f"{where}: {rel} has sha256 {got}, the manifest expects {digest} "
                "(the file changed after the export)"
            )


def _families(path: Path, manifest: object) -> dict[str, str]:
    """Metric family -> its Parquet file (relative), from a manifest checked on the way."""
    where = f"dataset {str(path)!r}: manifest.json"
    if not isinstance(manifest, dict):
        raise ValidationError(where, type(manifest).__name__, "a JSON object")
    metrics = {} if manifest.get("metrics") is None else manifest["metrics"]
    if not isinstance(metrics, dict):
        raise ValidationError(f"{where} metrics", metrics, METRICS_ALLOWED)
    found = {}
    for family, info in metrics.items():
        rel = info.get("file") if isinstance(info, dict) else None
        if not _relative(rel):
            raise ValidationError(f"{where} metrics.{family}", info, METRICS_ALLOWED)
        found[family] = rel
    for key, kind in (("nodes", list), ("window", dict), ("k3s_versions", list)):
        if manifest.get(key) is not None and not isinstance(manifest[key], kind):
            allowed = "a list" if kind is list else "a mapping"
            raise ValidationError(f"{where} {key}", manifest[key], f"{allowed}, or null")
    nodes = manifest.get("nodes") or []
    if not all(isinstance(node, dict) for node in nodes):
        raise ValidationError(f"{where} nodes", nodes, "a list of mappings, or null")
    return found


def once_per_pod(series: list[Series]) -> list[Series]:
    """cAdvisor's series with each pod counted once. cAdvisor gives a series per cgroup: the
    pod's (no ``container`` label), each container's, and the sandbox's (``container="POD"``);
    summing them all counts a pod twice. Each pod keeps its containers' own series where it has
    them, else its pod-level series (a kubelet whose cAdvisor is not given the containerd
    socket, ``--containerd``, gives only those). Series of other metrics pass unchanged."""
    by_pod: dict[str, list[Series]] = {}
    for s in series:
        by_pod.setdefault(s.peer, []).append(s)
    kept = []
    for group in by_pod.values():
        own = [s for s in group if s.labels.get("container", "") not in ("", "POD")]
        kept += own or [s for s in group if s.labels.get("container", "") == ""]
    return kept


def _deltas(s: Series) -> np.ndarray:
    """A counter's growth between samples; a reset (a restarted process) counts from zero, as
    PromQL's ``rate`` and ``increase`` count it."""
    dv = np.diff(s.v)
    return np.where(dv < 0, s.v[1:], dv)


def increase(s: Series) -> float:
    """How much a counter grew over the window (0 with fewer than two samples)."""
    return float(np.sum(_deltas(s))) if len(s.v) >= 2 else 0.0


RATE_WINDOW_SECONDS = 60.0


def rate(s: Series, window: float = RATE_WINDOW_SECONDS) -> tuple[np.ndarray, np.ndarray]:
    """Per-second rate of a counter over the ``window`` seconds before each sample (resets count
    from zero), as PromQL's ``rate(x[1m])``. A window of several samples, not one step: an export
    whose step is about the scrape interval holds the same scrape twice now and then, which
    step-by-step differences turn into zeros beside doubled rates."""
    if len(s.t) < 2:
        return np.array([]), np.array([])
    done = np.concatenate([[0.0], np.cumsum(_deltas(s))])  # the increase up to each sample
    start = np.searchsorted(s.t, s.t - window, side="left")
    span = s.t - s.t[start]
    keep = span > 0
    return s.t[keep], (done[keep] - done[start[keep]]) / span[keep]


def overall_percentiles(
    buckets: list[Series], quantiles: Sequence[float] = (0.5, 0.9, 0.99)
) -> dict[str, float]:
    """p50/p90/p99 (seconds) over the whole window, all series' buckets summed by bound."""
    merged: dict[float, float] = defaultdict(float)
    for b in buckets:
        bounds, counts = bucket_increase([b])
        merged[float(bounds[0])] += float(counts[0])
    ordered = sorted(merged)
    counts = [merged[b] for b in ordered]
    return {f"p{round(q * 100)}": histogram_quantile(q, ordered, counts) for q in quantiles}


def bucket_increase(buckets: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    """(bounds, cumulative counts) of a histogram's increase over the whole window."""
    pairs = []
    for b in buckets:
        le = b.labels.get("le", "+Inf")
        bound = float("inf") if le in ("+Inf", "Inf") else float(le)
        inc = increase(b) if len(b.v) > 1 else float(b.v[-1]) if len(b.v) else 0.0
        pairs.append((bound, max(inc, 0.0)))
    pairs.sort()
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
