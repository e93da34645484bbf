"""``nuclab probe``: measure RTT and loss to the experiment's peers (or between nodes)."""

from __future__ import annotations

import argparse
import logging

from nuclab.probe import config, service


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="measure RTT and loss to peers (sidecar) or between nodes (--node)",
        description=(
            "Probe every peer with UDP echo (and a TCP connect every few rounds), answer the "
            "other probes, and export nuclab_peer_rtt_seconds and loss counters on /metrics. "
            "Flags override the NUCLAB_* environment the experiment chart sets."
        ),
    )
    config.add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config.from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return service.run(cfg)
