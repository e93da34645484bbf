"""Experiments on the simulated lab: create, scale, delete, side by side, too big to fit, bad input.

Uses the lead's session fixture ``sim_lab`` (tests/integration/conftest.py): the lab is brought
up with site.yml if its kubeconfig does not answer, and left running. Every experiment here is
created and deleted through nuclab's own entry points (``nuclab`` and ``experiment.yml``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from tests.conftest import REPO
from tests.integration.conftest import ansible_env, run_playbook

NAMESPACE = "nuclab"
REFERENCE = [
    "--peers", "5", "--msg-size", "1440", "--msg-rate", "2000", "--cpu", "0.05", "--ram", "16",
    "--downlink-bw", "16", "--uplink-bw", "16", "--probe",  # as experiments/purple.yml
]  # fmt: skip


def nuclab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI, as a user runs it."""
    cmd = [str(Path(sys.executable).parent / "nuclab"), *args]
    proc = subprocess.run(
        cmd, cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


class Lab:
    """Read-only views of the simulated lab's API."""

    def __init__(self, kubeconfig: Path) -> None:
        api = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.net = client.NetworkingV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)

    def pods(self, name: str) -> list[Any]:
        selector = f"nuclab.io/experiment={name}"
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items

    def running(self, name: str) -> list[Any]:
        return [
            p
            for p in self.pods(name)
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        ]

    def nodes(self) -> dict[str, dict[str, str]]:
        return {n.metadata.name: n.metadata.labels for n in self.core.list_node().items}

    def left(self, name: str) -> list[str]:
        """Every object still labelled with the experiment."""
        selector = f"nuclab.io/experiment={name}"
        listings = {
            "Pod": self.core.list_namespaced_pod,
            "Service": self.core.list_namespaced_service,
            "ConfigMap": self.core.list_namespaced_config_map,
            "ServiceAccount": self.core.list_namespaced_service_account,
            "StatefulSet": self.apps.list_namespaced_stateful_set,
            "NetworkPolicy": self.net.list_namespaced_network_policy,
        }
        return [
            f"{kind}/{item.metadata.name}"
            for kind, listing in listings.items()
            for item in listing(NAMESPACE, label_selector=selector).items
        ]

    def endpoints(self, name: str) -> list[str]:
        selector = f"kubernetes.io/service-name=nuclab-exp-{name}-headless"
        deadline = time.monotonic() + 30
        while True:
            slices = self.discovery.list_namespaced_endpoint_slice(
                NAMESPACE, label_selector=selector
            ).items
            names = sorted(
                e.target_ref.name for s in slices for e in (s.endpoints or []) if e.target_ref
            )
            if len(names) == len(self.pods(name)) or time.monotonic() > deadline:
                return names
            time.sleep(1)


@pytest.fixture(scope="module")
def lab(sim_lab: Path) -> Iterator[Lab]:
    view = Lab(sim_lab)
    for name in ("purple", "blue", "huge", "bad"):
        if view.left(name):
            nuclab("delete", name, "--quiet")
    yield view


def assert_peers(lab: Lab, name: str, peers: int) -> list[Any]:
    pods = lab.pods(name)
    assert len(pods) == peers, [p.metadata.name for p in pods]
    assert len(lab.running(name)) == peers
    return pods


def test_purple_with_the_reference_parameters(lab: Lab) -> None:
    proc = nuclab("create", "--name", "purple", *REFERENCE)
    assert "experiment 'purple' is running (nuclab-exp-purple)" in proc.stdout
    assert "[INFO] Install or upgrade the experiment's release" in proc.stderr

    pods = assert_peers(lab, "purple", 5)
    nodes = lab.nodes()
    for pod in pods:
        assert nodes[pod.spec.node_name]["nuclab.io/role"] == "worker", pod.spec.node_name
        assert pod.metadata.labels["nuclab.io/experiment"] == "purple"
        annotations = pod.metadata.annotations
        assert annotations["kubernetes.io/egress-bandwidth"] == "16M"
        assert annotations["kubernetes.io/ingress-bandwidth"] == "16M"
        peer = next(c for c in pod.spec.containers if c.name == "peer")
        assert peer.resources.limits == {"cpu": "50m", "memory": "16Mi"}
    # spread across the workers: as many nodes as there are peers or workers
    workers = [n for n, labels in nodes.items() if labels.get("nuclab.io/role") == "worker"]
    assert len({p.spec.node_name for p in pods}) == min(5, len(workers))
    assert lab.endpoints("purple") == sorted(p.metadata.name for p in pods)

    rows = json.loads(nuclab("list", "-o", "json").stdout)
    purple = next(r for r in rows if r["experiment"] == "purple")
    assert (purple["fullname"], purple["scale"], purple["running"]) == ("nuclab-exp-purple", 5, 5)
    table = nuclab("list").stdout.splitlines()
    assert table[0].split() == [
        "EXPERIMENT",
        "FULLNAME",
        "SCALE",
        "RUNNING",
        "STARTED",
        "AT",
        "AGE",
        "SIMULATED",
        "PROBLEMS",
    ]
    assert any(line.split()[:4] == ["purple", "nuclab-exp-purple", "5", "5"] for line in table)


def test_second_run_changes_nothing_and_check_mode_changes_nothing(lab: Lab) -> None:
    before = {p.metadata.uid for p in lab.pods("purple")}
    again = run_playbook("experiment.yml", "-e", "@experiments/purple.yml")
    assert "changed=0" in again.stdout
    check = run_playbook(
        "experiment.yml", "-e", "name=purple", "-e", "peers=9", "--check", "--diff"
    )
    assert "changed=0" not in check.stdout  # it would scale ...
    assert re.search(r'^\+\s+"peers": 9$', check.stdout, re.MULTILINE)  # ... shows how
    assert {p.metadata.uid for p in lab.pods("purple")} == before  # ... but did not


def test_scale_5_20_3_0_5_keeps_the_spec(lab: Lab) -> None:
    for peers, how in ((20, "playbook"), (3, "cli"), (0, "playbook"), (5, "cli")):
        if how == "cli":
            proc = nuclab("scale", "purple", str(peers), "--quiet")
            assert f"scaled to {peers} peer(s)" in proc.stdout
        else:
            run_playbook("experiment.yml", "-e", "name=purple", "-e", f"peers={peers}")
        assert_peers(lab, "purple", peers)
    pod = lab.pods("purple")[0]
    peer = next(c for c in pod.spec.containers if c.name == "peer")
    # scaling kept every other field of the spec (no reset to defaults)
    assert {e.name: e.value for e in peer.env}["NUCLAB_MSG_SIZE"] == "1440"
    assert peer.resources.limits == {"cpu": "50m", "memory": "16Mi"}


def test_blue_beside_purple_and_deleting_blue_leaves_purple_untouched(lab: Lab) -> None:
    purple_before = {p.metadata.uid for p in lab.pods("purple")}
    run_playbook(
        "experiment.yml", "-e", "name=blue", "-e", "peers=4", "-e", "cpu=0.1", "-e", "ram=32"
    )
    blue = assert_peers(lab, "blue", 4)
    assert {p.metadata.uid for p in blue}.isdisjoint(purple_before)
    assert set(lab.endpoints("blue")).isdisjoint(lab.endpoints("purple"))
    policies = {
        p.metadata.name: p.spec.pod_selector.match_labels
        for p in lab.net.list_namespaced_network_policy(NAMESPACE).items
    }
    assert policies["nuclab-exp-blue"]["app.kubernetes.io/instance"] == "nuclab-exp-blue"
    assert policies["nuclab-exp-purple"]["app.kubernetes.io/instance"] == "nuclab-exp-purple"

    proc = nuclab("delete", "blue")
    assert "experiment 'blue' deleted" in proc.stdout
    assert lab.left("blue") == []
    assert {p.metadata.uid for p in lab.pods("purple")} == purple_before
    assert len(lab.running("purple")) == 5


def test_a_spec_that_cannot_fit_reports_the_schedulers_reason(lab: Lab) -> None:
    proc = nuclab(
        "create", "--name", "huge", "--peers", "100", "--cpu", "1", "--timeout", "15", check=False
    )
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("nuclab: error: experiment 'huge': ")
    assert "of 100 peers running after 15s" in error
    assert "Insufficient cpu" in error
    assert "Traceback" not in proc.stderr
    pending = [p for p in lab.pods("huge") if p.status.phase == "Pending"]
    cores = sum(
        int(n.status.allocatable["cpu"])
        for n in lab.core.list_node().items
        if n.metadata.labels.get("nuclab.io/role") == "worker"
    )
    assert len(pending) >= 100 - cores  # the workers hold at most one one-core peer per core
    assert len(pending) + len(lab.running("huge")) == 100
    nuclab("delete", "huge", "--quiet")
    assert lab.left("huge") == []


def test_bad_input_is_rejected_before_anything_is_created(lab: Lab, tmp_path: Path) -> None:
    # The playbook and the CLI share nuclab.spec: each rule is proven case by case in the unit
    # tests; here each entry point refuses, on the real lab, and leaves nothing behind.
    spec_file = tmp_path / "typo.yml"
    spec_file.write_text("experiment:\n  name: bad\n  pers: 5\n")
    playbook_cases = [
        (["-e", "name=bad", "-e", "cpu=0"], "cpu: '0' is not allowed"),
        (["-e", "name=bad", "-e", "peers=0"], "peers: '0' is not allowed"),
        (["-e", f"@{spec_file}"], "pers: 5 is not allowed; unknown field"),
    ]
    for extra, message in playbook_cases:
        proc = run_playbook("experiment.yml", *extra, check=False)
        assert proc.returncode != 0, extra
        assert message in " ".join(proc.stdout.split()), proc.stdout[-2000:]
    cli_cases = [
        (["--name", "Bad"], "name: 'Bad' is not allowed"),
        (["--name", "a" * 42], "is not allowed; a DNS-1123 label: 1 to 41 characters"),
        (["--name", "bad", "--ram", "1"], "ram: '1' is not allowed"),
        (["--name", "bad", "--downlink-bw", "0"], "downlink_bw: '0' is not allowed"),
        (["--name", "bad", "--connect-to", "-1"], "connect_to: '-1' is not allowed"),
    ]
    for extra, message in cli_cases:
        proc = nuclab("create", *extra, check=False)
        assert proc.returncode == 2, extra
        assert message in proc.stderr
    assert lab.left("bad") == []

    missing = nuclab("delete", "ghost", check=False)
    assert (missing.returncode, missing.stderr) == (
        3,
        "nuclab: error: experiment 'ghost' does not exist in namespace nuclab\n",
    )
    assert nuclab("scale", "ghost", "3", check=False).returncode == 3
    must = run_playbook(
        "experiment.yml", "-e", "name=ghost", "-e", "experiment_must_exist=true", check=False
    )
    assert "experiment 'ghost' does not exist in namespace nuclab" in must.stdout


def test_delete_purple_leaves_nothing(lab: Lab) -> None:
    run_playbook("experiment.yml", "-e", "name=purple", "-e", "state=absent")
    assert lab.left("purple") == []
    listed = run_playbook("experiment.yml", "-e", "state=list")
    assert "EXPERIMENT" in listed.stdout
    assert "nuclab-exp-purple" not in listed.stdout
