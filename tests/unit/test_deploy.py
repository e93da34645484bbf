"""nuclab.deploy: the CLI's short path does what the experiment role does, with its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import deploy
from tests.unit.test_filter_experiment import F

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "experiment"
SIM = REPO / "inventory" / "sim"


def settings(**changes: Any) -> deploy.Settings:
    found = deploy.lab_settings(SIM, REPO)
    assert found is not None
    return deploy.Settings(**{**found.__dict__, **changes})


def test_sim_inventory_settings_are_the_roles() -> None:
    found = deploy.lab_settings(SIM, REPO)
    lab = yaml.safe_load((SIM / "group_vars/all/experiment.yml").read_text())
    assert found is not None
    assert "experiment_namespace" not in lab  # the kubeconfig's: nuclab, or a group's
    assert found.namespace == "nuclab"
    assert found.defaults == lab["experiment_defaults"]
    assert found.wait_timeout == lab["experiment_wait_timeout"]
    assert found.chart == REPO / "charts" / "experiment"
    assert found.pod_monitor == "false"  # the role's default
    # Ansible templated the host's address in, from the inventory's bridge address
    bridge = yaml.safe_load((SIM / "group_vars/all/lab.yml").read_text())
    host = bridge["sim_cluster_bridge_address"].split("/")[0] + "/32"
    policy = found.chart_values["networkPolicy"]
    assert policy["extraIngress"] == [{"from": [{"ipBlock": {"cidr": host}}]}]
    assert policy["extraEgress"][0]["to"] == [{"ipBlock": {"cidr": host}}]
    assert "{{" not in str(found.chart_values)


def test_every_setting_is_a_role_variable() -> None:
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta/argument_specs.yml").read_text())
    assert set(deploy.SETTINGS) <= set(defaults)
    assert set(deploy.SETTINGS) <= set(specs["argument_specs"]["main"]["options"])


def write_inventory(root: Path, group_vars: dict[str, Any], hosts: str = "hosts.yml") -> Path:
    (root / "group_vars").mkdir(parents=True)
    (root / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    (root / hosts).write_text("all:\n  hosts:\n    a:\n  vars:\n    experiment_namespace: low\n")
    return root


def test_inventory_layers_and_what_needs_ansible(tmp_path: Path) -> None:
    plain = write_inventory(tmp_path / "plain", {"experiment_wait_timeout": 7})
    found = deploy.lab_settings(plain, REPO)
    assert found is not None
    assert (found.namespace, found.wait_timeout) == ("low", 7)  # hosts.yml vars, group_vars
    # (a new folder: Ansible's vars plugin caches what it found in a folder, per process)
    hosted = write_inventory(tmp_path / "hosted", {"experiment_wait_timeout": 7})
    (hosted / "host_vars").mkdir()
    (hosted / "host_vars" / "localhost.yml").write_text("experiment_namespace: mine\n")
    assert deploy.lab_settings(hosted, REPO).namespace == "mine"  # type: ignore[union-attr]

    # a template on the inventory's own variables is Ansible's to render, here too
    templated = write_inventory(tmp_path / "t", {"experiment_namespace": "{{ lab_name }}-x"})
    (templated / "group_vars" / "all.yml").write_text(
        "lab_name: lab\nexperiment_namespace: '{{ lab_name }}-x'\n"
    )
    assert deploy.lab_settings(templated, REPO).namespace == "lab-x"  # type: ignore[union-attr]
    # one on what only a play has (a role's defaults, facts) takes the playbook path
    undefined = write_inventory(tmp_path / "u", {"experiment_namespace": "{{ role_thing }}"})
    assert deploy.lab_settings(undefined, REPO) is None
    remote = write_inventory(tmp_path / "remote", {"experiment_chart_ref": "oci://x/experiment"})
    assert deploy.lab_settings(remote, REPO) is None


def test_ini_inventories_groups_and_vaults_are_read_as_ansible_reads_them(tmp_path: Path) -> None:
    ini = tmp_path / "ini"
    (ini / "group_vars").mkdir(parents=True)
    (ini / "hosts.ini").write_text(
        "[lab_controller]\nlocalhost ansible_connection=local\n\n"
        "[lab_controller:vars]\nexperiment_wait_timeout=9\n"
    )
    # a group other than all, in a file without suffix, as Ansible allows
    (ini / "group_vars" / "lab_controller").write_text("experiment_namespace: from-group\n")
    found = deploy.lab_settings(ini, REPO)
    assert found is not None
    assert (found.namespace, found.wait_timeout) == ("from-group", 9)

    vault = write_inventory(tmp_path / "vault", {})
    (vault / "group_vars" / "all.yml").write_text(
        "experiment_namespace: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6136\n"
    )
    assert deploy.lab_settings(vault, REPO) is None  # ansible-playbook asks for the password


def test_an_inventory_ansible_cannot_read_is_one_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "hosts.yml").write_text("all:\n  hosts: [x\n")
    with pytest.raises(deploy.BadFileError, match=r"hosts.yml: not valid YAML: .*line 3"):
        deploy.lab_settings(broken, REPO)


@pytest.mark.parametrize(
    ("raw", "current", "chart_values", "exists"),
    [
        ({"name": "purple", "peers": 5, "cpu": 0.05}, {}, {}, False),
        (
            {"name": "purple", "peers": 0},
            {"experiment": {"name": "purple", "peers": 5, "msgSize": 99}, "ports": [1]},
            {"probe": {"enabled": True}},
            True,
        ),
        ({"name": "g", "zones": ["zone-a"], "params": {"topic": "t"}}, {}, {}, False),
    ],
)
def test_values_are_the_role_filters_values(
    raw: dict[str, Any], current: dict[str, Any], chart_values: dict[str, Any], exists: bool
) -> None:
    lab = settings(chart_values=chart_values)
    parsed, values = deploy.release_values(raw, lab, current, exists=exists)
    # tasks/present.yml, filter for filter
    full = F["nuclab_experiment_spec"](
        raw,
        defaults=lab.defaults,
        base=F["nuclab_experiment_from_values"](current),
        create=not exists,
    )
    overrides = deploy.experiments.deep_merge(
        {"metrics": {"podMonitor": lab.pod_monitor}}, chart_values
    )
    assert values == F["nuclab_experiment_values"](full, overrides=overrides, current=current)
    assert parsed.as_dict() == full


def test_bad_input_raises_before_anything(tmp_path: Path) -> None:
    with pytest.raises(deploy.spec.ValidationError, match="peers"):
        deploy.release_values({"name": "p", "peers": 0}, settings(), {}, exists=False)


def test_an_unchanged_release_is_not_upgraded() -> None:
    chart = REPO / "charts" / "experiment"
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    same = deploy.Release({"a": 1}, f"experiment-{meta['version']}", meta["appVersion"], "deployed")
    assert not deploy.chart_changes(same, chart, {"a": 1})
    assert deploy.chart_changes(same, chart, {"a": 2})
    older = deploy.Release({"a": 1}, "experiment-0.0.1", meta["appVersion"], "deployed")
    assert deploy.chart_changes(older, chart, {"a": 1})
    assert deploy.chart_changes(None, chart, {})
    # a last revision that failed or is still pending is applied again, as the role does
    for status in ("failed", "pending-upgrade", "pending-install"):
        again = deploy.Release(
            {"a": 1}, f"experiment-{meta['version']}", meta["appVersion"], status
        )
        assert deploy.chart_changes(again, chart, {"a": 1}), status


class NamespaceApi:
    """The two calls ensure_namespace makes, on one namespace's labels (None: no namespace)."""

    def __init__(self, labels: dict[str, str] | None) -> None:
        self.labels = labels
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str) -> dict[str, Any]:
        if self.labels is None:
            raise deploy.ApiError(404, "Not Found", path)
        return {"metadata": {"name": "nuclab", "labels": self.labels}}

    def request(self, method: str, path: str, body: dict[str, Any], **_: Any) -> None:
        self.requests.append((method, body))
        self.labels = {**(self.labels or {}), **body["metadata"]["labels"]}


def test_experiment_namespaces_enforce_audit_and_warn_pod_security_restricted() -> None:
    levels = {
        key.rsplit("/", 1)[1]: value
        for key, value in deploy.NAMESPACE_LABELS.items()
        if key.startswith("pod-security.kubernetes.io/")
    }
    assert levels == {"enforce": "restricted", "audit": "restricted", "warn": "restricted"}
    new = NamespaceApi(None)
    assert deploy.ensure_namespace(new, "nuclab")  # type: ignore[arg-type]
    assert new.requests[0][1]["metadata"]["labels"] == deploy.NAMESPACE_LABELS
    # a namespace labelled before the node agent (enforce privileged for netem's init
    # container) is relabelled restricted; check mode only says it would be
    before = {
        "app.kubernetes.io/part-of": "nuclab",
        "pod-security.kubernetes.io/enforce": "privileged",
        "pod-security.kubernetes.io/audit": "restricted",
    }
    old = NamespaceApi(dict(before))
    assert deploy.ensure_namespace(old, "nuclab", check=True)  # type: ignore[arg-type]
    assert (old.requests, old.labels) == ([], before)
    assert deploy.ensure_namespace(old, "nuclab")  # type: ignore[arg-type]
    assert [method for method, _ in old.requests] == ["PATCH"]
    assert old.labels == deploy.NAMESPACE_LABELS
    assert not deploy.ensure_namespace(old, "nuclab")  # type: ignore[arg-type]


def pod(name: str, phase: str = "Running", revision: str = "r1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"controller-revision-hash": revision}},
        "status": {"phase": phase},
    }


def statefulset(replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": replicas,
            "updateRevision": "r1",
        },
    }


def test_rollout_is_done_only_with_both_lists_and_exactly_the_peers() -> None:
    rollout = deploy.Rollout()
    rollout.update("pod", "LIST", [pod("p-0"), pod("p-1")])
    assert not rollout.done(2)  # the StatefulSet is not known yet
    rollout.update("sts", "LIST", [statefulset(2, 1)])
    assert (rollout.done(2), rollout.ready()) == (False, 1)  # the controller counts one ready
    rollout.update("sts", "MODIFIED", statefulset(2, 2))
    assert rollout.done(2)
    rollout.update("pod", "ADDED", pod("p-2", "Pending"))
    assert not rollout.done(2)  # a third pod (still terminating, or not yet gone)
    rollout.update("pod", "DELETED", pod("p-2"))
    rollout.update("sts", "FAILED", "the watch broke")
    assert rollout.done(2)
    rollout.update("pod", "MODIFIED", pod("p-1", revision="r0"))
    assert not rollout.done(2)  # a pod of the previous revision
