"""``nuclab export <name>``: an experiment's metrics, logs and provenance as a dataset folder."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nuclab import deploy, spec
from nuclab.commands.experiment import _common, inventory_dir, lab_target, repo_dir
from nuclab.errors import ValidationError
from nuclab.export import cluster

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
      help="Prometheus base URL (env NUCLAB_PROMETHEUS_URL, else the inventory's "
           "lab_prometheus_url)")  # fmt: skip
    a("--loki-url", default=os.environ.get("NUCLAB_LOKI_URL"),
      help="Loki base URL; without it no logs are exported (env NUCLAB_LOKI_URL, else the "
           "inventory's lab_loki_url)")  # fmt: skip
    a("--output", "-o", type=Path, help="dataset folder to create (default datasets/<name>)")
    _common(p, mutating=False)
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


def _lab(args: argparse.Namespace) -> tuple[str | None, str, str, str]:
    """The kubeconfig, namespace, Prometheus and Loki of the export. A window given with
    ``--start`` reads no lab unless one is named (``-i``, ``$NUCLAB_INVENTORY``, ``--kubeconfig``):
    it may be a Prometheus of another lab, or one without a cluster. Otherwise the window comes
    from the release, found where ``experiment.yml`` finds it (``lab_target``), and the URLs not
    given are the inventory's ``lab_prometheus_url`` and ``lab_loki_url``, as the export role
    reads them when ``nuclab delete`` exports first."""
    named = args.kubeconfig or args.inventory or os.environ.get("NUCLAB_INVENTORY")
    if args.start is not None and not named:
        namespace = args.namespace or cluster.HELM_NAMESPACE
        return None, namespace, args.prometheus_url or "", args.loki_url or ""
    kubeconfig, namespace = lab_target(args)
    prometheus_url, loki_url = args.prometheus_url, args.loki_url
    if prometheus_url is None or loki_url is None:
        found = deploy.lab_target(inventory_dir(args.inventory), repo_dir())
        prometheus_url = found.prometheus_url if prometheus_url is None else prometheus_url
        loki_url = found.loki_url if loki_url is None else loki_url
    return kubeconfig, namespace, prometheus_url, loki_url


def _run(args: argparse.Namespace) -> int:
    # pyarrow and numpy take ~0.6 s to import: only `nuclab export` pays for them.
    from nuclab.export import run

    kubeconfig, namespace, prometheus_url, loki_url = _lab(args)
    if not prometheus_url:
        raise ValidationError(
            "--prometheus-url",
            "",
            "the Prometheus base URL (or env NUCLAB_PROMETHEUS_URL, or the inventory's "
            "lab_prometheus_url)",
        )
    opts = run.ExportOptions(
        experiment=args.name,
        prometheus_url=prometheus_url,
        loki_url=loki_url,
        output=args.output or Path("datasets") / args.name,
        kubeconfig=kubeconfig,
        namespace=namespace,
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
