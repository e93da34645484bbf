"""What the Kafka producer and consumer share: a quiet client logger and the preflight checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from nuclab.errors import NuclabError, ValidationError

# Record-batch header (61 B) + one record's framing (at most 21 B) + our 24-byte timing key.
RECORD_OVERHEAD = 106


def quiet_logger() -> logging.Logger:
    """librdkafka logs every failed connection attempt; our errors say it once, clearly."""
    logger = logging.getLogger("nuclab.loadgen.librdkafka")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger


# What the lab's Kafka asks of clients: its listener authenticates with SCRAM-SHA-512 over
# SASL (Strimzi's `scram-sha-512` authentication), without TLS inside the cluster.
SCRAM_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class KafkaLogin:
    """A Kafka user's SCRAM credentials (the password never on a command line)."""

    username: str
    password: str = field(repr=False)


def client_config(
    bootstrap: str, timeout: float, login: KafkaLogin | None = None
) -> dict[str, object]:
    conf: dict[str, object] = {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(int(timeout * 1000), 1000),
        "logger": quiet_logger(),
    }
    if login is not None:
        conf.update(
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM_MECHANISM,
                "sasl.username": login.username,
                "sasl.password": login.password,
            }
        )
    return conf


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    max_message_bytes: int
    created: bool


def check_broker(bootstrap: str, timeout: float, login: KafkaLogin | None = None) -> AdminClient:
    """An admin client on a broker that answered within ``timeout`` (and accepted ``login``);
    NuclabError otherwise."""
    if not bootstrap or not bootstrap.strip():
        raise ValidationError(
            "--bootstrap", bootstrap, "host:port[,host:port...] of a Kafka broker"
        )
    seen: list[KafkaError] = []  # librdkafka reports a refused login here, not in the call
    admin = AdminClient({**client_config(bootstrap, timeout, login), "error_cb": seen.append})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        admin.poll(0)  # delivers the errors librdkafka noted meanwhile to error_cb
        if login is not None and any(e.code() == KafkaError._AUTHENTICATION for e in seen):
            raise NuclabError(
                f"--kafka-user: the broker at {bootstrap} refused user {login.username!r} "
                f"(a wrong user name or password for {SCRAM_MECHANISM})"
            ) from None
        raise NuclabError(
            f"--bootstrap: no Kafka broker answered at {bootstrap} within {timeout:g}s "
            f"({_reason(exc)})"
        ) from None
    return admin


def ensure_topic(
    admin: AdminClient, topic: str, timeout: float, partitions: int | None, create: bool
) -> TopicInfo:
    """The topic's partitions and message size limit, creating it first when allowed."""
    if not topic or not topic.strip():
        raise ValidationError("--topic", topic, "a Kafka topic name")
    md = admin.list_topics(topic=topic, timeout=timeout)
    meta = md.topics.get(topic)
    created = False
    if meta is not None and meta.error is not None and _denied(meta.error.code()):
        raise _refused(topic)
    if meta is None or meta.error is not None:
        if not create:
            raise NuclabError(f"--topic: topic {topic!r} does not exist on the broker")
        futures = admin.create_topics([NewTopic(topic, partitions or 1)], operation_timeout=timeout)
        try:
            futures[topic].result(timeout=timeout)
        except KafkaException as exc:
            if _denied(_code(exc)):
                raise _refused(topic) from None
            if _code(exc) != KafkaError.TOPIC_ALREADY_EXISTS:
                raise NuclabError(f"--topic: cannot create {topic!r}: {_reason(exc)}") from None
        created = True
        meta = admin.list_topics(topic=topic, timeout=timeout).topics[topic]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result(
            timeout=timeout
        )
        limit = int(configs["max.message.bytes"].value)
    except (KafkaException, KeyError, ValueError) as exc:
        raise NuclabError(f"--topic: cannot read {topic!r}'s max.message.bytes: {exc}") from None
    return TopicInfo(topic, len(meta.partitions), limit, created)


def check_size(field: str, size: int, info: TopicInfo) -> None:
    """Reject a payload the broker would refuse, before anything is sent."""
    allowed = info.max_message_bytes - RECORD_OVERHEAD
    if size > allowed:
        raise ValidationError(
            field,
            size,
            f"at most {allowed} bytes: topic {info.name!r} has max.message.bytes="
            f"{info.max_message_bytes}, less {RECORD_OVERHEAD} bytes of record framing and key",
        )


def _denied(code: int | None) -> bool:
    return code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


def _refused(topic: str) -> NuclabError:
    return NuclabError(
        f"--topic: the broker does not let this Kafka user use topic {topic!r} "
        "(its ACLs allow only the topics of its own group: see docs/tenancy.md)"
    )


def _code(exc: KafkaException) -> int | None:
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if isinstance(err, KafkaError) else str(err)
