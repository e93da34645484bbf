"""An experiment whose name has the maximum length (nuclab.spec.NAME_MAX) can be created,
exported and deleted on the simulated lab: every step applies the same name rule.

Before the rule lived in one place the export allowed one character less than the spec, so
such an experiment could be created but not deleted (a delete exports first).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from nuclab import spec
from tests.harness.prometheus import local_prometheus
from tests.integration.conftest import SIM_INVENTORY, ansible_env, run_playbook

NAME = "max-" + "n" * (spec.NAME_MAX - len("max-"))
NOW = int(time.time())


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    peer = (("experiment", NAME), ("peer", f"{spec.fullname(NAME)}-0"))
    data = {
        ("nuclab_peer_messages_sent_total", peer): [
            (t, float(i)) for i, t in enumerate(range(NOW - 600, NOW + 1800))
        ]
    }
    with local_prometheus(tmp_path_factory.mktemp("prometheus"), data) as url:
        yield url


def nuclab(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).parent / "nuclab"), *args]
    return subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False)


@pytest.fixture
def cleanup(sim_lab: Path) -> Iterator[None]:
    """Whatever the test leaves (it failed half-way), deleted without an export."""
    yield
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent", "-e", "export=false")


def test_an_experiment_with_the_longest_name_is_created_exported_and_deleted(
    sim_lab: Path, prometheus: str, tmp_path: Path, cleanup: None
) -> None:
    assert len(NAME) == spec.NAME_MAX
    core = client.CoreV1Api(config.new_client_from_config(str(sim_lab)))
    selector = f"nuclab.io/experiment={NAME}"

    created = nuclab("create", "--name", NAME, "--peers", "2", "-q", "-i", str(SIM_INVENTORY))
    assert created.returncode == 0, created.stderr
    assert len(core.list_namespaced_pod("nuclab", label_selector=selector).items) == 2
    listed = nuclab("list", "-o", "json", "-i", str(SIM_INVENTORY))
    assert NAME in [row["experiment"] for row in json.loads(listed.stdout)], listed.stdout

    # The CLI's export, on its own.
    exported = nuclab(
        "export", NAME, "--prometheus-url", prometheus, "--kubeconfig", str(sim_lab),
        "-o", str(tmp_path / "cli-dataset"),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((tmp_path / "cli-dataset" / "manifest.json").read_text())
    assert manifest["experiment"] == NAME and manifest["release"]["name"] == spec.fullname(NAME)

    # The playbook's delete: the export role first (asked for: inventory/sim exports on delete
    # only then), then the uninstall.
    datasets = tmp_path / "datasets"
    run_playbook(
        "experiment.yml", "-e", f"name={NAME}", "-e", "state=absent", "-e", "export=true",
        "-e", f"export_dir={datasets}", "-e", f"lab_prometheus_url={prometheus}",
    )  # fmt: skip
    [dataset] = list(datasets.iterdir())
    assert dataset.name.startswith(f"{NAME}-")
    assert json.loads((dataset / "manifest.json").read_text())["experiment"] == NAME
    assert core.list_namespaced_pod("nuclab", label_selector=selector).items == []
    helm = core.list_namespaced_secret("nuclab", label_selector=f"name={spec.fullname(NAME)}")
    assert helm.items == []
