"""``nuclab stats NAME``: what a running experiment's peers measured (nuclab.stats).

Exit codes: 0 measured (also when every peer is simulated: then there is nothing to read); 1 the
lab's API cannot be reached; 2 bad input; 3 the experiment does not exist.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from typing import Any

from nuclab import experiments, spec, stats
from nuclab.commands.experiment import _common, lab_target
from nuclab.errors import NotFoundError
from nuclab.kube import ApiError, Kube, LabError

HELP = "show what a running experiment's peers measured (delivery, latency, probe RTT)"


def read(kube: Kube, namespace: str, name: str) -> stats.Stats:
    """Read every real peer's endpoints of experiment ``name`` and sum them."""
    label = urllib.parse.quote(f"{experiments.EXPERIMENT_LABEL}={name}", safe="")
    found = kube.get(f"/apis/apps/v1/namespaces/{namespace}/statefulsets?labelSelector={label}")
    if not found.get("items"):
        raise NotFoundError(f"experiment '{name}' does not exist in namespace {namespace}")
    selector = urllib.parse.quote(
        f"{experiments.EXPERIMENT_LABEL}={name},app.kubernetes.io/component=peer", safe=""
    )
    pods = kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
    try:
        nodes = kube.get("/api/v1/nodes").get("items") or []
    except ApiError as exc:
        if exc.status not in (401, 403):
            raise
        nodes = []
    simulated_nodes = experiments.simulated_nodes(nodes)
    peers: dict[str, stats.Scrape] = {}
    probes: dict[str, stats.Scrape] = {}
    unreachable: dict[str, str] = {}
    simulated = 0
    for pod in pods.get("items") or []:
        pod_name = pod["metadata"]["name"]
        if (pod.get("spec") or {}).get("nodeName") in simulated_nodes:
            simulated += 1
            continue
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase != "Running":
            unreachable[pod_name] = phase
            continue
        try:
            peers[pod_name] = _scrape(kube, namespace, pod, stats.PEER_PORT)
            if stats.container_port(pod, *stats.PROBE_PORT) is not None:
                probes[pod_name] = _scrape(kube, namespace, pod, stats.PROBE_PORT)
        except (LabError, ValueError) as exc:
            peers.pop(pod_name, None)
            unreachable[pod_name] = " ".join(str(exc).split())
    return stats.summarize(
        name, namespace, peers, probes, simulated=simulated, unreachable=unreachable
    )


def _scrape(kube: Kube, namespace: str, pod: dict[str, Any], port: tuple[str, int]) -> stats.Scrape:
    number = stats.container_port(pod, *port)
    path = stats.proxy_path(namespace, pod["metadata"]["name"], number or port[1])
    return stats.parse_metrics(kube.get_text(path))


def cmd_stats(args: argparse.Namespace) -> int:
    spec.check_name(args.name)
    kubeconfig, namespace = lab_target(args)
    if kubeconfig is None:
        raise LabError(
            "no kubeconfig: pass --kubeconfig, or bring the lab up "
            "(site.yml writes the inventory's lab_kubeconfig)"
        )
    measured = read(Kube(kubeconfig), namespace, args.name)
    sys.stdout.write(stats.format_stats(measured, args.output))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "stats",
        help=HELP,
        description=(
            "Read each real peer's metrics (and its probe sidecar's) through the API server's "
            "pod proxy and print messages sent, delivered against expected, duplicates, delivery "
            "latency and probe RTT p50/p99. Peers on simulated (kwok) nodes are counted, not read."
        ),
    )
    parser.add_argument("name", help=spec.NAME_HELP)
    parser.add_argument("-o", "--output", choices=stats.OUTPUTS, default="table")
    _common(parser, mutating=False)
    parser.set_defaults(func=cmd_stats)
