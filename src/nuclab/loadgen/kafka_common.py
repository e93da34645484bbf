"""What the Kafka producer and consumer share: a quiet client logger and the preflight checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

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


def client_config(bootstrap: str, timeout: float) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "socket.connection.setup.timeout.ms": max(int(timeout * 1000), 1000),
        "logger": quiet_logger(),
    }


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    max_message_bytes: int
    created: bool


def check_broker(bootstrap: str, timeout: float) -> AdminClient:
    """An admin client on a broker that answered within ``timeout``; NuclabError otherwise."""
    if not bootstrap or not bootstrap.strip():
        raise ValidationError(
            "--bootstrap", bootstrap, "host:port[,host:port...] of a Kafka broker"
        )
    admin = AdminClient(client_config(bootstrap, timeout))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
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
    if meta is None or meta.error is not None:
        if not create:
            raise NuclabError(f"--topic: topic {topic!r} does not exist on the broker")
        futures = admin.create_topics([NewTopic(topic, partitions or 1)], operation_timeout=timeout)
        try:
            futures[topic].result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
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


def _reason(exc: KafkaException) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if isinstance(err, KafkaError) else str(err)
