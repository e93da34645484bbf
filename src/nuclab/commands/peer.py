"""``nuclab peer``: the default gossip workload of an experiment's peers."""

from __future__ import annotations

import argparse
import logging

from nuclab import peer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "peer",
        help="run the default gossip peer (publish, relay, count, time)",
        description=(
            "Connect to --connect-to peers, publish --msg-size bytes every --msg-rate ms, relay "
            "what arrives once, and export message counts and delivery latency on /metrics. "
            "Flags override the NUCLAB_* environment the experiment chart sets."
        ),
    )
    peer.add_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = peer.from_args(args)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=None
    )
    return peer.run(cfg)
