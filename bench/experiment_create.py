"""Time from command start to all peers Running: experiment.yml, nuclab create, helm install --wait.

Same chart, same values (nuclab.spec.to_values of the same spec), same simulated lab; each run
starts from nothing and the experiment is deleted (untimed) after it. Prints the median of each
path per peer count and its ratio to plain helm (goal: within 1.5x).

    .venv/bin/python bench/experiment_create.py [--peers 10 100 400] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client, config

from nuclab import spec

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("NUCLAB_CACHE", Path.home() / ".cache/nuclab")) / "tools/bin"
KUBECONFIG = REPO / "inventory/sim/artifacts/kubeconfig"
BIN = Path(sys.executable).parent
NAME = "bench"
NAMESPACE = "nuclab"


def env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{BIN}{os.pathsep}{TOOLS}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(KUBECONFIG),
    }


def fields(peers: int) -> dict[str, object]:
    # 0.01 cores and 8 MiB: the largest runs fit the simulated lab's 4 workers (16 cores).
    return {"name": NAME, "peers": peers, "cpu": 0.01, "ram": 8}


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def running(core: client.CoreV1Api) -> int:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=f"nuclab.io/experiment={NAME}")
    return sum(1 for p in pods.items if p.status.phase == "Running")


def remove(core: client.CoreV1Api) -> None:
    subprocess.run(
        [str(TOOLS / "helm"), "uninstall", spec.fullname(NAME), "-n", NAMESPACE, "--wait"],
        env=env(),
        capture_output=True,
        check=False,
    )
    selector = f"nuclab.io/experiment={NAME}"
    while core.list_namespaced_pod(NAMESPACE, label_selector=selector).items:
        time.sleep(0.5)


def timed(path: str, peers: int, values_file: Path, core: client.CoreV1Api, chart: str) -> float:
    f = fields(peers)
    if path == "experiment.yml":
        extra = [arg for key, value in f.items() for arg in ("-e", f"{key}={value}")]
        cmd = [str(BIN / "ansible-playbook"), "-i", "inventory/sim", "experiment.yml", *extra]
    elif path == "nuclab create":
        cmd = [str(BIN / "nuclab"), "create", "--quiet", "--name", NAME, "--peers", str(peers)]
        cmd += ["--cpu", str(f["cpu"]), "--ram", str(f["ram"])]
    else:
        cmd = [
            str(TOOLS / "helm"), "install", spec.fullname(NAME), chart,
            "-n", NAMESPACE, "--values", str(values_file), "--wait", "--timeout", "15m",
        ]  # fmt: skip
    start = time.monotonic()
    run(cmd)
    elapsed = time.monotonic() - start
    assert running(core) == peers, f"{path}: {running(core)} of {peers} running after the command"
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 100, 400])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--chart",
        default=str(REPO / "charts/experiment"),
        help="chart for plain helm (the playbook's is experiment_chart_ref in the inventory)",
    )
    args = parser.parse_args()
    core = client.CoreV1Api(config.new_client_from_config(str(KUBECONFIG)))
    paths = ("helm install --wait", "experiment.yml", "nuclab create")
    remove(core)
    print(f"{'peers':>5}  {'path':<20} {'median s':>9} {'vs helm':>8}  runs")
    for peers in args.peers:
        with tempfile.TemporaryDirectory() as tmp:
            values_file = Path(tmp) / "values.yaml"
            values_file.write_text(yaml.safe_dump(spec.to_values(spec.parse(fields(peers)))))
            times: dict[str, list[float]] = {p: [] for p in paths}
            for _ in range(args.runs):
                for path in paths:  # interleaved: drift in the lab hits every path alike
                    times[path].append(timed(path, peers, values_file, core, args.chart))
                    remove(core)
        base = statistics.median(times[paths[0]])
        for path in paths:
            median = statistics.median(times[path])
            runs = " ".join(f"{t:.1f}" for t in times[path])
            print(f"{peers:>5}  {path:<20} {median:>9.2f} {median / base:>7.2f}x  {runs}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
