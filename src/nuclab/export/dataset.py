"""Writing a dataset folder atomically: everything goes to a hidden temporary folder next to the
target, which is renamed into place only once every file and the manifest are complete."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from nuclab.errors import NuclabError, ValidationError
from nuclab.export.prom import Series

_HIST_SUFFIXES = ("_bucket", "_sum", "_count")
_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def families(names: Iterable[str]) -> dict[str, list[str]]:
    """Metric names grouped by family: a histogram's _bucket/_sum/_count go into one file."""
    names = sorted(set(names))
    known = set(names)
    out: dict[str, list[str]] = {}
    for name in names:
        family = name
        for suffix in _HIST_SUFFIXES:
            base = name.removesuffix(suffix)
            if base != name and f"{base}_bucket" in known:
                family = base
                break
        out.setdefault(family, []).append(name)
    return out


def series_table(named: Iterable[tuple[str, list[Series]]]) -> pa.Table:
    """One long table: metric, timestamp (UTC, ms), value, then one column per label."""
    all_series = [(name, s) for name, group in named for s in group if s.timestamps_ms]
    label_names = sorted({k for _, s in all_series for k in s.labels if k != "__name__"})
    counts = np.array([len(s.timestamps_ms) for _, s in all_series], dtype=np.int64)
    ts = np.fromiter(
        (t for _, s in all_series for t in s.timestamps_ms), dtype=np.int64, count=counts.sum()
    )
    values = np.fromiter(
        (v for _, s in all_series for v in s.values), dtype=np.float64, count=counts.sum()
    )

    def repeated(per_series: list[str | None]) -> pa.DictionaryArray:
        dictionary = sorted({v for v in per_series if v is not None})
        index = {v: i for i, v in enumerate(dictionary)}
        codes = np.array([index.get(v, -1) for v in per_series], dtype=np.int32)
        rows = np.repeat(codes, counts)
        return pa.DictionaryArray.from_arrays(
            pa.array(rows, mask=rows < 0), pa.array(dictionary, type=pa.string())
        )

    columns = {
        "metric": repeated([name for name, _ in all_series]),
        "timestamp": pa.array(ts, type=pa.timestamp("ms", tz="UTC")),
        "value": pa.array(values, type=pa.float64()),
    }
    for label in label_names:
        columns[label] = repeated([s.labels.get(label) for _, s in all_series])
    return pa.table(columns)


def safe_name(name: str) -> str:
    return _SAFE.sub("_", name)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class DatasetWriter:
    """Collects files in ``<parent>/.<name>.partial-<id>``; ``commit`` renames it to ``final``."""

    def __init__(self, final: Path) -> None:
        self.final = final
        check_target(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir()
        self.files: list[dict[str, Any]] = []

    def path(self, relative: str) -> Path:
        p = self.tmp / relative
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add(self, relative: str, rows: int | None = None) -> None:
        p = self.tmp / relative
        with p.open("rb") as fh:
            os.fsync(fh.fileno())
        entry: dict[str, Any] = {"path": relative, "bytes": p.stat().st_size, "sha256": sha256(p)}
        if rows is not None:
            entry["rows"] = rows
        self.files.append(entry)

    def write_table(self, relative: str, table: pa.Table, *, csv: bool) -> None:
        pq.write_table(table, self.path(relative), compression="zstd")
        self.add(relative, table.num_rows)
        if csv:
            rel_csv = relative.removesuffix(".parquet") + ".csv"
            plain = table.cast(
                pa.schema(
                    [
                        pa.field(
                            f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type
                        )
                        for f in table.schema
                    ]
                )
            )
            pacsv.write_csv(plain, self.path(rel_csv))
            self.add(rel_csv, table.num_rows)

    def write_jsonl(self, relative: str, records: Iterator[dict[str, Any]]) -> int:
        n = 0
        with self.path(relative).open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False, sort_keys=True))
                fh.write("\n")
                n += 1
        self.add(relative, n)
        return n

    def commit(self, manifest: dict[str, Any]) -> Path:
        manifest = {**manifest, "files": sorted(self.files, key=lambda f: f["path"])}
        mpath = self.path("manifest.json")
        mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        with mpath.open("rb") as fh:
            os.fsync(fh.fileno())
        check_target(self.final)  # someone may have created it meanwhile
        os.rename(self.tmp, self.final)
        with contextlib.suppress(OSError):  # make the rename itself durable
            fd = os.open(self.final.parent, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_target(final: Path) -> None:
    if final.exists() or final.is_symlink():
        raise ValidationError(
            "output",
            str(final),
            "a folder that does not exist yet (a dataset is never overwritten)",
        )
    if final.parent.exists() and not final.parent.is_dir():
        raise NuclabError(f"output: {str(final.parent)!r} is not a folder")
