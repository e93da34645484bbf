"""``nuclab export <name>``: an experiment's metrics, logs and provenance as a dataset folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nuclab import spec
from nuclab.errors import ValidationError

MAX_POINTS = 11_000  # nuclab.export.prom.MAX_POINTS (not imported here: see _run)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export an experiment's metrics and logs into a dataset (Parquet + manifest)",
        description=(
            "Read the experiment's window from its Helm release (or --start/--end), query "
            "Prometheus in chunks of at most 11,000 points per series, in parallel, and write "
            "Parquet per metric family, Loki logs as JSON lines and manifest.json (spec, coverage, "
            "versions, nodes, checksums). All times are UTC. The folder appears only when complete."
        ),
    )
    a = p.add_argument
    a("name", help=spec.NAME_HELP)
    a("--prometheus-url", default=os.environ.get("NUCLAB_PROMETHEUS_URL"),
      help="Prometheus base URL (env NUCLAB_PROMETHEUS_URL)")  # fmt: skip
    a("--loki-url", default=os.environ.get("NUCLAB_LOKI_URL", ""),
      help="Loki base URL; without it no logs are exported (env NUCLAB_LOKI_URL)")  # fmt: skip
    a("--output", "-o", type=Path, help="dataset folder to create (default datasets/<name>)")
    a("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="kubeconfig (env KUBECONFIG)")
    a("--namespace", default="nuclab", help="namespace of the experiment's release (nuclab)")
    a("--start", help="window start, RFC 3339 with Z/offset or epoch s (default: from release)")
    a("--end", help="window end (default: the release's deletion time, or now)")
    a("--step", type=float, default=15.0, help="seconds between samples (default 15)")
    a("--selector", action="append", default=[],
      help='series selector, repeatable (default: {experiment="<name>"} and its pods)')  # fmt: skip
    a("--log-query", default="", help='LogQL stream selector (default {experiment="<name>"})')
    a("--csv", action="store_true", help="also write each metric family as CSV")
    a("--workers", type=int, default=4, help="parallel queries (default 4)")
    a("--require-complete", action="store_true",
      help="exit 2, writing nothing, unless Prometheus still holds the whole window")  # fmt: skip
    a("--max-points", type=int, default=MAX_POINTS, help=argparse.SUPPRESS)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # pyarrow and numpy take ~0.6 s to import: only `nuclab export` pays for them.
    from nuclab.export import run

    if not args.prometheus_url:
        raise ValidationError(
            "--prometheus-url", "", "the Prometheus base URL (or env NUCLAB_PROMETHEUS_URL)"
        )
    opts = run.ExportOptions(
        experiment=args.name,
        prometheus_url=args.prometheus_url,
        loki_url=args.loki_url,
        output=args.output or Path("datasets") / args.name,
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        start=run.parse_utc("--start", args.start) if args.start else None,
        end=run.parse_utc("--end", args.end) if args.end else None,
        step=args.step,
        selectors=args.selector,
        log_query=args.log_query,
        csv=args.csv,
        workers=args.workers,
        max_points=args.max_points,
        require_complete=args.require_complete,
    )
    result = run.export(opts, warn=lambda line: print(f"nuclab: warning: {line}", file=sys.stderr))
    print(
        f"exported {opts.experiment}: {result.samples} samples, {result.log_lines} log lines, "
        f"{result.files} files in {result.path}"
    )
    return 0
