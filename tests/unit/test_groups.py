"""The lab's research groups (nuclab.groups): the inventory's rule, the objects, the kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from nuclab import deploy, groups
from nuclab.commands import experiment as cmd
from nuclab.errors import ValidationError


def test_a_group_gets_its_own_namespace_unless_it_names_one() -> None:
    found = groups.check([{"name": "alpha"}, {"name": "beta", "namespace": "team-b"}])
    assert [(g.name, g.namespace) for g in found] == [("alpha", "nuclab-alpha"), ("beta", "team-b")]
    assert groups.check(None) == [] and groups.check([]) == []


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"lab_groups": "alpha"}, "lab_groups"),
        ({"lab_groups": ["alpha"]}, "lab_groups[0]"),
        ({"lab_groups": [{"name": "Alpha"}]}, "lab_groups[0].name"),
        ({"lab_groups": [{"name": "a" * 21}]}, "lab_groups[0].name"),
        ({"lab_groups": [{"name": "system"}]}, "lab_groups[0].name"),
        ({"lab_groups": [{"name": "a", "role": "admin"}]}, "lab_groups[0].role"),
        ({"lab_groups": [{"name": "a"}, {"name": "a"}]}, "lab_groups[1].name"),
        (
            {"lab_groups": [{"name": "a"}, {"name": "b", "namespace": "nuclab-a"}]},
            "lab_groups[1].namespace",
        ),
        ({"lab_groups": [{"name": "a", "namespace": "nuclab"}]}, "lab_groups[0].namespace"),
        ({"lab_groups": [{"name": "a", "namespace": "kube-system"}]}, "lab_groups[0].namespace"),
        ({"lab_groups": [{"name": "a", "namespace": "kube-x"}]}, "lab_groups[0].namespace"),
        ({"lab_groups": [{"name": "a", "namespace": "Team_A"}]}, "lab_groups[0].namespace"),
    ],
)
def test_bad_groups_are_named_with_the_entry(given: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        groups.check(given["lab_groups"])
    assert caught.value.field == field


def test_each_group_may_use_its_namespace_and_read_only_its_namespace_and_the_nodes() -> None:
    made = groups.objects(
        groups.check([{"name": "alpha"}, {"name": "beta"}]), deploy.NAMESPACE_LABELS
    )
    kinds = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in made}
    assert ("Namespace", "nuclab-alpha", None) in kinds
    assert ("ServiceAccount", "group-alpha", "nuclab-system") in kinds
    assert ("RoleBinding", "nuclab-experimenters", "nuclab-beta") in kinds
    namespace = next(o for o in made if o["metadata"]["name"] == "nuclab-alpha")
    assert namespace["metadata"]["labels"] == {
        **deploy.NAMESPACE_LABELS,
        "nuclab.io/group": "alpha",
    }
    # the experimenter role is bound per namespace (never cluster-wide), to that group only
    bindings = [o for o in made if o["kind"] == "RoleBinding"]
    assert {(b["metadata"]["namespace"], b["subjects"][0]["name"]) for b in bindings} == {
        ("nuclab-alpha", "group-alpha"),
        ("nuclab-beta", "group-beta"),
    }
    assert all(b["roleRef"]["name"] == groups.EXPERIMENTER_ROLE for b in bindings)
    # cluster-wide: its own namespace (get, by name) and the nodes (read), nothing else
    own = next(
        o
        for o in made
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "nuclab:group:alpha"
    )
    assert own["rules"][0]["resourceNames"] == ["nuclab-alpha"]
    assert {r["resources"][0] for r in own["rules"]} == {"namespaces", "nodes"}
    assert {v for r in own["rules"] for v in r["verbs"]} <= {"get", "list", "watch"}
    # no escalation: the experimenter cannot grant rights or touch namespaces or nodes
    rules = next(o for o in made if o["metadata"]["name"] == groups.EXPERIMENTER_ROLE)["rules"]
    resources = {res for r in rules for res in r["resources"]}
    assert resources.isdisjoint({"roles", "rolebindings", "namespaces", "nodes", "*"})
    assert all("*" not in r["verbs"] and "escalate" not in r["verbs"] for r in rules)


def test_the_groups_kubeconfig_has_the_labs_server_its_token_and_its_namespace(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    admin = {
        "clusters": [
            {
                "name": "sim",
                "cluster": {"server": "https://10.0.0.1:6443", "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": "admin", "user": {"client-key-data": "SECRET"}}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "admin"}}],
        "current-context": "sim",
    }
    text = groups.kubeconfig(admin, groups.Group("alpha", "nuclab-alpha"), "tok")
    assert "SECRET" not in text  # nothing of the admin's credentials
    config = yaml.safe_load(text)
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://10.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.read_bytes()
    assert config["users"][0]["user"] == {"token": "tok"}
    path = tmp_path / "alpha.kubeconfig"
    path.write_text(text)
    assert groups.kubeconfig_namespace(path) == "nuclab-alpha"
    assert groups.kubeconfig_namespace(tmp_path / "missing") == groups.DEFAULT_NAMESPACE
    # the CLI acts in the group's namespace with the group's kubeconfig, unless -n says otherwise
    inventory = tmp_path / "lab" / "hosts.yml"
    inventory.parent.mkdir()
    inventory.write_text("all:\n  hosts:\n    localhost:\n")
    args = cmd.argparse.Namespace(kubeconfig=str(path), namespace=None, inventory=str(inventory))
    assert cmd.lab_target(args) == (str(path), "nuclab-alpha")
    args.namespace = "other"
    assert cmd.lab_target(args) == (str(path), "other")


def test_no_namespaces_kafka_prefix_starts_another_namespaces_topics() -> None:
    namespaces = ["nuclab", "nuclab-a", "nuclab-ab", "nuclab-a-b", "lab-a"]
    for mine in namespaces:
        for other in namespaces:
            topic = f"{groups.kafka_prefix(other)}purple.frames"
            assert topic.startswith(groups.kafka_prefix(mine)) == (mine == other), (mine, topic)


def test_a_namespaces_kafka_acls_are_prefixed_topics_and_groups_only() -> None:
    acls = groups.kafka_acls("nuclab-a")
    assert {
        (a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"]) for a in acls
    } == {
        ("topic", "nuclab-a.", "prefix"),
        ("group", "nuclab-a.", "prefix"),
    }
    assert all("All" not in a["operations"] and "Alter" not in a["operations"] for a in acls)


def test_the_groups_pod_policy_makes_no_exception_for_any_container() -> None:
    """Every rule holds for every container, init containers included: the netem init
    container's exception (root with NET_ADMIN) is gone with it. The policy's behaviour on a
    real API server: tests/integration/test_cis_apiserver.py."""
    policy, binding = groups.pod_policy()
    assert [v["name"] for v in policy["spec"]["variables"]] == ["containers", "pod", "contexts"]
    assert "initContainers" in policy["spec"]["variables"][0]["expression"]
    text = yaml.safe_dump(policy)
    assert "netem" not in text and "NET_ADMIN" not in text
    assert "'NET_BIND_SERVICE'" in text  # the one capability restricted lets a container add
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": groups.GROUP_LABEL, "operator": "Exists"}
    ]
