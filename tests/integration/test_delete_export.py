"""``experiment.yml -e state=absent`` exports the experiment before it deletes it.

A real experiment on the simulated lab (on kwok nodes: it measures nothing), and a real
Prometheus (Debian package) on loopback holding samples labelled with that experiment around now,
given with ``-e lab_prometheus_url=...`` in place of the lab's own. inventory/sim exports on delete
only when asked (``-e export=true``; see its group_vars/all/experiment.yml); a real lab's
inventory exports on every delete.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from nuclab.net import free_port
from tests.harness.prometheus import local_prometheus
from tests.integration.conftest import run_playbook

NAME = "gone"
NOW = int(time.time())
EXPORT = ("-e", "export=true")  # the simulated lab's deletes export only when asked


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    peer = (("experiment", NAME), ("peer", f"nuclab-exp-{NAME}-0"))
    data = {
        ("nuclab_peer_messages_sent_total", peer): [
            (t, float(i)) for i, t in enumerate(range(NOW - 600, NOW + 1800))
        ]
    }
    with local_prometheus(tmp_path_factory.mktemp("prometheus"), data) as url:
        yield url


@pytest.fixture(scope="module")
def core(sim_lab: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(sim_lab)))


def _pods(core: client.CoreV1Api) -> dict[str, str]:
    pods = core.list_namespaced_pod("nuclab", label_selector=f"nuclab.io/experiment={NAME}")
    return {p.metadata.name: p.metadata.uid for p in pods.items}


def _release_exists(core: client.CoreV1Api) -> bool:
    selector = f"owner=helm,name=nuclab-exp-{NAME}"
    return bool(core.list_namespaced_secret("nuclab", label_selector=selector).items)


def _delete(datasets: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run_playbook(
        "experiment.yml", "-e", f"name={NAME}", "-e", "state=absent",
        "-e", f"export_dir={datasets}", *extra, check=check,
    )  # fmt: skip


def _changed(stdout: str) -> int:
    match = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)\s", stdout)
    assert match, stdout[-2000:]
    return int(match.group(1))


def test_delete_exports_first_and_keeps_the_experiment_when_it_cannot(
    core: client.CoreV1Api, prometheus: str, tmp_path: Path
) -> None:
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "peers=2")
    before = _pods(core)
    assert len(before) == 2
    datasets = tmp_path / "datasets"

    # Prometheus unreachable: one clear message naming the opt-out; nothing changed or written.
    dead = free_port()
    dead_url = f"lab_prometheus_url=http://127.0.0.1:{dead}"
    failed = _delete(datasets, "-e", dead_url, *EXPORT, check=False)
    assert failed.returncode != 0
    out = " ".join(failed.stdout.split())
    message = re.search(r"Action failed: (experiment '.*?\(nuclab delete --no-export\))", out)
    assert message, failed.stdout[-3000:]
    assert message.group(1).startswith(
        f"experiment '{NAME}' was not deleted: exporting it first failed (Prometheus at "
        f"http://127.0.0.1:{dead} is unreachable"
    ), message.group(1)
    assert message.group(1).endswith(
        "; fix that, or delete it without an export: -e export=false (nuclab delete --no-export)"
    )
    assert _pods(core) == before and _release_exists(core)  # the same pods, still there
    assert not datasets.exists() or not list(datasets.iterdir()), "something was written"

    # Check mode exports nothing and deletes nothing.
    _delete(datasets, "--check", "-e", f"lab_prometheus_url={prometheus}", *EXPORT)
    assert _pods(core) == before
    assert not datasets.exists() or not list(datasets.iterdir())

    # Export on: the dataset is complete (its manifest) before the release is gone.
    done = _delete(datasets, "-e", f"lab_prometheus_url={prometheus}", *EXPORT)
    assert _changed(done.stdout) >= 2  # exported, uninstalled
    [dataset] = list(datasets.iterdir())
    assert re.fullmatch(rf"{NAME}-\d{{8}}T\d{{6}}Z", dataset.name), dataset.name
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["experiment"] == NAME
    assert manifest["window"]["source"] == "helm-release"
    assert manifest["release"]["status"] == "deployed"  # exported while it still ran
    assert manifest["spec"]["experiment"]["peers"] == 2  # the release's values
    sent = [f for f in manifest["files"] if f["path"].startswith("metrics/nuclab_peer_messages")]
    assert sent and sent[0]["rows"] > 0
    assert _pods(core) == {} and not _release_exists(core)

    # Deleting what is gone changes nothing and exports nothing.
    again = _delete(datasets, "-e", f"lab_prometheus_url={prometheus}", *EXPORT)
    assert _changed(again.stdout) == 0
    assert list(datasets.iterdir()) == [dataset]


def test_export_false_deletes_without_a_dataset(
    core: client.CoreV1Api, prometheus: str, tmp_path: Path
) -> None:
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "peers=1")
    assert len(_pods(core)) == 1
    datasets = tmp_path / "datasets"
    # A reachable Prometheus, and the export asked for and then turned off again by the last -e.
    _delete(datasets, "-e", f"lab_prometheus_url={prometheus}", *EXPORT, "-e", "export=false")
    assert _pods(core) == {} and not _release_exists(core)
    assert not datasets.exists()
