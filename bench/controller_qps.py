"""500 kwok peers to Running at the controller-manager's default client rate and at the lab's.

Kubernetes' controller-manager sends at most 20 requests/s (burst 30) unless told otherwise,
which paces a StatefulSet's pod creations; nuclab's lab setting `lab_controller_manager_qps` /
`_burst` (inventory group_vars; the simulated lab's controller-manager and K3s'
`kube-controller-manager-arg`) raises it. Each run times `nuclab create` of the same
experiment (command start to all peers Running) under each setting, interleaved, on one
generated lab of --nodes kwok nodes (bench/sim_lab.py); the controller-manager is restarted
with the setting in between (untimed, `sim.yml`). Prints the medians and
their ratio.

    .venv/bin/python bench/controller_qps.py [--peers 500] [--runs 3] [--nodes 12]
        [--setting 20/30 --setting 100/200]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from nuclab import deploy
from nuclab.kube import Kube

REPO = Path(__file__).resolve().parents[1]


def _bench(name: str):  # type: ignore[no-untyped-def]
    """A module of bench/ (not a package) by its file name."""
    loader = importlib.util.spec_from_file_location(name, REPO / f"bench/{name}.py")
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return module


create = _bench("experiment_create")


def apply(setting: tuple[int, int]) -> None:
    qps, burst = setting
    create.run(
        [
            str(create.BIN / "ansible-playbook"), "-i", str(create.INVENTORY),
            "playbooks/sim.yml",
            "-e", f"lab_controller_manager_qps={qps}",
            "-e", f"lab_controller_manager_burst={burst}",
        ]
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument(
        "--setting",
        action="append",
        help="QPS/BURST of the controller-manager (default: 20/30 and 100/200)",
    )
    args = parser.parse_args()
    settings = [tuple(int(x) for x in s.split("/")) for s in (args.setting or ["20/30", "100/200"])]
    with tempfile.TemporaryDirectory(prefix="nuclab-bench-") as tmp:
        create.INVENTORY = create.generated_inventory(Path(tmp), args.nodes)
        create.lab("playbooks/sim.yml", "playbooks/labels.yml")
        try:
            kubeconfig = str(create.INVENTORY / "artifacts/kubeconfig")
            core = client.CoreV1Api(config.new_client_from_config(kubeconfig))
            deploy.ensure_namespace(Kube(kubeconfig), create.NAMESPACE)
            print(f"lab: {args.nodes} kwok nodes, {args.peers} peers; load {create.load()}")
            times: dict[tuple[int, int], list[float]] = {s: [] for s in settings}
            for _ in range(args.runs):
                for setting in settings:  # interleaved: drift in the lab hits both alike
                    apply(setting)  # type: ignore[arg-type]
                    time.sleep(2)
                    times[setting].append(  # type: ignore[index]
                        create.timed("nuclab create", args.peers, Path(tmp), core, "")
                    )
                    create.remove(core)
                print(f"  load {create.load()}", flush=True)
            base = statistics.median(times[settings[0]])  # type: ignore[index]
            print(f"{'qps/burst':>10} {'median s':>9} {'vs first':>8}  runs")
            for setting, runs in times.items():
                median = statistics.median(runs)
                label = f"{setting[0]}/{setting[1]}"
                joined = " ".join(f"{t:.1f}" for t in runs)
                print(f"{label:>10} {median:>9.2f} {median / base:>7.2f}x  {joined}")
        finally:
            create.lab("playbooks/sim_down.yml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
