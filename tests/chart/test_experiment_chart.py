"""charts/experiment: a matrix of values rendered by helm, every object validated against the
Kubernetes OpenAPI schemas (strict, the lab's version), and the objects checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nuclab import spec
from tests.chart import pod_security
from tests.chart.conftest import helm_template, validate

Render = Callable[..., list[dict[str, Any]]]
PODMONITOR_API = "monitoring.coreos.com/v1/PodMonitor"


def values_for(**fields: Any) -> dict[str, Any]:
    """Chart values as nuclab writes them, from spec fields."""
    return spec.to_values(spec.parse({"name": "purple", **fields}, create=fields.get("peers") != 0))


MATRIX = {
    "reference": values_for(),
    "paused": values_for(peers=0),
    "large": values_for(peers=500, cpu=1.5, ram=2048, msg_size=16 * 1024 * 1024),
    "netem": values_for(latency=20, jitter=2.5, loss=0.5, uplink_bw=0.5, downlink_bw=100),
    "unlimited": values_for(uplink_bw=None, downlink_bw=None),
    "placement": values_for(role="client", zones=["zone-a", "zone-b"], node_labels={"gpu": "x"}),
    "network-matrix": values_for(
        matrix=[
            {"from": "zone-a", "to": "zone-b", "delay": 20, "jitter": 2.5, "rate": 100},
            {"from": "zone-b", "to": "zone-c", "loss": 0.5, "rate": None, "symmetric": False},
        ]
    ),
    "params": values_for(params={"topic": "t", "fanout": 3}, command=[], args=["--x"]),
    "longest-name": {**values_for(), "experiment": {"name": "a" * spec.NAME_MAX}},
    "probe-and-extras": {
        **values_for(),
        "probe": {"enabled": True, "interval": "2s"},
        "metrics": {"enabled": True, "podMonitor": "false"},
        "ports": [{"name": "gossip", "port": 9000, "protocol": "UDP"}],
        "networkPolicy": {"extraEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        "placement": {"spread": False, "tolerations": [{"key": "a", "operator": "Exists"}]},
    },
    "no-metrics-no-policy": {
        **values_for(),
        "metrics": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "serviceAccount": {"create": False},
    },
}


def release_for(values: dict[str, Any]) -> str:
    return spec.fullname(values["experiment"]["name"])


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def configmap(objects: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    """The experiment's ConfigMap ``<release>-<suffix>`` (params, network)."""
    found = [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{len(found)} ConfigMaps named *{suffix}"
    return found[0]


def peer(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "peer")


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("operator", [False, True], ids=["annotations", "podmonitor"])
@pytest.mark.parametrize("case", sorted(MATRIX))
def test_every_object_validates_against_the_kubernetes_schemas(
    render: Render, case: str, operator: bool
) -> None:
    values = MATRIX[case]
    apis = [PODMONITOR_API] if operator else []
    objects = render(values, release=release_for(values), api_versions=apis)
    metrics = values.get("metrics", {})
    if operator and metrics.get("enabled", True) and metrics.get("podMonitor", "auto") == "auto":
        assert "PodMonitor" in {o["kind"] for o in objects}
    kinds = {o["kind"] for o in objects}
    assert {"StatefulSet", "Service", "ConfigMap", "Pod"} <= kinds
    for obj in objects:
        validate(obj)
        labels = obj["metadata"]["labels"]
        assert labels["nuclab.io/experiment"] == values["experiment"]["name"], obj["kind"]
        assert labels["app.kubernetes.io/instance"] == release_for(values)
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["namespace"] == "nuclab"


def test_reference_experiment_objects(render: Render) -> None:
    objects = render(MATRIX["reference"])
    sts = one(objects, "StatefulSet")
    assert sts["metadata"]["name"] == "nuclab-exp-purple"
    assert sts["spec"]["replicas"] == 5
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == "nuclab-exp-purple-headless"
    assert sts["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "experiment",
        "app.kubernetes.io/instance": "nuclab-exp-purple",
    }
    template = sts["spec"]["template"]
    assert template["metadata"]["labels"]["nuclab.io/experiment"] == "purple"
    annotations = template["metadata"]["annotations"]
    assert annotations["kubernetes.io/egress-bandwidth"] == "16M"
    assert annotations["kubernetes.io/ingress-bandwidth"] == "16M"
    assert annotations["prometheus.io/scrape"] == "true"  # no PodMonitor API: annotations
    pod = template["spec"]
    assert pod["nodeSelector"] == {"nuclab.io/role": "worker"}
    assert pod["automountServiceAccountToken"] is False
    assert "initContainers" not in pod
    container = peer(objects)
    limits = {"cpu": "50m", "memory": "16Mi"}
    assert container["resources"] == {"limits": limits, "requests": limits}
    assert container["command"] == ["nuclab-peer"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    variables = env(container)
    assert variables["NUCLAB_EXPERIMENT"] == "purple"
    assert variables["NUCLAB_MSG_SIZE"] == "1440"
    assert variables["NUCLAB_MSG_INTERVAL_MS"] == "2000"
    assert variables["NUCLAB_CONNECT_TO"] == "5"
    assert variables["NUCLAB_SERVICE"] == "nuclab-exp-purple-headless.nuclab.svc.cluster.local"
    assert variables["NUCLAB_PEERS"] == {
        "configMapKeyRef": {"name": "nuclab-exp-purple-params", "key": "peers"}
    }
    assert configmap(objects, "-params")["data"]["peers"] == "5"

    service = one(objects, "Service")
    assert service["metadata"]["name"] == "nuclab-exp-purple-headless"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]

    account = one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert by_kind(objects, "PodMonitor") == []


def test_the_peer_is_probed_on_its_health_endpoints(render: Render) -> None:
    """/readyz and /healthz on the metrics port; a TCP connect to the first port without
    metrics (the peer then serves no HTTP at all); none for a workload that serves neither."""
    container = peer(render(MATRIX["reference"]))
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert env(container)["NUCLAB_METRICS_PORT"] == "9464"
    off = peer(render(MATRIX["no-metrics-no-policy"]))
    assert off["readinessProbe"]["tcpSocket"] == {"port": 7000}
    assert off["livenessProbe"]["tcpSocket"] == {"port": 7000}
    assert env(off)["NUCLAB_METRICS_PORT"] == "0"
    own = peer(render({**values_for(command=["my-app"]), "probes": {"enabled": False}}))
    assert "readinessProbe" not in own and "livenessProbe" not in own


def test_the_charts_default_command_is_the_specs(repo: Path) -> None:
    values = yaml.safe_load((repo / "charts" / "experiment" / "values.yaml").read_text())
    assert values["command"] == list(spec.DEFAULT_COMMAND) == ["nuclab-peer"]


def test_scaling_changes_only_the_replicas_and_the_peer_count(render: Render) -> None:
    five = render(MATRIX["reference"])
    ten = render(values_for(peers=10))
    assert one(ten, "StatefulSet")["spec"]["replicas"] == 10
    # the pod template is the same: scaling starts or stops peers, it restarts none
    assert (
        one(five, "StatefulSet")["spec"]["template"] == one(ten, "StatefulSet")["spec"]["template"]
    )
    assert configmap(ten, "-params")["data"]["peers"] == "10"


def test_large_numbers_render_as_integers_not_floats(render: Render) -> None:
    objects = render(MATRIX["large"], release="nuclab-exp-purple")
    assert one(objects, "StatefulSet")["spec"]["replicas"] == 500
    assert env(peer(objects))["NUCLAB_MSG_SIZE"] == str(16 * 1024 * 1024)
    assert peer(objects)["resources"]["limits"] == {"cpu": "1500m", "memory": "2048Mi"}


def test_network_emulation_changes_no_pod_only_the_network_configmap(render: Render) -> None:
    """Latency, jitter and loss are the node agent's (roles/net_agent): the peers' pods are
    those of an experiment without them, bar the bandwidth annotations."""
    objects = render(MATRIX["netem"])
    pod = one(objects, "StatefulSet")["spec"]["template"]
    reference = one(render(values_for(uplink_bw=0.5, downlink_bw=100)), "StatefulSet")
    assert pod == reference["spec"]["template"]
    assert "initContainers" not in pod["spec"]
    assert pod["metadata"]["annotations"]["kubernetes.io/egress-bandwidth"] == "500k"
    assert pod["metadata"]["annotations"]["kubernetes.io/ingress-bandwidth"] == "100M"


# Every values this chart is rendered with here, the load generator's both modes included.
POD_CASES = {
    **MATRIX,
    "loadgen-kafka": values_for(loadgen={"enabled": True}),
    "loadgen-http-probe": values_for(probe=True, loadgen={"enabled": True, "mode": "http"}),
}


def pods_of(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template or pod) of every object that makes pods."""
    found = []
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Job"):
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]))
        elif obj["kind"] == "Pod":
            found.append((f"Pod/{obj['metadata']['name']}", obj))
    return found


@pytest.mark.parametrize("case", sorted(POD_CASES))
def test_every_pod_passes_pod_security_restricted_without_init_containers_or_capabilities(
    render: Render, case: str
) -> None:
    """The experiment namespaces enforce `restricted` (nuclab.deploy.NAMESPACE_LABELS): the
    peers (and their probe sidecar), the load generator and helm's test pod all pass it."""
    values = POD_CASES[case]
    pods = pods_of(render(values, release=release_for(values)))
    kinds = {name.split("/")[0] for name, _ in pods}
    assert {"StatefulSet", "Pod"} <= kinds
    if values.get("loadgen", {}).get("enabled"):
        assert "Job" in kinds
    for name, pod in pods:
        spec_ = pod["spec"]
        assert "initContainers" not in spec_, name
        for container in pod_security.containers(spec_):
            capabilities = container["securityContext"]["capabilities"]
            assert capabilities == {"drop": ["ALL"]}, (name, container["name"])
        annotations = pod["metadata"].get("annotations")
        assert pod_security.violations(spec_, annotations) == [], name


def test_the_restricted_check_refuses_what_pod_security_refuses() -> None:
    """The check above is not vacuous: the old netem init container (root with NET_ADMIN) and
    each way out of a pod are found."""
    restricted = {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    pod = {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "peer", "securityContext": restricted}],
    }
    assert pod_security.violations(pod) == []
    netem = {
        "name": "netem",
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
        },
    }
    assert pod_security.violations({**pod, "initContainers": [netem]}) == [
        "netem: runAsNonRoot is not true (container or pod)",
        "netem: runAsUser 0",
        "netem: capabilities add NET_ADMIN",
    ]
    bind = {**restricted, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}
    assert (
        pod_security.violations({**pod, "containers": [{"name": "c", "securityContext": bind}]})
        == []
    )
    escapes: dict[str, dict[str, Any]] = {
        "hostNetwork": {**pod, "hostNetwork": True},
        "hostPID": {**pod, "hostPID": True},
        "volume host: hostPath": {**pod, "volumes": [{"name": "host", "hostPath": {"path": "/"}}]},
        "sysctl net.ipv4.ip_forward": {
            **pod,
            "securityContext": {
                **pod["securityContext"],
                "sysctls": [{"name": "net.ipv4.ip_forward", "value": "1"}],
            },
        },
        "peer: privileged": {
            **pod,
            "containers": [{"name": "peer", "securityContext": {**restricted, "privileged": True}}],
        },
        "peer: hostPort 80": {
            **pod,
            "containers": [
                {"name": "peer", "securityContext": restricted, "ports": [{"hostPort": 80}]}
            ],
        },
        "peer: allowPrivilegeEscalation is not false": {
            **pod,
            "containers": [
                {
                    "name": "peer",
                    "securityContext": {**restricted, "allowPrivilegeEscalation": True},
                }
            ],
        },
        "peer: seccompProfile None (container or pod)": {**pod, "securityContext": {}},
        "peer: capabilities do not drop ALL": {
            **pod,
            "containers": [{"name": "peer", "securityContext": {**restricted, "capabilities": {}}}],
        },
    }
    for named, bad in escapes.items():
        assert named in pod_security.violations(bad), named
    unconfined = {"container.apparmor.security.beta.kubernetes.io/peer": "unconfined"}
    assert pod_security.violations(pod, unconfined) != []


def test_unlimited_bandwidth_has_no_annotations(render: Render) -> None:
    annotations = one(render(MATRIX["unlimited"]), "StatefulSet")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert not any(key.endswith("-bandwidth") for key in annotations)


def test_placement_role_zones_labels_and_spread(render: Render) -> None:
    pod = one(render(MATRIX["placement"]), "StatefulSet")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nuclab.io/role": "client", "nuclab.io/gpu": "x"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-a", "zone-b"]}
    ]
    spread = pod["topologySpreadConstraints"]
    assert [c["topologyKey"] for c in spread] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    assert {c["whenUnsatisfiable"] for c in spread} == {"ScheduleAnyway"}


def test_params_become_environment_variables(render: Render) -> None:
    objects = render(MATRIX["params"])
    variables = env(peer(objects))
    assert variables["NUCLAB_PARAM_TOPIC"] == "t"
    assert variables["NUCLAB_PARAM_FANOUT"] == "3"
    assert "command" not in peer(objects)  # empty command: the image's entrypoint
    assert peer(objects)["args"] == ["--x"]


def test_network_policy_isolates_the_experiment(render: Render) -> None:
    policy = one(render(MATRIX["reference"]), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    own = {"podSelector": {"matchLabels": {"nuclab.io/experiment": "purple"}}}
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert policy["ingress"] == [{"from": [own]}, {"from": [monitoring]}]
    assert policy["egress"][0] == {"to": [own]}
    assert {p["port"] for p in policy["egress"][1]["ports"]} == {53}
    assert len(policy["egress"]) == 2


def test_pod_monitor_when_the_operator_api_exists(render: Render) -> None:
    objects = render(MATRIX["reference"], api_versions=[PODMONITOR_API])
    monitor = one(objects, "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == (
        "nuclab-exp-purple"
    )
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    annotations = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_probe_sidecar_placeholder(render: Render) -> None:
    objects = render(MATRIX["probe-and-extras"])
    pod = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    probe = next(c for c in pod["containers"] if c["name"] == "probe")
    assert env(probe)["NUCLAB_PROBE_INTERVAL"] == "2s"
    assert "topologySpreadConstraints" not in pod

    # The RTT matrix is bounded by default (16 targets per probe); 0 measures every peer.
    assert env(probe)["NUCLAB_PROBE_MAX_TARGETS"] == "16"
    values = {**MATRIX["probe-and-extras"], "probe": {"enabled": True, "maxTargets": 0}}
    pod = one(render(values), "StatefulSet")["spec"]["template"]["spec"]
    probe = next(c for c in pod["containers"] if c["name"] == "probe")
    assert env(probe)["NUCLAB_PROBE_MAX_TARGETS"] == "0"


def test_helm_test_resolves_every_peer(render: Render) -> None:
    test_pod = one(render(values_for(peers=7)), "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = test_pod["spec"]["containers"][0]["command"][3:]
    assert args == [
        "nuclab-exp-purple",
        "nuclab-exp-purple-headless.nuclab.svc.cluster.local",
        "7",
        "60",
    ]


def test_an_empty_name_comes_from_the_release(render: Render) -> None:
    values = {**values_for(), "experiment": {**values_for()["experiment"], "name": ""}}
    objects = render(values, release="nuclab-exp-green")
    assert {o["metadata"]["labels"]["nuclab.io/experiment"] for o in objects} == {"green"}


def test_a_release_name_that_is_no_experiment_name_fails(tmp_path: Path) -> None:
    values = {**values_for(), "experiment": {**values_for()["experiment"], "name": ""}}
    proc = helm_template(values, tmp_path, release="lab.purple")  # a valid release, no DNS label
    assert proc.returncode != 0
    assert "experiment.name" in proc.stderr


# A network.matrix entry as nuclab writes it (every key), for the schema's refusals below.
LINK = spec.parse(
    {"name": "purple", "matrix": [{"from": "zone-a", "to": "zone-b", "delay": 20}]}
).matrix[0]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"experiment": {"name": "Purple"}}, "name"),
        ({"experiment": {"name": "a" * (spec.NAME_MAX + 1)}}, "name"),
        ({"experiment": {"peers": -1}}, "peers"),
        ({"experiment": {"connectTo": -1}}, "connectTo"),
        ({"resources": {"cpu": 0}}, "cpu"),
        ({"resources": {"memory": 2}}, "memory"),
        ({"network": {"uplink": 0}}, "uplink"),
        ({"network": {"loss": 150}}, "loss"),
        ({"placement": {"role": "master"}}, "role"),
        ({"colour": "red"}, "colour"),
        ({"probe": {"maxTargets": -1}}, "maxTargets"),
        ({"probe": {"maxTargets": spec.PEERS_MAX + 1}}, "maxTargets"),
        ({"experiment": {"pers": 5}}, "pers"),
        ({"experiment": {"params": {"blob": "v" * (spec.PARAM_VALUE_MAX + 1)}}}, "blob"),
        ({"experiment": {"params": {f"p{i}": i for i in range(spec.PARAMS_MAX + 1)}}}, "params"),
        ({"placement": {"nodeLabels": {"role": "server"}}}, "propertyName 'role'"),
        ({"network": {"matrix": {"from": "zone-a"}}}, "matrix"),
        ({"network": {"matrix": [{**LINK, "loss": 150}]}}, "loss"),
        ({"network": {"matrix": [{**LINK, "rate": 0.05}]}}, "rate"),
        ({"network": {"matrix": [{**LINK, "delay": -1}]}}, "delay"),
        ({"network": {"matrix": [{**LINK, "to": "zone b"}]}}, "to"),
        ({"network": {"matrix": [{**LINK, "to": ""}]}}, "to"),
        ({"network": {"matrix": [{**LINK, "symmetric": "yes"}]}}, "symmetric"),
        ({"network": {"matrix": [{**LINK, "lat": 5}]}}, "lat"),
        ({"network": {"matrix": [{k: v for k, v in LINK.items() if k != "from"}]}}, "from"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(
    reject: Callable[..., str], change: dict[str, Any], named: str
) -> None:
    values = values_for()
    for section, fields in change.items():
        if isinstance(fields, dict) and isinstance(values.get(section), dict):
            values[section] = {**values[section], **fields}
        else:
            values[section] = fields
    message = reject(values)
    assert "values don't meet the specifications of the schema" in message
    assert named in message


def test_the_network_configmap_carries_what_the_node_agent_applies(render: Render) -> None:
    """The agent (nuclab.netagent) reads <release>-network; its plan of this ConfigMap is the
    spec's: per-peer latency, and the matrix's links both ways where symmetric."""
    from nuclab.netagent import agent, plan

    objects = render(MATRIX["netem"])
    cm = configmap(objects, "-network")
    assert cm["metadata"]["labels"]["nuclab.io/network"] == "true"
    assert cm["metadata"]["labels"]["nuclab.io/experiment"] == "purple"
    network = agent.network_of(cm)
    assert (network["latency"], network["jitter"], network["loss"]) == (20, 2.5, 0.5)
    network = agent.network_of(configmap(render(MATRIX["network-matrix"]), "-network"))
    peers = [("10.0.0.2", "zone-a"), ("10.0.0.3", "zone-b"), ("10.0.0.4", "zone-c")]
    links = {
        zone: [(c.zone, c.link) for c in plan.plan(zone, network, peers).classes]
        for zone in ("zone-a", "zone-b", "zone-c")
    }
    assert links == {
        "zone-a": [("zone-b", plan.Link(delay=20, jitter=2.5, rate=100))],
        "zone-b": [
            ("zone-a", plan.Link(delay=20, jitter=2.5, rate=100)),
            ("zone-c", plan.Link(loss=0.5)),
        ],
        "zone-c": [],
    }
    # The peers do not mount it: a change reaches them through the agent, not a restart.
    volumes = one(objects, "StatefulSet")["spec"]["template"]["spec"].get("volumes", [])
    assert all(v.get("configMap", {}).get("name") != cm["metadata"]["name"] for v in volumes)
