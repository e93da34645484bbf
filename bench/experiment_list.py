"""`nuclab list` against `kubectl get statefulsets -l nuclab.io/experiment` with many experiments.

Creates E experiments of P peers (default 50 x 20) with plain helm installs of the experiment
chart (setup, untimed), then times each listing R times, interleaved, and prints medians.
The peers are pinned to the kwok nodes (`node-kind=kwok`): started on the real nodes, a thousand
of them would load the machine that runs the listings. Pods beyond the kwok workers' capacity
(2 x 110 pods in inventory/sim) stay Pending: both commands read the StatefulSets only, so that
does not change what is measured.

    .venv/bin/python bench/experiment_list.py [--experiments 50] [--peers 20] [--runs 10] [--keep]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from nuclab import paths, spec

REPO = Path(__file__).resolve().parents[1]
TOOLS = paths.tools_bin()
KUBECONFIG = REPO / "inventory/sim/artifacts/kubeconfig"
BIN = Path(sys.executable).parent
NAMESPACE = "nuclab"


def env() -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(KUBECONFIG), "NUCLAB_REPO": str(REPO)}


def helm(*args: str) -> None:
    proc = subprocess.run(
        [str(TOOLS / "helm"), *args], env=env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"helm {' '.join(args)} failed: {proc.stderr}")


def install(name: str, peers: int, tmp: Path, chart: str) -> None:
    values = spec.to_values(
        spec.parse(
            {
                "name": name,
                "peers": peers,
                "cpu": 0.001,
                "ram": 8,
                "node_labels": {"node-kind": "kwok"},
            }
        )
    )
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    helm("upgrade", "--install", spec.fullname(name), chart,
         "-n", NAMESPACE, "--create-namespace", "--values", str(path))  # fmt: skip


def timed(cmd: list[str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, check=True)
    return time.monotonic() - start, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--peers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="leave the experiments running")
    parser.add_argument("--chart", default=str(REPO / "charts/experiment"))
    args = parser.parse_args()
    names = [f"list{i:03d}" for i in range(args.experiments)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: install(n, args.peers, Path(tmp), args.chart), names))
    commands = {
        "nuclab list": [str(BIN / "nuclab"), "list"],
        "nuclab list -o json": [str(BIN / "nuclab"), "list", "-o", "json"],
        "kubectl get sts -l": [
            str(TOOLS / "kubectl"),
            "get",
            "statefulsets",
            "-n",
            NAMESPACE,
            "-l",
            "nuclab.io/experiment",
        ],
    }
    times: dict[str, list[float]] = {c: [] for c in commands}
    for _ in range(args.runs):
        for label, cmd in commands.items():
            elapsed, out = timed(cmd)
            if label == "nuclab list":
                rows = [line for line in out.splitlines()[1:] if line.startswith("list")]
                assert len(rows) == args.experiments, f"{len(rows)} rows"
            times[label].append(elapsed)
    base = statistics.median(times["kubectl get sts -l"])
    print(f"{args.experiments} experiments x {args.peers} peers, {args.runs} runs each")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:<22} median {median * 1000:7.0f} ms  {median / base:5.2f}x kubectl")
    if not args.keep:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: helm("uninstall", spec.fullname(n), "-n", NAMESPACE), names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
