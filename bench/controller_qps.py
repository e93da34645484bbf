"""500 kwok peers to Running at the control plane's default client rates and at the lab's.

Kubernetes' controller-manager sends at most 20 requests/s (burst 30) unless told otherwise,
which paces a StatefulSet's pod creations; nuclab's lab setting `lab_controller_manager_qps` /
`_burst` (inventory group_vars; the simulated lab's controller-manager and K3s'
`kube-controller-manager-arg`) raises it. Each run times `nuclab create` of the same
experiment (command start to all peers Running) under each setting, interleaved, on one
generated lab of --nodes kwok nodes (bench/sim_lab.py); the controller-manager is restarted
with the setting in between (untimed, `sim.yml`). The scheduler's client rate (a binding and
an Event per pod; Kubernetes' 50/s, burst 100) is the lab setting `lab_scheduler_qps`/`_burst`,
set after a colon. Prints the medians, their ratio, and when the last peer was created, bound
and Ready (seconds from the command's start): the stage that paces the run.

    .venv/bin/python bench/controller_qps.py [--peers 500] [--runs 3] [--nodes 12]
        [--setting 20/30 --setting 100/200:200/400 ...]
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


# A setting: the controller-manager's QPS/BURST, then (optionally) the scheduler's after a colon.
DEFAULT_SETTINGS = ("20/30:50/100", "100/200:50/100", "100/200:200/400")
COMPONENTS = ("lab_controller_manager", "lab_scheduler")


def apply(setting: str) -> None:
    extra: list[str] = []
    for prefix, pair in zip(COMPONENTS, setting.split(":"), strict=False):
        qps, burst = (int(x) for x in pair.split("/"))
        extra += ["-e", f"{prefix}_qps={qps}", "-e", f"{prefix}_burst={burst}"]
    cmd = [str(create.BIN / "ansible-playbook"), "-i", str(create.INVENTORY), "playbooks/sim.yml"]
    create.run(cmd + extra)


def _stamp(value: object) -> float:
    return value.timestamp()  # type: ignore[attr-defined]


def stages(core: client.CoreV1Api, started: float) -> tuple[float, float, float]:
    """Seconds from the command's start until the last peer was created (the StatefulSet
    controller), bound to a node (the scheduler) and Ready (kwok), from the pods' own
    timestamps (whole seconds, as the API server keeps them): which of the three paces the run."""
    pods = core.list_namespaced_pod(
        create.NAMESPACE, label_selector=f"nuclab.io/experiment={create.NAME}"
    ).items
    created = max(_stamp(p.metadata.creation_timestamp) for p in pods)

    def condition(pod: client.V1Pod, kind: str) -> float:
        (cond,) = (c for c in pod.status.conditions or [] if c.type == kind)
        return _stamp(cond.last_transition_time)

    scheduled = max(condition(p, "PodScheduled") for p in pods)
    ready = max(condition(p, "Ready") for p in pods)
    return created - started, scheduled - started, ready - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument(
        "--setting",
        action="append",
        help="the controller-manager's QPS/BURST[:the scheduler's QPS/BURST]"
        f" (default: {' '.join(DEFAULT_SETTINGS)})",
    )
    args = parser.parse_args()
    settings = args.setting or list(DEFAULT_SETTINGS)
    with tempfile.TemporaryDirectory(prefix="nuclab-bench-") as tmp:
        create.INVENTORY = create.generated_inventory(Path(tmp), args.nodes)
        create.lab("playbooks/sim.yml", "playbooks/labels.yml")
        try:
            kubeconfig = str(create.INVENTORY / "artifacts/kubeconfig")
            core = client.CoreV1Api(config.new_client_from_config(kubeconfig))
            deploy.ensure_namespace(Kube(kubeconfig), create.NAMESPACE)
            print(f"lab: {args.nodes} kwok nodes, {args.peers} peers; load {create.load()}")
            times: dict[str, list[float]] = {s: [] for s in settings}
            steps: dict[str, list[tuple[float, float, float]]] = {s: [] for s in settings}
            for _ in range(args.runs):
                for setting in settings:  # interleaved: drift in the lab hits both alike
                    apply(setting)
                    time.sleep(2)
                    started = time.time()
                    times[setting].append(
                        create.timed("nuclab create", args.peers, Path(tmp), core, "")
                    )
                    steps[setting].append(stages(core, started))
                    create.remove(core)
                print(f"  load {create.load()}", flush=True)
            base = statistics.median(times[settings[0]])
            print(
                f"{'qps/burst (cm:sched)':>20} {'median s':>9} {'vs first':>8}"
                f" {'created':>8} {'bound':>6} {'ready':>6}  runs"
            )
            for setting, runs in times.items():
                median = statistics.median(runs)
                joined = " ".join(f"{t:.1f}" for t in runs)
                last = [statistics.median(column) for column in zip(*steps[setting], strict=True)]
                print(
                    f"{setting:>20} {median:>9.2f} {median / base:>7.2f}x"
                    f" {last[0]:>8.0f} {last[1]:>6.0f} {last[2]:>6.0f}  {joined}"
                )
        finally:
            create.lab("playbooks/sim_down.yml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
