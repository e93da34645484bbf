"""Export an experiment into a dataset: Prometheus metrics as Parquet (CSV on request), Loki
logs as JSON lines, and ``manifest.json`` with the provenance and a checksum of every file."""

from __future__ import annotations
