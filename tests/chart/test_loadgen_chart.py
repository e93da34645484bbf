"""The experiment chart's optional `loadgen` block: a Job of `nuclab loadgen` on a client node,
rendered by helm from values nuclab writes, validated against the Kubernetes schemas (strict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nuclab import services, spec
from tests.chart.conftest import validate

Render = Callable[..., list[dict[str, Any]]]

HEADLESS = "nuclab-exp-purple-headless.nuclab.svc.cluster.local"
PUSHGATEWAY = services.pushgateway()["url"]


def values_for(name: str = "purple", **loadgen: Any) -> dict[str, Any]:
    """Chart values as nuclab writes them, for an experiment with these loadgen fields."""
    return spec.to_values(spec.parse({"name": name, "loadgen": {"enabled": True, **loadgen}}))


CASES = {
    "kafka-lab": values_for(),
    "kafka-schedule-mbit": values_for(
        bootstrap="broker-0.example:9092,broker-1.example:9092", topic="frames.raw",
        schedule="10..80:30s,80:1m", unit="mbit", size=100 * 1024, cpu=1.5, ram=512,
    ),
    "http-peers": values_for(mode="http", rate=250.5, duration=90, pushgateway=""),
    "http-url": values_for(
        mode="http", url="http://web.other.svc:8080/api?x=1", arrivals="poisson",
        args=["--seed", "7"], image="registry.example/nuclab/tools:0.2.0",
    ),
    "longest-name": values_for(name="a" * spec.NAME_MAX),
}  # fmt: skip


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def job_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = by_kind(objects, "Job")
    return job


def policy(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [o for o in by_kind(objects, "NetworkPolicy") if o["metadata"]["name"] == name]
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_validates_and_the_job_is_one_attempt_on_a_client_node(
    render: Render, case: str
) -> None:
    values = CASES[case]
    name = values["experiment"]["name"]
    objects = render(values, release=spec.fullname(name))
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["labels"]["nuclab.io/experiment"] == name
    job = job_of(objects)
    assert len(job["metadata"]["name"]) <= 63  # the Job's pods carry it as a label value
    assert job["spec"]["backoffLimit"] == 0
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["nuclab.io/experiment"] == name
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "loadgen"
    assert pod["spec"]["nodeSelector"] == {"nuclab.io/role": "client"}
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_job_runs_like_a_peer_token_less_and_restricted(render: Render) -> None:
    objects = render(CASES["kafka-lab"])
    (sts,) = by_kind(objects, "StatefulSet")
    peer_pod = sts["spec"]["template"]["spec"]
    pod = job_of(objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == peer_pod["serviceAccountName"] == "nuclab-exp-purple"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == peer_pod["securityContext"]
    (container,) = pod["containers"]
    peer = next(c for c in peer_pod["containers"] if c["name"] == "peer")
    assert container["securityContext"] == peer["securityContext"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "500m", "memory": "256Mi"},
    }
    assert container["image"] == "localhost/nuclab/tools:0.1.0"


def test_the_job_pod_is_no_peer(render: Render) -> None:
    """Neither the StatefulSet nor the headless Service selects the load generator's pod."""
    objects = render(CASES["kafka-lab"])
    labels = job_of(objects)["spec"]["template"]["metadata"]["labels"]
    (sts,) = by_kind(objects, "StatefulSet")
    (service,) = by_kind(objects, "Service")
    assert not matches(sts["spec"]["selector"]["matchLabels"], labels)
    assert not matches(service["spec"]["selector"], labels)


def _command(objects: list[dict[str, Any]]) -> list[str]:
    (container,) = job_of(objects)["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]


def test_kafka_mode_targets_the_lab_kafka_by_default(render: Render) -> None:
    assert _command(render(CASES["kafka-lab"])) == [
        "nuclab", "loadgen", "produce",
        "--bootstrap", "lab-kafka-bootstrap.kafka.svc:9092", "--topic", "frames",
        "--size", "1024", "--unit", "msg", "--rate", "100", "--duration", "60s",
        "--pushgateway", PUSHGATEWAY, "--experiment", "purple",
    ]  # fmt: skip


def test_kafka_mode_with_brokers_and_a_schedule(render: Render) -> None:
    assert _command(render(CASES["kafka-schedule-mbit"])) == [
        "nuclab", "loadgen", "produce",
        "--bootstrap", "broker-0.example:9092,broker-1.example:9092", "--topic", "frames.raw",
        "--size", "102400", "--unit", "mbit", "--schedule", "10..80:30s,80:1m",
        "--pushgateway", PUSHGATEWAY, "--experiment", "purple",
    ]  # fmt: skip


def test_http_mode_targets_the_default_peers_echo_by_default(render: Render) -> None:
    # The first port (7000) speaks gossip, not HTTP: the default peer answers on /echo.
    assert _command(render(CASES["http-peers"])) == [
        "nuclab", "loadgen", "http",
        "--url", f"http://{HEADLESS}:9464/echo", "--arrivals", "constant",
        "--wait-for-target", "5m",
        "--rate", "250.5", "--duration", "90s", "--experiment", "purple",
    ]  # fmt: skip


def test_http_mode_targets_a_port_named_http_of_a_workload_of_ones_own(render: Render) -> None:
    values = {**CASES["http-peers"], "ports": [
        {"name": "peer", "port": 7000, "protocol": "TCP"},
        {"name": "http", "port": 8080, "protocol": "TCP"},
    ]}  # fmt: skip
    command = _command(render(values))
    assert command[command.index("--url") + 1] == f"http://{HEADLESS}:8080/"


def test_http_mode_without_an_http_port_or_metrics_is_refused(reject: Callable[..., str]) -> None:
    values = {**CASES["http-peers"], "metrics": {"enabled": False}}
    message = reject(values)
    assert "loadgen.http.url is empty and the peers serve no HTTP" in message


def test_http_mode_with_a_url_and_extra_args(render: Render) -> None:
    objects = render(CASES["http-url"])
    assert _command(objects)[2:7] == [
        "http", "--url", "http://web.other.svc:8080/api?x=1", "--arrivals", "poisson",
    ]  # fmt: skip
    assert _command(objects)[-4:] == ["--seed", "7", "--experiment", "purple"]
    (container,) = job_of(objects)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example/nuclab/tools:0.2.0"


def test_a_million_per_second_renders_as_digits(render: Render) -> None:
    command = _command(render(values_for(rate=1_000_000)))
    assert command[command.index("--rate") + 1] == "1000000"


def test_network_policies_let_the_load_generator_reach_peers_and_kafka(render: Render) -> None:
    objects = render(CASES["kafka-lab"])
    pod_labels = job_of(objects)["spec"]["template"]["metadata"]["labels"]
    own = policy(objects, "nuclab-exp-purple.loadgen")["spec"]
    assert matches(own["podSelector"]["matchLabels"], pod_labels)
    assert own["policyTypes"] == ["Ingress", "Egress"]
    peers = {"podSelector": {"matchLabels": {"nuclab.io/experiment": "purple"}}}
    kafka = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert own["egress"][0] == {"to": [peers]}
    assert {p["port"] for p in own["egress"][1]["ports"]} == {53}
    assert {"to": [kafka], "ports": [{"port": 9092, "protocol": "TCP"}]} in own["egress"]
    assert {"to": [monitoring]} in own["egress"]  # the Pushgateway
    # the peers' policy lets pods of the experiment in: the load generator's pod is one
    peer_policy = policy(objects, "nuclab-exp-purple")["spec"]
    assert not matches(peer_policy["podSelector"]["matchLabels"], pod_labels)
    (source,) = peer_policy["ingress"][0]["from"]
    assert matches(source["podSelector"]["matchLabels"], pod_labels)


def test_http_mode_without_pushgateway_reaches_only_peers_and_dns(render: Render) -> None:
    own = policy(render(CASES["http-peers"]), "nuclab-exp-purple.loadgen")["spec"]
    assert len(own["egress"]) == 2


def test_no_policy_for_it_when_policies_are_off(render: Render) -> None:
    objects = render({**CASES["kafka-lab"], "networkPolicy": {"enabled": False}})
    assert by_kind(objects, "NetworkPolicy") == []
    assert len(by_kind(objects, "Job")) == 1


def test_disabled_by_default_renders_nothing_of_it(render: Render) -> None:
    objects = render(spec.to_values(spec.parse({"name": "purple"})))
    assert by_kind(objects, "Job") == []
    assert [o["metadata"]["name"] for o in by_kind(objects, "NetworkPolicy")] == [
        "nuclab-exp-purple"
    ]


def test_new_settings_make_a_new_job_scaling_keeps_it(render: Render) -> None:
    """A Job's pod template is immutable: its name carries the template's hash."""
    name = job_of(render(CASES["kafka-lab"]))["metadata"]["name"]
    assert name.startswith("nuclab-exp-purple-loadgen-")
    scaled = {**CASES["kafka-lab"], "experiment": {**CASES["kafka-lab"]["experiment"], "peers": 9}}
    assert job_of(render(scaled))["metadata"]["name"] == name
    assert job_of(render(values_for(rate=200)))["metadata"]["name"] != name


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"rate": 0}, "rate"),
        ({"mode": "udp"}, "mode"),
        ({"colour": "red"}, "colour"),
        ({"duration": 0}, "duration"),
        ({"size": 16 * 1024 * 1024 + 1}, "size"),
        ({"schedule": "fast"}, "schedule"),
        ({"unit": "gbit"}, "unit"),
        ({"resources": {"cpu": 0.5, "memory": 10}}, "memory"),
        ({"kafka": {"topic": "a b"}}, "topic"),
        ({"kafka": {"bootstrap": "no-port"}}, "bootstrap"),
        ({"http": {"url": "ftp://x/"}}, "url"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_schema_rejects_bad_loadgen_values_naming_the_field(
    reject: Callable[..., str], change: dict[str, Any], named: str
) -> None:
    values = values_for()
    loadgen = values["loadgen"]
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(loadgen.get(key), dict):
            loadgen[key] = {**loadgen[key], **value}
        else:
            loadgen[key] = value
    message = reject(values)
    assert "values don't meet the specifications of the schema" in message
    assert "loadgen" in message and named in message


def test_no_object_of_one_experiment_is_named_like_one_of_another(render: Render) -> None:
    """Experiment `a`'s loadgen objects and experiment `a-loadgen`'s own never share a kind and
    a name (helm would refuse the second release: one experiment could block another)."""

    def names(name: str) -> set[tuple[str, str]]:
        values = values_for(name=name, mode="http")
        objects = render(values, release=f"nuclab-exp-{name}")
        return {(o["kind"], o["metadata"]["name"]) for o in objects}

    assert names("a") & names("a-loadgen") == set()


def test_extra_args_cannot_make_the_load_generator_push_as_another_experiment(
    render: Render,
) -> None:
    """`nuclab loadgen`'s own parser reads the rendered command: an --experiment in the tenant's
    args is overridden by the chart's (argparse keeps the last)."""
    from nuclab import cli

    values = values_for(mode="http", args=["--experiment", "blue", "--seed", "7"])
    command = _command(render(values))
    assert command[:2] == ["nuclab", "loadgen"]
    parsed = cli.build_parser().parse_args(command[1:])
    assert parsed.experiment == "purple"
    assert parsed.seed == 7  # the tenant's other args still count
