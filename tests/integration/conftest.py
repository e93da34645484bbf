"""The simulated lab for integration tests: brought up once per session if it is not up.

The lab is a real etcd, kube-apiserver, kube-controller-manager and kube-scheduler with kwok
nodes (see roles/sim_cluster). It is left running after the tests so that a developer can
look at it; `make sim-down` stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TOOLS_BIN

SIM_INVENTORY = REPO / "inventory" / "sim"
SIM_KUBECONFIG = SIM_INVENTORY / "artifacts" / "kubeconfig"


# Tests that build the tools image under the name the simulated lab builds and runs: they stay in
# the lab's tier, never beside a site.yml that builds it too.
BUILDS_THE_LAB_IMAGE = ("test_image.py", "test_peer_containers.py")

# The reference experiment's 5-minute soak runs beside the other lab tests (tests/integration/
# soak.py): it starts with the first of them when this test is to run.
SOAK_TEST = "test_the_reference_experiment_runs_unchanged_on_the_real_nodes_for_5_minutes"
SOAK_SELECTED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``sim`` what runs in the lab's tier: every test that uses the simulated lab (its
    ``sim_lab`` fixture, directly or through another fixture), or builds the lab's image. The
    rest (real Prometheus, Kafka, Pushgateway, network namespaces, no cluster) runs in the tier
    beside it (``make test-unit``: ``pytest tests/integration -m "not sim and not quiet"``)."""
    for item in items:
        uses_lab = "sim_lab" in getattr(item, "fixturenames", ())
        if uses_lab or item.path.name in BUILDS_THE_LAB_IMAGE:
            item.add_marker(pytest.mark.sim)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Note whether the reference soak (tests/integration/soak.py) is among the tests to run."""
    session.config.stash[SOAK_SELECTED] = any(item.name == SOAK_TEST for item in session.items)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(TOOLS_BIN), env["PATH"]])
    env.setdefault("ANSIBLE_FORCE_COLOR", "0")
    return env


def run_playbook(
    *args: str, inventory: Path = SIM_INVENTORY, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ansible-playbook from the repo; on failure show its output in the test report."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), *args]
    proc = subprocess.run(
        cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}:\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def lab_answers(kubeconfig: Path = SIM_KUBECONFIG) -> bool:
    if not kubeconfig.exists():
        return False
    from kubernetes import client, config

    try:
        api = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
        api.list_node(_request_timeout=5)
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def sim_lab() -> Path:
    """The simulated lab's admin kubeconfig, with the lab up (site.yml run if it was not)."""
    if not lab_answers():
        run_playbook("site.yml")
    assert lab_answers(), "the simulated lab did not come up"
    return SIM_KUBECONFIG


@pytest.fixture(scope="session")
def core_api(sim_lab: Path):
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(str(sim_lab)))


@pytest.fixture(scope="session")
def reference_soak(sim_lab: Path) -> Iterator[Any]:
    """The reference experiment on the real nodes, started once, watched by a thread (with its
    own API client) until the soak test reads what it saw; deleted at the end in any case."""
    from kubernetes import client, config

    from tests.integration.soak import Soak

    soak = Soak(client.CoreV1Api(config.new_client_from_config(str(sim_lab))))
    soak.start()
    yield soak
    soak.delete()


@pytest.fixture(autouse=True)
def _the_soak_starts_with_the_first_lab_test(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("sim") and request.config.stash.get(SOAK_SELECTED, False):
        request.getfixturevalue("reference_soak")
