"""The lab model: inventory checks, node labels and taints, the simulated nodes' plan."""

from __future__ import annotations

import ipaddress

import pytest

from nuclab import lab
from nuclab.errors import ValidationError

GROUPS = {"server": ["m"], "agent": ["a", "b"], "k3s_cluster": ["m", "a", "b"]}


def hostvars(**overrides: dict) -> dict[str, dict]:
    base = {
        "m": {"lab_role": "server", "lab_zone": "zone-a"},
        "a": {"lab_role": "client", "lab_zone": "zone-a"},
        "b": {"lab_role": "worker", "lab_zone": "zone-b", "lab_telemetry_mode": "gpu"},
    }
    for host, values in overrides.items():
        base[host] = {**base[host], **values}
    return base


def problems(**overrides: dict) -> list[str]:
    return lab.preflight(hostvars(**overrides), GROUPS["k3s_cluster"], GROUPS)


def test_a_good_inventory_has_no_problems():
    assert problems() == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"a": {"lab_role": None}},
            "host a: lab_role: None is not allowed; every host needs one of",
        ),
        (
            {"a": {"lab_role": "boss"}},
            "host a: lab_role: 'boss' is not allowed; one of server, client, worker",
        ),
        ({"a": {"lab_role": "server"}}, "hosts in the agent group are client or worker"),
        ({"m": {"lab_role": "worker"}}, "hosts in the server group have lab_role server"),
        (
            {"b": {"lab_telemetry_mode": "tpu"}},
            "host b: lab_telemetry_mode: 'tpu' is not allowed; one of cpu, gpu",
        ),
        ({"b": {"lab_zone": "Zone A!"}}, "host b: lab_zone: 'Zone A!' is not allowed"),
        ({"b": {"node_labels": {"bad key": "x"}}}, "host b: node_labels key: 'bad key'"),
        ({"b": {"node_labels": {"example.com/gpu": "x"}}}, "without prefix"),
        ({"b": {"node_labels": {"role": "x"}}}, "set by the lab itself"),
        ({"b": {"node_labels": {"gpu": "-nvidia"}}}, "host b: node_labels.gpu: '-nvidia'"),
        (
            {"b": {"node_taints": [{"key": "gpu", "effect": "Sometimes"}]}},
            "node_taints[0].effect: 'Sometimes'",
        ),
        ({"b": {"node_taints": [{"key": "gpu"}]}}, "node_taints[0].effect: None"),
        ({"b": {"node_taints": {"key": "gpu"}}}, "host b: node_taints"),
        ({"b": {"node_name": "NUC_B"}}, "host b: node_name: 'NUC_B'"),
        (
            {"b": {"node_memory": "lots"}},
            "host b: node_memory: 'lots' is not allowed; memory, a Kubernetes quantity",
        ),
        ({"b": {"node_pods": 0}}, "host b: node_pods: 0"),
        ({"b": {"node_capacity": {"cpu": "8"}}}, "host b: node_capacity key: 'cpu'"),
    ],
)
def test_each_bad_host_variable_is_named_with_its_value(overrides, expected):
    found = problems(**overrides)
    assert len(found) == 1, found
    assert expected in found[0]


def test_two_hosts_with_one_node_name_are_rejected():
    found = problems(b={"node_name": "a"})
    assert found == [
        "host b: node_name: 'a' is not allowed; node names are unique; host a has it already"
    ]


def test_every_problem_is_reported_not_only_the_first():
    assert len(problems(a={"lab_role": "boss"}, b={"lab_zone": "?"})) == 2


def test_labels_cover_role_zone_telemetry_free_labels_and_node_role():
    node = lab.lab_node(
        "b", hostvars(b={"node_labels": {"gpu": "nvidia", "fast": True}})["b"], GROUPS
    )
    assert node.desired_labels() == {
        "nuclab.io/role": "worker",
        "nuclab.io/telemetry": "gpu",
        "nuclab.io/gpu": "nvidia",
        "nuclab.io/fast": "true",
        "topology.kubernetes.io/zone": "zone-b",
        "node-role.kubernetes.io/worker": "true",
    }


def k8s_node(labels: dict, taints: list | None = None) -> dict:
    return {"metadata": {"name": "b", "labels": labels}, "spec": {"taints": taints or []}}


def test_patch_is_empty_when_the_node_already_matches():
    node = lab.lab_node("b", hostvars()["b"], GROUPS)
    assert lab.node_patch(k8s_node(node.desired_labels()), node) == {}


def test_patch_moves_the_zone_and_removes_dropped_labels_but_keeps_foreign_ones():
    node = lab.lab_node("b", hostvars()["b"], GROUPS)
    current = k8s_node(
        {
            **node.desired_labels(),
            "topology.kubernetes.io/zone": "zone-a",
            "nuclab.io/old": "x",
            "node-role.kubernetes.io/client": "true",
            "k3s.io/hostname": "b",
            "node-role.kubernetes.io/control-plane": "true",
            "nuclab.io/simulated": "true",
        }
    )
    assert lab.node_patch(current, node) == {
        "metadata": {
            "labels": {
                "topology.kubernetes.io/zone": "zone-b",
                "nuclab.io/old": None,
                "node-role.kubernetes.io/client": None,
            }
        }
    }


def test_patch_sets_lab_taints_and_keeps_the_controllers_taints():
    node = lab.lab_node(
        "b",
        hostvars(b={"node_taints": [{"key": "gpu", "value": "only", "effect": "NoSchedule"}]})["b"],
        GROUPS,
    )
    foreign = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
    current = k8s_node(
        node.desired_labels(), [foreign, {"key": "nuclab.io/old", "effect": "NoSchedule"}]
    )
    assert lab.node_patch(current, node) == {
        "spec": {
            "taints": [foreign, {"key": "nuclab.io/gpu", "effect": "NoSchedule", "value": "only"}]
        }
    }


def test_removing_the_last_lab_taint_clears_the_list():
    node = lab.lab_node("b", hostvars()["b"], GROUPS)
    current = k8s_node(node.desired_labels(), [{"key": "nuclab.io/old", "effect": "NoSchedule"}])
    assert lab.node_patch(current, node) == {"spec": {"taints": None}}


def test_sim_plan_creates_missing_recreates_resized_and_deletes_unlisted_simulated_nodes():
    nodes = lab.lab_nodes(hostvars(b={"node_memory": "8192Mi"}), ["m", "a", "b"], GROUPS)
    existing = [
        lab.sim_node(nodes[0], "v1.35.4"),  # m: as wanted
        {
            **lab.sim_node(nodes[2], "v1.35.4"),
            "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}},
        },
        {"metadata": {"name": "gone", "labels": {"nuclab.io/simulated": "true"}}},
        {"metadata": {"name": "real", "labels": {}}},
    ]
    # the API server writes 8192Mi back as 8Gi: the same amount is not a change
    existing[0]["status"]["capacity"]["memory"] = "16384Mi"
    plan = lab.sim_node_plan(existing, nodes, "v1.35.4")
    assert [n["metadata"]["name"] for n in plan["create"]] == ["a"]
    assert [n["metadata"]["name"] for n in plan["recreate"]] == ["b"]
    assert plan["recreate"][0]["status"]["capacity"]["memory"] == "8192Mi"
    assert plan["delete"] == ["gone"]


def test_sim_plan_recreates_a_kwok_node_made_before_it_carried_its_kind_label():
    nodes = lab.lab_nodes(hostvars(), ["m"], GROUPS)
    old = lab.sim_node(nodes[0], "v1.35.4")
    del old["metadata"]["labels"]["nuclab.io/node-kind"]
    plan = lab.sim_node_plan([old], nodes, "v1.35.4")
    assert [n["metadata"]["name"] for n in plan["recreate"]] == ["m"]


def test_sim_node_carries_the_inventory_capacity_and_the_kwok_annotation():
    node = lab.lab_node("b", hostvars(b={"node_capacity": {"nvidia.com/gpu": 1}})["b"], GROUPS)
    obj = lab.sim_node(node, "v1.35.4")
    assert obj["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert obj["metadata"]["labels"]["nuclab.io/node-kind"] == "kwok"
    assert obj["status"]["capacity"] == {
        "cpu": "4",
        "memory": "16Gi",
        "pods": "110",
        "nvidia.com/gpu": "1",
    }
    assert obj["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"


def test_validation_error_names_field_value_and_rule():
    with pytest.raises(ValidationError) as info:
        lab.lab_node("x", {"lab_role": "boss"}, {})
    assert info.value.field == "host x: lab_role"
    assert info.value.value == "boss"


def _real(name: str, kind: str = "real", zone: str = "zone-a") -> lab.LabNode:
    return lab.LabNode(host=name, name=name, role="worker", zone=zone, telemetry="cpu", kind=kind)


def test_real_nodes_get_addresses_and_pod_networks_apart_from_kwok() -> None:
    nodes = [_real("nuc-4"), _real("nuc-1", "kwok"), _real("nuc-2")]
    real = lab.real_nodes(nodes, "10.41.0.1/24", "10.42.0.0/16", "10.42.128.0/17")
    assert [(n.name, n.address, n.pod_cidr) for n in real] == [
        ("nuc-2", "10.41.0.11/24", "10.42.1.0/24"),
        ("nuc-4", "10.41.0.12/24", "10.42.2.0/24"),
    ]
    assert {n.host_link for n in real} == {"nlsim1", "nlsim2"}
    kwok = ipaddress.ip_network("10.42.128.0/17")
    assert not any(ipaddress.ip_network(n.pod_cidr).overlaps(kwok) for n in real)


def test_more_real_nodes_than_the_networks_hold_are_refused() -> None:
    nodes = [_real(f"n{i}") for i in range(5)]
    with pytest.raises(ValidationError, match="at most 3"):
        lab.real_nodes(nodes, "10.41.0.1/28", "10.42.0.0/16", "10.42.128.0/17")


def test_an_unknown_node_kind_is_refused_per_host() -> None:
    hostvars = {"a": {"lab_role": "worker", "sim_node_kind": "vm"}, "b": {"lab_role": "worker"}}
    problems = lab.preflight(hostvars, ["a", "b"], {"agent": ["a", "b"]})
    assert len(problems) == 1
    assert problems[0].startswith("host a: sim_node_kind: 'vm' is not allowed; kwok")


def test_real_node_preflight_names_each_host_for_root_and_memory() -> None:
    real = lab.real_nodes([_real("nuc-2"), _real("nuc-4")], "10.41.0.1/24", "10.42.0.0/16",
                          "10.42.128.0/17")  # fmt: skip
    assert lab.real_node_problems(real, 0, "MemAvailable:   2097152 kB\n", 512) == []
    short = lab.real_node_problems(real, 1000, "MemAvailable:    524288 kB\n", 512)
    assert len(short) == 4
    assert short[0].startswith("host nuc-2: sim_node_kind: real needs root")
    assert "1024 MiB" in short[1] and "512 MiB available" in short[1]
    # the lab's services (the Kafka broker) count too: 2 GiB holds the nodes, not them as well
    broker = lab.real_node_problems(real, 0, "MemAvailable:   1153434 kB\n", 512, 400)
    assert len(broker) == 2 and "about 1424 MiB" in broker[0] and "1126 MiB available" in broker[0]


def test_a_real_node_reserves_what_leaves_node_memory_allocatable() -> None:
    meminfo = "MemTotal:       24576000 kB\nMemAvailable:   20000000 kB\n"
    reserved = lab.system_reserved_memory("16Gi", meminfo, 100)
    # capacity (MemTotal) - reserved - eviction threshold = node_memory, to the KiB
    assert reserved == f"{24576000 - 16 * 1024 * 1024 - 100 * 1024}Ki"
    # a node_memory the machine does not have: nothing reserved, the node offers all it has
    assert lab.system_reserved_memory("64Gi", meminfo, 100) is None


def test_a_host_that_turns_real_loses_its_kwok_node_and_keeps_its_kubelet_node() -> None:
    kwok_node = lab.sim_node(_real("nuc-2", "kwok"), "v1.35.4")
    registered = {"metadata": {"name": "nuc-4", "labels": {lab.SIM_LABEL: "true"}}}
    plan = lab.sim_node_plan([kwok_node, registered], [_real("nuc-2"), _real("nuc-4")], "v1.35.4")
    assert plan == {"create": [], "recreate": [], "delete": ["nuc-2"]}
    back = lab.sim_node_plan([registered], [_real("nuc-4", "kwok")], "v1.35.4")
    assert [n["metadata"]["name"] for n in back["recreate"]] == ["nuc-4"]
