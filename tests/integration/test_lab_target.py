"""Every command finds the lab where experiment.yml finds it: the inventory's lab_kubeconfig and
experiment_namespace, as Ansible reads them, on the simulated lab.

An inventory (a copy of inventory/sim) whose experiments live in a namespace of their own and
whose kubeconfig is not in its artifacts/ folder: `nuclab list` there is an empty table before
the first experiment (the namespace does not exist yet), and create, list, stats, scale, export
and delete all act on that namespace, through the CLI's own path and through the playbook.
`nuclab export` also finds the lab's Prometheus there (lab_prometheus_url: a real Prometheus
holding the experiment's series), as the export role does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.harness.prometheus import local_prometheus
from tests.integration.conftest import SIM_INVENTORY, ansible_env

NAME = "elsewhere"
TEAM = "nuclab-team-t"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus holding a counter of the experiment's peer from 10 min ago to in 30."""
    now = int(time.time())
    peer = (("experiment", NAME), ("namespace", TEAM), ("pod", f"nuclab-exp-{NAME}-0"))
    data = {
        ("nuclab_peer_messages_sent_total", peer): [
            (t, float(i)) for i, t in enumerate(range(now - 600, now + 1800, 15))
        ]
    }
    work = tmp_path / "prometheus"
    work.mkdir()
    with local_prometheus(work, data) as url:
        yield url


@pytest.fixture
def inventory(sim_lab: Path, prometheus: str, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "inventory"
    copy.mkdir()
    shutil.copy(SIM_INVENTORY / "hosts.yml", copy / "hosts.yml")
    shutil.copytree(SIM_INVENTORY / "group_vars", copy / "group_vars")
    (copy / "group_vars" / "all" / "team.yml").write_text(
        f"lab_kubeconfig: {sim_lab}\nexperiment_namespace: {TEAM}\n"
        f"lab_prometheus_url: {prometheus}\n"
    )
    yield copy
    core = client.CoreV1Api(config.new_client_from_config(str(sim_lab)))
    subprocess.run(
        [str(Path(sys.executable).parent / "nuclab"), "delete", NAME, "-q", "--no-export",
         "-i", str(copy)],
        env=ansible_env(), capture_output=True, check=False,
    )  # fmt: skip
    if any(ns.metadata.name == TEAM for ns in core.list_namespace().items):
        core.delete_namespace(TEAM)


def nuclab(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).parent / "nuclab"), *args, "-i", str(inventory)]
    proc = subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_every_command_uses_the_inventorys_kubeconfig_and_namespace(
    sim_lab: Path, inventory: Path
) -> None:
    core = client.CoreV1Api(config.new_client_from_config(str(sim_lab)))
    assert not (inventory / "artifacts" / "kubeconfig").exists()
    assert TEAM not in [ns.metadata.name for ns in core.list_namespace().items]

    listed = nuclab(inventory, "list", "-o", "json")  # no experiment yet: nothing, not an error
    assert (listed.returncode, json.loads(listed.stdout)) == (0, []), listed.stderr

    created = nuclab(inventory, "create", "--name", NAME, "--peers", "2", "-q")
    assert created.returncode == 0, created.stderr
    pods = core.list_namespaced_pod(TEAM, label_selector=f"nuclab.io/experiment={NAME}").items
    assert len(pods) == 2
    elsewhere = core.list_namespaced_pod("nuclab", label_selector=f"nuclab.io/experiment={NAME}")
    assert elsewhere.items == []

    rows = json.loads(nuclab(inventory, "list", "-o", "json").stdout)
    assert [(r["experiment"], r["namespace"], r["scale"]) for r in rows] == [(NAME, TEAM, 2)]
    stats = nuclab(inventory, "stats", NAME, "-o", "json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["namespace"] == TEAM

    scaled = nuclab(inventory, "scale", NAME, "3", "-q")
    assert scaled.returncode == 0, scaled.stderr
    scaled = nuclab(inventory, "scale", NAME, "1", "-q", "--via-playbook")
    assert scaled.returncode == 0, scaled.stderr
    rows = json.loads(nuclab(inventory, "list", "-o", "json").stdout)
    assert [(r["experiment"], r["scale"], r["running"]) for r in rows] == [(NAME, 1, 1)]

    # the window from the release in TEAM, the series from the inventory's Prometheus
    dataset = inventory.parent / "dataset"
    exported = nuclab(inventory, "export", NAME, "-o", str(dataset), "--step", "15")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["window"]["source"] == "helm-release"
    assert manifest["release"]["namespace"] == TEAM
    assert {p["name"] for p in manifest["pods"]} == {f"nuclab-exp-{NAME}-0"}
    assert (dataset / "metrics" / "nuclab_peer_messages_sent_total.parquet").is_file()

    deleted = nuclab(inventory, "delete", NAME, "-q", "--no-export")
    assert deleted.returncode == 0, deleted.stderr
    assert nuclab(inventory, "list", "-o", "json").stdout.strip() == "[]"
    missing = nuclab(inventory, "scale", NAME, "2", "-q")
    assert missing.returncode == 3, missing.stderr
    assert f"does not exist in namespace {TEAM}" in missing.stderr
