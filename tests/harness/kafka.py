"""A single-node Apache Kafka broker (KRaft) on loopback, from the jars `make setup` caches.

For tests and benchmarks on one machine: ``tools/setup.d/30-kafka.sh`` puts Kafka's jars in
``$NUCLAB_CACHE/kafka-<lab_kafka_version>/libs``; this formats a storage directory and runs
``kafka.Kafka`` on the machine's Java, on free loopback ports, until ``stop()``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from nuclab.errors import NuclabError
from nuclab.loadgen.kafka_common import SCRAM_MECHANISM, KafkaLogin, client_config
from nuclab.net import free_port
from nuclab.paths import cache_dir

_LOG4J2 = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def pinned_version(key: str, versions: Path | None = None) -> str:
    """A ``lab_*_version`` from versions.yml (the one place versions are pinned)."""
    path = versions or repo_root() / "versions.yml"
    match = re.search(rf'^{key}:\s*"?([^"\s#]+)', path.read_text(), re.MULTILINE)
    if not match:
        raise NuclabError(f"versions.yml has no {key}")
    return match.group(1)


def kafka_libs(version: str | None = None) -> Path:
    version = version or pinned_version("lab_kafka_version")
    libs = cache_dir() / f"kafka-{version}" / "libs"
    if not (libs / f"kafka_2.13-{version}.jar").is_file():
        raise NuclabError(
            f"Kafka {version} jars are not in {libs}: run `make setup` "
            "(tools/setup.d/30-kafka.sh fetches them from Maven Central)"
        )
    return libs


class LocalBroker:
    """``with LocalBroker(workdir) as broker: broker.bootstrap`` -> ``127.0.0.1:<port>``.

    With ``admin`` (a super user's login), the broker is configured as the lab's Kafka is: its
    client listener authenticates with SCRAM-SHA-512 and the standard authorizer refuses
    whatever no ACL allows; ``add_user`` and ``allow`` then give users their rights. The
    controller listener (loopback, a port of its own) stays plaintext: in a combined KRaft
    node the broker registers there as ANONYMOUS, which is therefore a super user too.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        version: str | None = None,
        heap: str = "768m",
        settings: dict[str, str] | None = None,
        admin: KafkaLogin | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.admin = admin
        self.libs = kafka_libs(version)
        self.heap = heap
        self.settings = settings or {}
        self.port = free_port()
        self.controller_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise NuclabError("java is not on PATH (apt-get install openjdk-17-jre-headless)")
        return [
            java,
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def _write_config(self) -> Path:
        data = self.workdir / "data"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            **(self._secured() if self.admin else {}),
            "log.dirs": str(data),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **self.settings,
        }
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.workdir / "log4j2.yaml").write_text(_LOG4J2)
        return path

    def _secured(self) -> dict[str, str]:
        assert self.admin is not None
        listener = f"SASL_PLAINTEXT://127.0.0.1:{self.port}"
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{self.admin.username}" password="{self.admin.password}";'
        )
        return {
            "listeners": f"{listener},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listener,
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SCRAM_MECHANISM,
            f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{self.admin.username};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }

    def admin_client(self) -> AdminClient:
        return AdminClient(client_config(self.bootstrap, 10.0, self.admin))

    def add_user(self, login: KafkaLogin) -> None:
        """A SCRAM-SHA-512 user, as Strimzi's user operator makes one for a KafkaUser."""
        upsert = UserScramCredentialUpsertion(
            login.username,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
            login.password.encode(),
        )
        admin = self.admin_client()  # kept until the futures are done: it is their handle
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)

    def allow(self, username: str, acls: list[dict[str, Any]]) -> None:
        """ACLs in the shape of a Strimzi KafkaUser's ``spec.authorization.acls``."""
        kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
        patterns = {"prefix": ResourcePatternType.PREFIXED, "literal": ResourcePatternType.LITERAL}
        bindings = [
            AclBinding(
                kinds[acl["resource"]["type"]],
                acl["resource"]["name"],
                patterns[acl["resource"].get("patternType", "literal")],
                f"User:{username}",
                acl.get("host", "*"),
                getattr(AclOperation, _snake(operation).upper()),
                AclPermissionType.ALLOW,
            )
            for acl in acls
            for operation in acl["operations"]
        ]
        admin = self.admin_client()
        for future in admin.create_acls(bindings).values():
            future.result(timeout=30)

    def format_storage(self, config: Path, cluster_id: str) -> None:
        """``kafka-storage format``; ``--cluster-id=`` so no ID can pass for an option; with
        ``admin``, its SCRAM credential is written into the new cluster's metadata."""
        scram = []
        if self.admin is not None:
            scram = [
                "--add-scram",
                f"{SCRAM_MECHANISM}=[name={self.admin.username},password={self.admin.password}]",
            ]
        fmt = subprocess.run(
            self.java(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                *scram,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if fmt.returncode != 0:
            raise NuclabError(f"kafka storage format failed: {fmt.stderr.strip()[-500:]}")

    def start(self, timeout: float = 60.0) -> LocalBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self.format_storage(config, _cluster_id())
        env = {**os.environ, "KAFKA_HEAP_OPTS": f"-Xmx{self.heap}"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.java("kafka.Kafka", str(config), heap=self.heap),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        admin = self.admin_client()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NuclabError(f"Kafka broker exited: {self.log.read_text()[-1000:]}")
            try:
                md = admin.list_topics(timeout=1.0)
                if md.brokers:
                    return
            except KafkaException:  # not up yet; retried until the deadline
                time.sleep(0.2)
        self.stop()
        raise NuclabError(f"Kafka broker not ready within {timeout:g}s; log: {self.log}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _snake(name: str) -> str:
    """Strimzi's ``DescribeConfigs`` -> confluent-kafka's ``describe_configs``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _cluster_id() -> str:
    """A random KRaft cluster ID, as Kafka's ``Uuid.randomUuid()`` makes one.

    Like Kafka, never one that starts with ``-``: kafka-storage would read it
    as an option ("argument --cluster-id/-t: expected one argument").
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
