"""``nuclab report <dataset>``: a self-contained HTML page with the experiment's figures."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "report",
        help="render an exported dataset as one self-contained HTML page",
        description=(
            "CPU, memory, network up/down per peer, RTT heatmap and percentiles, message rate "
            "and delivery latency, as PNG figures inside one HTML file (no external files)."
        ),
    )
    p.add_argument("dataset", type=Path, help="dataset folder written by nuclab export")
    p.add_argument("--output", "-o", type=Path, help="HTML file (default <dataset>/report.html)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # matplotlib takes ~0.5 s to import: only `nuclab report` pays for it, not every command.
    from nuclab.report.page import write_report

    path, figures = write_report(args.dataset, args.output)
    print(f"report: {path} ({len(figures)} figures)")
    return 0
