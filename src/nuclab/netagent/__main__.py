"""``python -m nuclab.netagent``: the node agent (the DaemonSet's entry point)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from nuclab.netagent import agent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nuclab.netagent", description=__doc__)
    parser.add_argument("--node", default=agent.node_name(),
                        help="this node's name (default $NODE_NAME)")  # fmt: skip
    parser.add_argument("--interface", default="eth0", help="the peers' device (default eth0)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument("--metrics-port", type=int, default=9404, help="/metrics (0 = off)")
    parser.add_argument("--proc", type=Path, default=Path("/proc"), help="the host's /proc")
    parser.add_argument("--kubeconfig", help="a kubeconfig (default: the pod's service account)")
    args = parser.parse_args(argv)
    if not args.node:
        parser.error("--node: empty; the node's name is required (or $NODE_NAME)")
    if not 0 < args.interval <= 3600:
        parser.error(f"--interval: {args.interval} is not allowed; 0 to 3600 seconds")
    if not 0 <= args.metrics_port < 65536:
        parser.error(f"--metrics-port: {args.metrics_port} is not allowed; 0 to 65535")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from kubernetes import client, config
    from prometheus_client import start_http_server

    if args.kubeconfig:
        config.load_kube_config(args.kubeconfig)
    else:
        config.load_incluster_config()
    if args.metrics_port:
        start_http_server(args.metrics_port)
    settings = agent.Settings(node=args.node, interface=args.interface, interval=args.interval,
                              proc=args.proc)  # fmt: skip
    return agent.run(settings, client.CoreV1Api())


if __name__ == "__main__":
    sys.exit(main())
