"""Time from command start to all peers Running: experiment.yml, nuclab create, helm install --wait.

Same chart, same values (nuclab.spec.to_values of the same spec), same simulated lab; each run
starts from nothing and the experiment is deleted (untimed) after it. Prints the median of each
path per peer count and its ratio to plain helm (goal: within 1.5x).

By default on a lab of --nodes simulated nodes (12: 9 workers hold 990 pods; inventory/sim's
4 workers hold 440), generated with bench/sim_lab.py's generator, brought up (sim.yml and
labels.yml, untimed) and stopped after; --nodes 6 uses inventory/sim as it runs.

    .venv/bin/python bench/experiment_create.py [--peers 10 100 500] [--runs 3] [--nodes 12]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from kubernetes import client, config

from nuclab import deploy, paths, spec
from nuclab.kube import Kube

REPO = Path(__file__).resolve().parents[1]
TOOLS = paths.tools_bin()
BIN = Path(sys.executable).parent
NAME = "bench"
NAMESPACE = "nuclab"
INVENTORY = REPO / "inventory/sim"  # main() points it at the generated lab


def env() -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "PATH": f"{BIN}{os.pathsep}{TOOLS}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(INVENTORY / "artifacts/kubeconfig"),
    }


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def generated_inventory(root: Path, nodes: int) -> Path:
    """bench/sim_lab.py's lab of ``nodes`` nodes (bench/ is not a package: load it by path)."""
    loader = importlib.util.spec_from_file_location("sim_lab", REPO / "bench/sim_lab.py")
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module.generated_inventory(root, nodes)


def lab(*playbooks: str) -> None:
    for playbook in playbooks:
        run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY), playbook])


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
        cmd = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "experiment.yml", *extra]
    elif path == "nuclab create":
        cmd = [str(BIN / "nuclab"), "create", "-i", str(INVENTORY), "--quiet"]
        cmd += ["--name", NAME, "--peers", str(peers)]
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
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--nodes", type=int, default=12, help="simulated nodes (6 = inventory/sim, as it runs)"
    )
    parser.add_argument(
        "--keep-sim-lab",
        action="store_true",
        help="do not stop inventory/sim's lab first (it runs in another network namespace)",
    )
    parser.add_argument(
        "--chart",
        default=str(REPO / "charts/experiment"),
        help="chart for plain helm (the playbook's is experiment_chart_ref in the inventory)",
    )
    args = parser.parse_args()
    global INVENTORY  # noqa: PLW0603 (one lab per run; every helper reads it)
    with tempfile.TemporaryDirectory(prefix="nuclab-bench-") as tmp:
        if args.nodes != 6:
            if not args.keep_sim_lab:
                lab("playbooks/sim_down.yml")  # inventory/sim's lab holds the ports
            INVENTORY = generated_inventory(Path(tmp), args.nodes)
            lab("playbooks/sim.yml", "playbooks/labels.yml")
        try:
            measure(args)
        finally:
            if args.nodes != 6:
                lab("playbooks/sim_down.yml")
    return 0


def measure(args: argparse.Namespace) -> None:
    kubeconfig = INVENTORY / "artifacts/kubeconfig"
    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    nodes = len(core.list_node().items)
    # The namespace as the role makes it, untimed: plain helm needs it too.
    deploy.ensure_namespace(Kube(str(kubeconfig)), NAMESPACE)
    print(f"lab: {INVENTORY.name}, {nodes} nodes; load average {load()}")
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
        print(f"       load average {load()}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
