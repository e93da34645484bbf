"""``nuclab compare A B [C...]``: the key figures of exported datasets side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from nuclab.report import compare

    p = subparsers.add_parser(
        "compare",
        help="compare the key figures of exported datasets; fail on a regression",
        description=(
            "The key figures of each dataset beside the first (the baseline): delivery latency "
            "and probe RTT p50/p90/p99, messages published and delivered, delivery throughput, "
            "CPU and memory per peer, energy. A figure a dataset lacks is '-'. Exit 4 when a "
            f"figure is worse than --max-regression allows. Figures: {', '.join(compare.KEYS)}."
        ),
    )
    p.add_argument("datasets", nargs="+", type=Path, help="dataset folders (the first: baseline)")
    p.add_argument("--output", "-o", choices=compare.FORMATS, default="table")
    p.add_argument(
        "--max-regression",
        action="append",
        default=[],
        metavar="[FIGURE=]PERCENT%",
        help="how much worse than the baseline a figure may be (repeatable; exit 4 beyond it)",
    )
    p.add_argument(
        "--html", type=Path, metavar="FILE", help="also write a page with a bar chart per figure"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from nuclab.report import compare

    thresholds = compare.parse_thresholds(args.max_regression)
    if args.html is not None:
        from nuclab.report.page import check_output

        check_output("--html", args.html)
    result = compare.compare(args.datasets, thresholds)
    sys.stdout.write(compare.render(result, args.output))
    if args.html is not None:
        drawn = compare.write_html(result, args.html)
        print(f"compare: {args.html} ({len(drawn)} figures)", file=sys.stderr)
    for line in result.regressions:
        print(f"nuclab: regression: {line}", file=sys.stderr)
    return compare.REGRESSION_EXIT if result.regressions else 0
