"""The real services the fault suite runs against, and small tools to inspect them.

The suite restarts its Kafka broker and stops its PostgreSQL server on purpose, so it runs
its own instances (other ports, other folders under ``var/reliability/services``) with the
same scripts as the tests (``docker/kafka.sh``, ``docker/postgres.sh``): the shared ones
that other test sessions use are never touched.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.errors import ServiceError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"


def _port(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    if value is None:
        return default
    if not value.isdigit():
        raise ServiceError(f"{variable}={value!r} is not a port number",
                           f"set it to a free TCP port or unset it (default {default})")
    return int(value)


@dataclass(frozen=True)
class ServicePorts:
    """The suite's own ports (defaults 29092, 29093, 55433). Two checkouts running the suite
    at once on one machine set ``URBAN_MONITOR_FAULTS_KAFKA_PORT``,
    ``URBAN_MONITOR_FAULTS_KAFKA_CONTROLLER_PORT`` and ``URBAN_MONITOR_FAULTS_PG_PORT``."""

    kafka: int = 29092
    kafka_controller: int = 29093
    postgres: int = 55433

    @classmethod
    def from_env(cls) -> ServicePorts:
        return cls(kafka=_port("URBAN_MONITOR_FAULTS_KAFKA_PORT", cls.kafka),
                   kafka_controller=_port("URBAN_MONITOR_FAULTS_KAFKA_CONTROLLER_PORT",
                                          cls.kafka_controller),
                   postgres=_port("URBAN_MONITOR_FAULTS_PG_PORT", cls.postgres))


class DedicatedServices:
    """Start, stop and restart the suite's own Kafka broker and PostgreSQL server."""

    def __init__(self, root: Path, ports: ServicePorts | None = None) -> None:
        self.root = root
        self.ports = ports or ServicePorts.from_env()
        self.bootstrap: str | None = None
        self.admin_url: str | None = None

    def _env(self, script: str) -> dict[str, str]:
        env = dict(os.environ)
        if script == "kafka.sh":
            env.update(URBAN_MONITOR_KAFKA_VAR_DIR=str(self.root / "kafka"),
                       URBAN_MONITOR_KAFKA_PORT=str(self.ports.kafka),
                       URBAN_MONITOR_KAFKA_CONTROLLER_PORT=str(self.ports.kafka_controller))
        else:
            env.update(URBAN_MONITOR_PG_VAR_DIR=str(self.root / "postgres"),
                       URBAN_MONITOR_PG_PORT=str(self.ports.postgres))
        return env

    def script(self, script: str, action: str, timeout_s: float = 300) -> str:
        """Run ``docker/<script> <action>``; returns the last line it printed."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["bash", str(DOCKER_DIR / script), action], cwd=REPO_ROOT,
                                  env=self._env(script), capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"`docker/{script} {action}` ran longer than {timeout_s:.0f} s",
                               f"run it by hand to see why (folder {self.root})") from exc
        if done.returncode != 0 and action != "status":
            tail = "\n".join(done.stderr.strip().splitlines()[-15:])
            raise ServiceError(f"`docker/{script} {action}` failed ({done.returncode}):\n{tail}",
                               "see the script's log under " + str(self.root))
        lines = done.stdout.strip().splitlines()
        return lines[-1].strip() if lines else ""

    def start(self) -> None:
        self.bootstrap = self.script("kafka.sh", "start")
        self.admin_url = self.script("postgres.sh", "start")
        log.info("fault suite services: Kafka %s, PostgreSQL %s", self.bootstrap, self.admin_url)

    def stop(self) -> None:
        self.script("kafka.sh", "stop")
        self.script("postgres.sh", "stop")

    def stop_kafka(self) -> None:
        self.script("kafka.sh", "stop")

    def start_kafka(self) -> None:
        self.bootstrap = self.script("kafka.sh", "start")

    def stop_postgres(self) -> None:
        self.script("postgres.sh", "stop")

    def start_postgres(self) -> None:
        self.admin_url = self.script("postgres.sh", "start")


def fresh_database(admin_url: str, prefix: str = "rel") -> str:
    """Create an empty database next to ``admin_url``'s and return its URL."""
    import psycopg

    name = re.sub(r"[^a-z0-9_]", "_", f"{prefix}_{uuid.uuid4().hex[:10]}".lower())
    base, _, _ = admin_url.rpartition("/")
    with psycopg.connect(admin_url.replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[-1]
    try:
        with psycopg.connect(admin_url.replace("postgresql+psycopg", "postgresql"),
                             autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg.Error as exc:  # a leftover test database harms nothing
        log.warning("could not drop database %s: %s", name, exc)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` from the beginning, without joining a consumer group:
    ``[{"partition", "offset", "key", "value"}]`` in partition, offset order."""
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, client_id="reliability-reader")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise ServiceError(f"reading topic {topic} did not reach its end in "
                                   f"{timeout_s:.0f} s", "check the broker")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for r in records:
                    out.append({"partition": tp.partition, "offset": r.offset,
                                "key": r.key.decode() if r.key else None, "value": r.value})
        return sorted(out, key=lambda r: (r["partition"], r["offset"]))
    finally:
        consumer.close()


def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """End offsets minus the group's committed offsets, summed; None if not readable."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="reliability-lag",
                                 request_timeout_ms=5000)
        try:
            committed = admin.list_group_offsets({group: None}).get(group, {})
        finally:
            admin.close()
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="reliability-lag",
                                 group_id=None)
        try:
            tps = [TopicPartition(topic, p)
                   for p in sorted(consumer.partitions_for_topic(topic) or set())]
            end = consumer.end_offsets(tps)
        finally:
            consumer.close()
    except KafkaError:
        return None
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag += max(0, end[tp] - done)
    return lag
