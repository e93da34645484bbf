"""Pod start-up latency on the simulated lab's real nodes, measured as kube-burner's podLatency.

Creates --pods pods (pinned to the real nodes in turn; image already on the node, as podLatency
excludes the pull) at each creation rate of --qps (0: all at once; kube-burner's jobs create at
a QPS of their own, 20 by default), the settings side by side in each run; watches them, and
records for each the time from its creation (the API's answer to the create) to each condition
kube-burner reports: PodScheduled, Initialized, ContainersReady, Ready, from the watch events as
they arrive (the conditions' own timestamps have one-second resolution). Prints P50/P95/P99 and
max of each per rate, against the Kubernetes SLO (P99 of create to Ready at most 5 s, image pull
excluded), then deletes the pods and, before the next run, waits until the real nodes' containerd
hold none of their containers (a run does not start beside the last one's teardown).

Also prints the real nodes' kubelet, containerd and kube-proxy memory (RSS) and CPU time,
before and while the pods run.

    .venv/bin/python bench/pod_startup_real.py [--pods 50] [--runs 3] [--qps 0,5] [--cpu 10m]
        [--image IMAGE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from nuclab.histogram import quantile as sample_quantile
from nuclab.paths import cache_dir

REPO = Path(__file__).resolve().parents[1]
KUBECONFIG = REPO / "inventory/sim/artifacts/kubeconfig"
RUN_DIR = REPO / "inventory/sim/.state/run"
NODES_DIR = REPO / "inventory/sim/.state/nodes"
NAMESPACE = "nuclab-bench"
CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def quantile(values: list[float], q: float) -> float:
    return sample_quantile(sorted(values), q)


def processes() -> dict[str, tuple[float, float]]:
    """RSS (MiB) and CPU seconds of each real node's kubelet, containerd and kube-proxy."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for pidfile in sorted(RUN_DIR.glob("*.pid")):
        if not pidfile.stem.startswith(("kubelet-", "containerd-", "kube-proxy-")):
            continue
        pid = pidfile.read_text().strip()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        found[pidfile.stem] = (rss / 1024, (int(stat[11]) + int(stat[12])) / tick)
    return found


def sandboxes_left() -> int:
    """Containers (pod sandboxes and theirs) the real nodes' containerd still hold (ctr, the
    CRI's namespace k8s.io)."""
    ctr = str(cache_dir() / "tools" / "bin" / "ctr")
    left = 0
    for sock in NODES_DIR.glob("*/containerd.sock"):
        listed = subprocess.run(
            [ctr, "-a", str(sock), "-n", "k8s.io", "containers", "ls", "-q"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        left += len(listed.stdout.split())
    return left


def rate_name(qps: float) -> str:
    return "all at once" if qps <= 0 else f"{qps:g} pods/s"


def pod(name: str, node: str, image: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "pod-startup"}},
        "spec": {
            "nodeName": None,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "c",
                    "image": image,
                    "imagePullPolicy": "Never",
                    # 50 pods fit on two cores whatever the limit: each requests 10m.
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "8Mi"},
                        "limits": {"cpu": cpu, "memory": "8Mi"},
                    },
                }
            ],
        },
    }


def run(
    core: Any, nodes: list[str], count: int, image: str, *, qps: float, cpu: str, baseline: int
) -> dict[str, list[float]]:
    created: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {}
    done = threading.Event()

    def follow() -> None:
        w = watch.Watch()
        pods = w.stream(core.list_namespaced_pod, NAMESPACE, label_selector="app=pod-startup")
        for event in pods:
            now = time.monotonic()
            obj = event["object"]
            got = seen.setdefault(obj.metadata.name, {})
            for cond in obj.status.conditions or []:
                if cond.status == "True" and cond.type in CONDITIONS:
                    got.setdefault(cond.type, now)
            if len(seen) == count and all("Ready" in s for s in seen.values()):
                w.stop()
                done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(1)
    begin = time.monotonic()
    for i in range(count):
        if qps > 0:  # the i-th create at i/qps s, as a client rate limiter paces them
            time.sleep(max(0.0, begin + i / qps - time.monotonic()))
        name = f"pod-{i}"
        core.create_namespaced_pod(NAMESPACE, pod(name, nodes[i % len(nodes)], image, cpu))
        created[name] = time.monotonic()
    during = None
    if done.wait(120):
        during = processes()
    latencies = {
        cond: [seen[n][cond] - created[n] for n in created if cond in seen.get(n, {})]
        for cond in CONDITIONS
    }
    core.delete_collection_namespaced_pod(NAMESPACE, label_selector="app=pod-startup")
    while core.list_namespaced_pod(NAMESPACE).items:
        time.sleep(1)
    deadline = time.monotonic() + 300
    while sandboxes_left() > baseline and time.monotonic() < deadline:
        time.sleep(1)
    latencies["_during"] = during  # type: ignore[assignment]
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--qps", default="0,5", help="creation rates to compare, pods/s (0: all at once)"
    )
    parser.add_argument(
        "--cpu",
        default="10m",
        help="each pod's CPU limit; runc's start of the sandbox and the container runs inside it",
    )
    parser.add_argument("--image", default="localhost/nuclab/pause:3.10")
    args = parser.parse_args()
    rates = [float(q) for q in args.qps.split(",")]
    core = client.CoreV1Api(config.new_client_from_config(str(KUBECONFIG)))
    nodes = sorted(
        n.metadata.name for n in core.list_node(label_selector="nuclab.io/node-kind=real").items
    )
    if not nodes:
        raise SystemExit("no real nodes: bring inventory/sim up first (make sim-up)")
    if not core.list_namespace(field_selector=f"metadata.name={NAMESPACE}").items:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    print(
        f"{args.pods} pods (CPU limit {args.cpu}) on {', '.join(nodes)}, {args.runs} runs, "
        f"load {load()}"
    )
    idle = processes()
    baseline = sandboxes_left()  # other pods' (none on an idle lab)
    during: dict[str, tuple[float, float]] | None = None
    per_rate: dict[float, list[dict[str, list[float]]]] = {q: [] for q in rates}
    for r in range(args.runs):
        for qps in rates:
            lat = run(core, nodes, args.pods, args.image, qps=qps, cpu=args.cpu, baseline=baseline)
            during = lat.pop("_during") or during  # type: ignore[assignment]
            per_rate[qps].append(lat)
            ready = lat["Ready"]
            print(
                f"run {r + 1}, {rate_name(qps)}: Ready {len(ready)}/{args.pods}, "
                f"P50 {quantile(ready, 0.5):.2f} s, P99 {quantile(ready, 0.99):.2f} s, "
                f"load {load()}"
            )
    for qps, per_run in per_rate.items():
        print(f"\n{rate_name(qps)}: condition  P50 s  P95 s  P99 s  max s   (medians over runs)")
        for cond in CONDITIONS:
            cells = [
                statistics.median(quantile(r[cond], q) for r in per_run) for q in (0.5, 0.95, 0.99)
            ]
            worst = statistics.median(max(r[cond]) for r in per_run)
            print(f"{cond:20s} {cells[0]:6.2f} {cells[1]:6.2f} {cells[2]:6.2f} {worst:6.2f}")
        p99 = statistics.median(quantile(r["Ready"], 0.99) for r in per_run)
        verdict = "met" if p99 <= 5 else "missed"
        print(f"SLO (P99 create to Ready <= 5 s, pull excluded): {verdict} (P99 {p99:.2f} s)")
    print("\nprocess               idle RSS MiB  with pods RSS MiB  CPU s during the runs")
    for name, (rss, cpu) in idle.items():
        busy = (during or {}).get(name, (float("nan"), cpu))
        print(f"{name:22s} {rss:12.1f} {busy[0]:18.1f} {busy[1] - cpu:10.1f}")
    core.delete_namespace(NAMESPACE)


if __name__ == "__main__":
    main()
