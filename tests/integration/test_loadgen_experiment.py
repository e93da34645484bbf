"""An experiment with a load generator on the simulated lab's real nodes (`loadgen:` in a spec
file), through the playbook, in both modes.

The Job's pod runs on the real client node nuc-1 (kubelet, containerd, runc, CNI, kube-router's
firewall); the peers on the real workers nuc-2 and nuc-4. `nuclab loadgen http` really sends its
requests, through the headless Service's DNS name and the experiment's NetworkPolicies, to the
default peer's /echo; the peers' own counters (`nuclab_peer_http_requests_total`, read from
their metrics ports) must add up to the requests the load generator says were answered. The Job
pushes its results to the chart's default Pushgateway URL, which on the simulated lab is the
lab's own Pushgateway (Debian's, on the bridge, behind the Service of the monitoring chart's
name): what it holds there must be the run's figures.

In Kafka mode the Job produces to the lab's Kafka through its default bootstrap name
(lab-kafka-bootstrap.kafka.svc): on the simulated lab, a real Apache Kafka broker on the bridge
(roles/sim_cluster/tasks/kafka.yml), behind a Service of the name Strimzi gives it on a real lab.
Every message it says the broker acknowledged must be on the topic, read back from the broker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition
from kubernetes import client, config

from tests.integration.conftest import REPO, SIM_INVENTORY, run_playbook
from tests.integration.realnodes import REAL, REAL_CLIENT
from tests.integration.scrape import scrape, total

NAMESPACE = "nuclab"
NAME = "purple-load"
SPEC_FILE = REPO / "experiments" / "purple-loadgen.yml"
RATE, SECONDS = 50, 20  # 1000 requests: the reference file's 200/s for 60 s, shortened
METRICS_PORT = 9464  # the chart's metrics.port: the default peer's /metrics and /echo
LAB = yaml.safe_load((SIM_INVENTORY / "group_vars/all/lab.yml").read_text())
PUSHGATEWAY = "http://{}:{}".format(
    LAB["sim_cluster_bridge_address"].split("/")[0], LAB["sim_cluster_pushgateway_port"]
)
KAFKA = "{}:{}".format(
    LAB["sim_cluster_bridge_address"].split("/")[0], LAB["sim_cluster_kafka_port"]
)
SUMMARY = re.compile(r"^http: achieved ([\d,.]+) req/s.*?; ([\d,]+) ok, ([\d,]+) errors", re.M)


class Api:
    """One experiment's Jobs and pods."""

    def __init__(self, kubeconfig: Path, name: str = NAME) -> None:
        api = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.name = name
        self.selector = f"nuclab.io/experiment={name}"

    def jobs(self) -> list[Any]:
        return self.batch.list_namespaced_job(NAMESPACE, label_selector=self.selector).items

    def pods(self, component: str) -> list[Any]:
        selector = f"{self.selector},app.kubernetes.io/component={component}"
        return self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items

    def finished(self, job: Any, pod: Any, timeout: float) -> str:
        """Wait for the Job to finish; its one attempt must have completed (exit 0): its log."""
        name = job.metadata.name
        done = eventually(
            lambda: (j := self.batch.read_namespaced_job(name, NAMESPACE)).status.conditions and j,
            "the Job did not finish",
            timeout=timeout,
        )
        log = self.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE)
        assert any(c.type == "Complete" and c.status == "True" for c in done.status.conditions), log
        (state,) = self.core.read_namespaced_pod(
            pod.metadata.name, NAMESPACE
        ).status.container_statuses
        assert state.state.terminated.exit_code == 0, log
        return log


def eventually(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"{what} after {timeout:.0f}s"
            return result
        time.sleep(0.5)


def summary(pattern: re.Pattern[str], log: str) -> tuple[float, ...]:
    """The load generator's summary line: achieved rate, completed, errors."""
    found = pattern.search(log)
    assert found, log
    return tuple(float(g.replace(",", "")) for g in found.groups())


def requests_answered(pod_ip: str) -> float:
    """The peer's own count of the /echo requests it answered (0 before the first)."""
    return total(
        scrape(f"http://{pod_ip}:{METRICS_PORT}/metrics"), "nuclab_peer_http_requests_total"
    )


def pushed(pod_name: str, experiment: str = NAME, mode: str = "http") -> dict[str, float]:
    """What the load generator pod pushed to the lab's Pushgateway (its group: job, instance)."""
    return {
        s.name: s.value
        for s in scrape(f"{PUSHGATEWAY}/metrics")
        if s.labels.get("job") == "nuclab-loadgen" and s.labels.get("instance") == pod_name
        and s.labels.get("experiment") == experiment and s.labels.get("mode") == mode
    }  # fmt: skip


def on_topic(topic: str) -> list[bytes]:
    """Every message of the topic's one partition, read back from the lab's broker."""
    consumer = Consumer(
        {"bootstrap.servers": KAFKA, "group.id": f"check-{topic}", "auto.offset.reset": "earliest"}
    )
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < end and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(500, timeout=0.5) if m.error() is None]
        return got
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def api(sim_lab: Path) -> Iterator[Api]:
    view = Api(sim_lab)
    if view.jobs() or view.pods("peer"):
        run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")
    yield view
    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """The reference loadgen experiment, its peers on the real workers, a shorter, exact run."""
    spec = yaml.safe_load(SPEC_FILE.read_text())
    experiment = spec["experiment"]
    experiment["node_labels"] = {"node-kind": "real"}
    # constant arrivals: exactly RATE x SECONDS requests (the file's poisson varies the count)
    experiment["loadgen"].update(rate=RATE, duration=SECONDS, arrivals="constant")
    assert "pushgateway" not in experiment["loadgen"]  # the chart's default: the lab's
    path = tmp_path / "purple-load.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_load_generator_runs_once_on_the_real_client_and_its_requests_reach_the_peers(
    api: Api, spec_file: Path
) -> None:
    run_playbook("experiment.yml", "-e", f"@{spec_file}", "-e", "experiment_wait_timeout=180")

    (job,) = api.jobs()
    assert job.spec.backoff_limit == 0
    assert job.metadata.labels["app.kubernetes.io/component"] == "loadgen"
    peers = api.pods("peer")
    assert len(peers) == 5  # the role waited for exactly the peers
    assert {p.spec.node_name for p in peers} <= REAL

    (pod,) = eventually(lambda: api.pods("loadgen"), "no load generator pod")
    assert pod.metadata.labels["nuclab.io/experiment"] == NAME
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.spec.node_selector == {"nuclab.io/role": "client"}
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.node_name == REAL_CLIENT
    (container,) = pod.spec.containers
    assert container.command == ["nuclab", "loadgen"]
    url = f"http://nuclab-exp-{NAME}-headless.{NAMESPACE}.svc.cluster.local:{METRICS_PORT}/echo"
    assert container.args[:3] == ["http", "--url", url]

    # the Job really ran: one attempt, which held the rate (the exit code is the verdict)
    log = api.finished(job, pod, timeout=SECONDS + 120)
    achieved, ok, errors = summary(SUMMARY, log)
    assert errors == 0 and ok == RATE * SECONDS, log
    assert abs(achieved - RATE) <= 0.02 * RATE, log
    # ... and pushed to the lab's Pushgateway, through the Service's name and the Job's policy
    results = pushed(pod.metadata.name)
    assert results.get("nuclab_loadgen_completed_total") == ok, (results, log)
    assert results.get("nuclab_loadgen_errors_total") == 0, results
    assert results.get("nuclab_loadgen_result_target_held") == 1, results
    assert results.get("nuclab_loadgen_running") == 0, results
    assert "push failed" not in log, log
    # ... and every answered request is one the peers counted, on the real nodes
    answered = sum(requests_answered(p.status.pod_ip) for p in api.pods("peer"))
    assert answered == ok, (
        f"the peers answered {answered:.0f} requests, the load generator {ok:.0f}"
    )

    # only peers behind the headless Service
    slices = api.discovery.list_namespaced_endpoint_slice(
        NAMESPACE, label_selector=f"kubernetes.io/service-name=nuclab-exp-{NAME}-headless"
    ).items
    behind = {e.target_ref.name for s in slices for e in (s.endpoints or []) if e.target_ref}
    assert pod.metadata.name not in behind

    # scaling the peers leaves the Job (its pod template is immutable) as it is
    run_playbook(
        "experiment.yml", "-e", f"name={NAME}", "-e", "peers=2", "-e", "experiment_wait_timeout=180"
    )
    (again,) = api.jobs()
    assert again.metadata.uid == job.metadata.uid
    assert len(api.pods("peer")) == 2

    run_playbook("experiment.yml", "-e", f"name={NAME}", "-e", "state=absent")
    assert api.jobs() == []
    assert api.core.list_namespaced_pod(NAMESPACE, label_selector=api.selector).items == []


KAFKA_NAME = "purple-kafka"
KAFKA_RATE, KAFKA_SECONDS, KAFKA_SIZE = 100, 15, 1440
KAFKA_SUMMARY = re.compile(
    r"^kafka-produce: achieved ([\d,.]+) msg/s.*?; ([\d,]+) ok, ([\d,]+) errors", re.M
)


@pytest.fixture(scope="module")
def kafka_api(sim_lab: Path) -> Iterator[Api]:
    view = Api(sim_lab, KAFKA_NAME)
    yield view
    run_playbook("experiment.yml", "-e", f"name={KAFKA_NAME}", "-e", "state=absent")


def test_the_kafka_load_generator_on_the_real_client_produces_to_the_labs_broker(
    kafka_api: Api, tmp_path: Path
) -> None:
    api = kafka_api
    topic = f"frames-{time.time_ns()}"  # the broker keeps earlier runs' topics
    spec = yaml.safe_load(SPEC_FILE.read_text())
    experiment = spec["experiment"]
    experiment.update(name=KAFKA_NAME, peers=1, node_labels={"node-kind": "real"})
    experiment["loadgen"] = {
        "enabled": True,
        "mode": "kafka",  # the bootstrap is the chart's default: the lab's Kafka
        "topic": topic,
        "rate": KAFKA_RATE,
        "duration": KAFKA_SECONDS,
        "size": KAFKA_SIZE,
    }
    path = tmp_path / "purple-kafka.yml"
    path.write_text(yaml.safe_dump(spec))
    run_playbook("experiment.yml", "-e", f"@{path}", "-e", "experiment_wait_timeout=180")

    (job,) = api.jobs()
    (pod,) = eventually(lambda: api.pods("loadgen"), "no load generator pod")
    assert pod.spec.node_name == REAL_CLIENT
    (container,) = pod.spec.containers
    assert container.args[:5] == [
        "produce", "--bootstrap", "lab-kafka-bootstrap.kafka.svc:9092", "--topic", topic
    ]  # fmt: skip

    log = api.finished(job, pod, timeout=KAFKA_SECONDS + 120)
    achieved, ok, errors = summary(KAFKA_SUMMARY, log)
    assert errors == 0 and ok == KAFKA_RATE * KAFKA_SECONDS, log
    assert abs(achieved - KAFKA_RATE) <= 0.02 * KAFKA_RATE, log
    # every message the broker acknowledged is on the topic, at the spec's size
    messages = on_topic(topic)
    assert len(messages) == ok, f"{len(messages)} messages on {topic}, {ok:.0f} acknowledged"
    assert {len(m) for m in messages} == {KAFKA_SIZE}
    # ... and the Job's results reached the lab's Pushgateway
    results = pushed(pod.metadata.name, KAFKA_NAME, "kafka-produce")
    assert results.get("nuclab_loadgen_completed_total") == ok, (results, log)
    assert results.get("nuclab_loadgen_result_target_held") == 1, results
