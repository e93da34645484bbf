"""Kafka users and their ACLs on a real broker configured as the lab's Kafka is (issue 14).

A real Apache Kafka broker (KRaft, Maven Central's jars) listens with SCRAM-SHA-512 and the
standard authorizer, refusing whatever no ACL allows. Two groups' users get exactly the ACLs
`nuclab.groups.kafka_acls` gives their namespaces (the ones a Strimzi KafkaUser carries), and
`nuclab loadgen` runs as each, with its password in the environment as a pod gets it from a
Secret. Group a's user works in its own topics and is refused, with one line and exit 2, on
group b's: writing, reading, joining its consumer groups; nothing of b's changes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from nuclab.groups import kafka_acls, kafka_prefix
from nuclab.loadgen.kafka_common import KafkaLogin
from tests.harness.kafka import LocalBroker

NUCLAB = [sys.executable, "-m", "nuclab.cli", "loadgen"]
A, B = "nuclab-a", "nuclab-b"  # the namespaces of two groups
TOPIC_A = f"{kafka_prefix(A)}purple.frames"
TOPIC_B = f"{kafka_prefix(B)}purple.frames"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    admin = KafkaLogin("admin", secrets.token_urlsafe(24))
    with LocalBroker(tmp_path_factory.mktemp("kafka-acl"), admin=admin) as b:
        for namespace in (A, B):
            b.add_user(LOGINS[namespace])
            b.allow(LOGINS[namespace].username, kafka_acls(namespace))
        yield b


LOGINS = {ns: KafkaLogin(ns, secrets.token_urlsafe(24)) for ns in (A, B)}


def loadgen(
    b: LocalBroker, namespace: str | None, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    if namespace is not None:
        env["KAFKA_USERNAME"] = LOGINS[namespace].username
        env["KAFKA_PASSWORD"] = password or LOGINS[namespace].password
    return subprocess.run(
        [*NUCLAB, args[0], "--bootstrap", b.bootstrap, "--timeout", "10s", *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def produce(
    b: LocalBroker, namespace: str, topic: str, count: int = 200
) -> subprocess.CompletedProcess[str]:
    """``count`` messages in a second; the rate is not what is tested here (--tolerance 99)."""
    args = ("--topic", topic, "--rate", str(count), "--duration", "1s", "--tolerance", "99")
    return loadgen(b, namespace, "produce", *args)


def end_offset(b: LocalBroker, topic: str) -> int:
    from confluent_kafka import Consumer

    from nuclab.loadgen.kafka_common import client_config

    consumer = Consumer({**client_config(b.bootstrap, 10, b.admin), "group.id": "offsets"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        consumer.close()


def refused(run: subprocess.CompletedProcess[str], field: str) -> None:
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith(f"nuclab: error: {field}: "), run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr


def test_a_group_produces_and_consumes_its_own_topics(broker: LocalBroker) -> None:
    sent = produce(broker, A, TOPIC_A)
    assert sent.returncode == 0, sent.stderr
    got = loadgen(
        broker, A, "consume", "--topic", TOPIC_A, "--expect", "200", "--idle-timeout", "15s"
    )
    assert got.returncode == 0, got.stderr
    assert end_offset(broker, TOPIC_A) == 200


def test_a_group_cannot_write_or_read_another_groups_topic(broker: LocalBroker) -> None:
    assert produce(broker, B, TOPIC_B).returncode == 0
    before = end_offset(broker, TOPIC_B)

    refused(produce(broker, A, TOPIC_B), "--topic")
    refused(loadgen(broker, A, "consume", "--topic", TOPIC_B, "--expect", "1"), "--topic")
    # Nor can it make a topic outside its prefix (which b's user then could not use either).
    refused(produce(broker, A, "frames"), "--topic")
    assert end_offset(broker, TOPIC_B) == before
    topics = broker.admin_client().list_topics(timeout=10).topics
    assert "frames" not in topics


def test_a_group_cannot_join_another_groups_consumer_group(broker: LocalBroker) -> None:
    assert produce(broker, A, TOPIC_A, 10).returncode == 0
    run = loadgen(
        broker, A, "consume", "--topic", TOPIC_A, "--group", f"{kafka_prefix(B)}purple.readers",
        "--expect", "1",
    )  # fmt: skip
    refused(run, "--group")


def test_a_wrong_password_or_no_user_is_refused_before_any_load(broker: LocalBroker) -> None:
    before = end_offset(broker, TOPIC_A)
    load = ("produce", "--topic", TOPIC_A, "--rate", "10", "--duration", "1s")
    refused(loadgen(broker, A, *load, password="not-the-password"), "--kafka-user")
    refused(loadgen(broker, None, *load), "--bootstrap")
    assert end_offset(broker, TOPIC_A) == before


def test_a_user_without_a_password_is_bad_input(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    run = subprocess.run(
        [*NUCLAB, "produce", "--kafka-user", "a", "--rate", "1", "--duration", "1s"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    refused(run, "--kafka-user")
    assert "KAFKA_PASSWORD" in run.stderr
    missing = tmp_path / "missing"
    run = subprocess.run(
        [*NUCLAB, "produce", "--kafka-user", "a", "--kafka-password-file", str(missing),
         "--rate", "1", "--duration", "1s"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    refused(run, "--kafka-password-file")
