"""An experiment with a load generator on the simulated lab (`loadgen:` in a spec file).

The real scheduler places the load generator's Job pod; kwok runs no container. kwok v0.7's
default pod stages (pod-ready, pod-complete, pod-delete; sim_cluster starts kwok without
stages of its own) mark a pod Running and then, because a Job owns it, Succeeded with exit
code 0 ("pod-complete" selects pods whose owner is a Job): the real Job controller then
completes the Job. So this test sees placement, labels, the Job's lifecycle and its deletion
with the experiment; `nuclab loadgen` itself runs in tests/integration/test_image.py (podman)
and test_loadgen_*.py (real broker, real HTTP server).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.integration.conftest import run_playbook

NAMESPACE = "nuclab"
NAME = "purple-load"
SPEC_FILE = "experiments/purple-loadgen.yml"
SELECTOR = f"nuclab.io/experiment={NAME}"


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        api = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    def jobs(self) -> list[Any]:
        return self.batch.list_namespaced_job(NAMESPACE, label_selector=SELECTOR).items

    def pods(self, component: str) -> list[Any]:
        selector = f"{SELECTOR},app.kubernetes.io/component={component}"
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what} after {timeout:.0f}s"
            return result
        time.sleep(0.5)


@pytest.fixture(scope="module")
def api(sim_lab: Path) -> Iterator[Api]:
    view = Api(sim_lab)
    if view.jobs() or view.pods("peer"):
        run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")
    yield view
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")


def test_the_load_generator_runs_once_on_a_client_node_and_goes_with_the_experiment(
    api: Api,
) -> None:
    run_playbook("experiment.yml", "-e", f"@{SPEC_FILE}", "-e", "experiment_wait_timeout=60")

    (job,) = api.jobs()
    assert job.spec.backoff_limit == 0
    assert job.metadata.labels["app.kubernetes.io/component"] == "loadgen"
    assert len(api.pods("peer")) == 5  # the role waited for exactly the peers

    (pod,) = eventually(lambda: api.pods("loadgen"), "no load generator pod")
    assert pod.metadata.labels["nuclab.io/experiment"] == NAME
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.spec.node_selector == {"nuclab.io/role": "client"}
    assert pod.spec.automount_service_account_token is False
    node = api.core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nuclab.io/role"] == "client"
    (container,) = pod.spec.containers
    assert container.command == ["nuclab", "loadgen"]
    assert container.args[:3] == ["http", "--url", f"http://nuclab-exp-{NAME}-headless."
                                  f"{NAMESPACE}.svc.cluster.local:7000/"]  # fmt: skip

    # kwok's pod-complete stage ends a Job's pod with exit code 0; the Job controller completes it
    done = eventually(
        lambda: (
            (p := api.core.read_namespaced_pod(pod.metadata.name, NAMESPACE)).status.phase
            == "Succeeded"
            and p
        ),
        "the load generator's pod did not succeed",
    )
    (state,) = done.status.container_statuses
    assert (state.state.terminated.exit_code, state.state.terminated.reason) == (0, "Completed")
    complete = eventually(
        lambda: (
            (j := api.batch.read_namespaced_job(job.metadata.name, NAMESPACE)).status.succeeded == 1
            and j
        ),
        "the Job did not complete",
    )
    assert any(c.type == "Complete" and c.status == "True" for c in complete.status.conditions)

    # only peers behind the headless Service
    slices = api.discovery.list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name=nuclab-exp-{NAME}-headless"
    ).items
    behind = {e.target_ref.name for s in slices for e in (s.endpoints or []) if e.target_ref}
    assert pod.metadata.name not in behind

    # scaling the peers leaves the Job (its pod template is immutable) as it is
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "peers=2")
    (again,) = api.jobs()
    assert again.metadata.uid == job.metadata.uid
    assert len(api.pods("peer")) == 2

    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")
    assert api.jobs() == []
    assert api.core.list_namespaced_pod(NAMESPACE, label_selector=SELECTOR).items == []
