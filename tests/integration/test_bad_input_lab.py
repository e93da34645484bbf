"""Bad input that only a lab can judge, or whose harm only a lab shows (issue 11), on the
simulated lab: exit 2, one line naming the field, no traceback, and nothing created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config

from nuclab import spec
from tests.integration.conftest import SIM_INVENTORY, ansible_env

NAME = "refused"


def nuclab(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).parent / "nuclab"), *args, "-i", str(SIM_INVENTORY)]
    return subprocess.run(cmd, env=ansible_env(), capture_output=True, text=True, check=False)


def assert_refused(proc: subprocess.CompletedProcess[str], field: str, shown: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"nuclab: error: {field}: "), proc.stderr
    assert shown in proc.stderr, proc.stderr


@pytest.fixture
def core(sim_lab: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(sim_lab)))


def nothing_of(core: client.CoreV1Api, name: str) -> None:
    pods = core.list_namespaced_pod("nuclab", label_selector=f"nuclab.io/experiment={name}")
    release = core.list_namespaced_secret(
        "nuclab", label_selector=f"owner=helm,name={spec.fullname(name)}"
    )
    assert pods.items == [] and release.items == []


def test_list_in_a_namespace_that_does_not_exist_says_so(core: client.CoreV1Api) -> None:
    proc = nuclab("list", "-n", "typo")
    assert_refused(proc, "namespace", "'typo' is not allowed; an existing namespace (")
    assert "nuclab" in proc.stderr  # the namespaces there are, to pick from
    assert proc.stdout == ""
    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert "typo" not in names


def test_list_in_an_existing_namespace_without_experiments_is_an_empty_table(
    core: client.CoreV1Api,
) -> None:
    proc = nuclab("list", "-n", "default", "-o", "json")
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


@pytest.mark.parametrize(
    ("flags", "field", "shown"),
    [
        (["--timeout", "-5"], "--timeout", "'-5'"),
        (["--label", "role=server"], "node_labels.role", "(--role)"),
        (["--image", "a:b:c"], "image", "'a:b:c'"),
    ],
    ids=["negative-timeout", "second-role-label", "image-two-tags"],
)
def test_create_refuses_and_the_lab_has_nothing_of_it(
    core: client.CoreV1Api, flags: list[str], field: str, shown: str
) -> None:
    for via in ([], ["--via-playbook"]):
        proc = nuclab("create", "--name", NAME, "--peers", "1", "-q", *flags, *via)
        assert_refused(proc, field, shown)
        nothing_of(core, NAME)


@pytest.mark.parametrize("path", [[], ["--via-playbook"]], ids=["direct", "playbook"])
@pytest.mark.parametrize(
    "case",
    [
        ("- {from: zone-a, to: zone-x, rate: 2}", "matrix", "['zone-x'] is not allowed; zones of "
         "this lab's nodes (topology.kubernetes.io/zone): zone-a, zone-b; no node is in zone-x"),
        ("- {from: zone-a, to: zone-b, rate: 2, delay: 20}", "latency/jitter/loss",
         "matrix[0].delay 20 needs netem (sch_netem), which the kernel of node(s) nuc-2, nuc-4"),
    ],
    ids=["zone-the-lab-lacks", "delay-without-netem"],
)  # fmt: skip
def test_a_matrix_this_lab_cannot_apply_is_refused_before_anything_starts(
    core: client.CoreV1Api, tmp_path: Path, case: tuple[str, str, str], path: list[str]
) -> None:
    matrix, field, shown = case
    file = tmp_path / "matrix.yml"
    file.write_text(matrix + "\n")
    proc = nuclab("create", "--name", NAME, "--peers", "2", "--matrix", str(file), *path)
    assert_refused(proc, field, shown)
    nothing_of(core, NAME)
