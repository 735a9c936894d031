"""Apache Kafka bus (kafka-python): the distributed mode.

Producer: acks=all, idempotent, retries with backoff; key = city id, so a city's events
land on one partition and keep their order. Consumer: a member of a consumer group with
auto-commit off; the pipeline commits an offset only after the record is fully processed
(at-least-once delivery, made exactly-once in effect by deterministic ids downstream).
Every kafka-python error is turned into :class:`BusError` with what to do, except a record
larger than the bus takes (:class:`EventTooLargeError`: retrying cannot help).

Every record uses the CloudEvents Kafka protocol binding in structured content mode: the
value is the whole event (CloudEvents JSON) and the ``content-type`` header says
``application/cloudevents+json``, so CloudEvents SDKs (``cloudevents.core.bindings.kafka
.from_kafka``), Kafka Connect and stream processors recognise the events without knowing
our topics. The record key is the city id (the SDK reads it as ``partitionkey``).

Records are gzip-compressed and may be up to ``MAX_MESSAGE_BYTES`` (16 MiB) before
compression: ChangeEvents carry every region of a city, a few MB for a city with years of
retracted speckle. Topics are created with ``max.message.bytes`` to match, and
``docker/kafka.sh`` / ``docker/compose.yaml`` raise the broker's ``message.max.bytes``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from monitor.errors import BusError, EventTooLargeError
from monitor.ports import Message

log = logging.getLogger(__name__)


class _ClosedTransportRace(logging.Filter):
    """kafka-python logs an ERROR with a traceback when a socket it has just closed (at
    consumer close, i.e. at every graceful stop) is read once more by its IO loop
    (``AttributeError: 'NoneType' object has no attribute 'recv'``). Nothing is lost; keep
    it as a one-line warning so that a traceback in a service log always means a real one."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AttributeError | OSError) and "(closed)" in record.getMessage():
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc}; harmless at close)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("kafka.net.transport").addFilter(_ClosedTransportRace())

_HINT = "check that Kafka runs at {servers} (bash docker/kafka.sh status) and the topic exists"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The CloudEvents Kafka binding, structured content mode (every value is a CloudEvent).
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
_HEADERS = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode("ascii"))]
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def _too_large(topic: str, key: str, size: int, exc: Exception) -> EventTooLargeError:
    return EventTooLargeError(
        f"the record for key {key} on {topic} is {size / 1e6:.1f} MB, more than Kafka takes "
        f"({exc})",
        f"raise the limits together: MAX_MESSAGE_BYTES in monitor/adapters/bus_kafka.py "
        f"(now {MAX_MESSAGE_BYTES} bytes), the broker's message.max.bytes and the topic's "
        f"max.message.bytes; then re-publish the dead-lettered record",
    )


class KafkaBus:
    def __init__(self, bootstrap_servers: str, *, client_id: str = "urban-monitor",
                 request_timeout_ms: int = 30000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._producer: KafkaProducer | None = None
        self._consumers: list[KafkaConsumerAdapter] = []

    def _hint(self) -> str:
        return _HINT.format(servers=self.bootstrap_servers)

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    retries=10,
                    retry_backoff_ms=200,
                    linger_ms=5,
                    request_timeout_ms=self._request_timeout_ms,
                    compression_type="gzip",
                    max_request_size=MAX_MESSAGE_BYTES,
                )
            except KafkaError as exc:
                raise BusError(f"no Kafka broker answers at {self.bootstrap_servers}",
                               self._hint()) from exc
        return self._producer

    def publish(self, topic: str, key: str, value: bytes) -> None:
        try:
            self.producer.send(topic, key=key.encode("utf-8"), value=value,
                               headers=_HEADERS).get(
                timeout=self._request_timeout_ms / 1000)
        except _TOO_LARGE as exc:
            raise _too_large(topic, key, len(value), exc) from exc
        except KafkaError as exc:
            raise BusError(f"Kafka did not acknowledge a record for key {key} on {topic}: {exc}",
                           self._hint()) from exc

    def publish_many(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        """Send a batch and wait for all acknowledgements (faster than one by one)."""
        records = list(records)
        try:
            futures = [self.producer.send(topic, key=k.encode("utf-8"), value=v,
                                          headers=_HEADERS)
                       for k, v in records]
            for future in futures:
                future.get(timeout=self._request_timeout_ms / 1000)
        except _TOO_LARGE as exc:
            key, value = max(records, key=lambda r: len(r[1]))
            raise _too_large(topic, key, len(value), exc) from exc
        except KafkaError as exc:
            raise BusError(f"Kafka did not acknowledge a batch on {topic}: {exc}",
                           self._hint()) from exc
        return len(futures)

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._producer is not None:
            try:
                self._producer.flush(timeout=timeout_s)
            except KafkaError as exc:
                raise BusError(f"Kafka flush failed: {exc}", self._hint()) from exc

    def ensure_topics(self, topics: Iterable[str], partitions: int) -> None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                     client_id=f"{self.client_id}-admin")
        except KafkaError as exc:
            raise BusError(f"cannot reach Kafka at {self.bootstrap_servers}", self._hint()) from exc
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, num_partitions=partitions, replication_factor=1,
                            topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)})
                   for t in topics if t not in existing]
            if new:
                # created concurrently by another process: fine
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new)
            self._wait_for_topics(admin, [t for t in topics])
        finally:
            admin.close()

    def _wait_for_topics(self, admin: KafkaAdminClient, topics: list[str], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                described = {d.get("name", d.get("topic")): d for d in admin.describe_topics(topics)}
            except KafkaError:
                described = {}  # not in the metadata yet
            if all(described.get(t, {}).get("error_code", 1) == 0
                   and all(p.get("leader_id", p.get("leader", -1)) >= 0
                           for p in described[t].get("partitions", [{"leader_id": -1}]))
                   for t in topics):
                return
            if time.monotonic() > deadline:
                raise BusError(f"topics {topics} did not become available in {timeout_s} s",
                               self._hint())
            time.sleep(0.2)

    def consumer(self, topics: Sequence[str], group_id: str, *,
                 client_id: str | None = None, **config: Any) -> KafkaConsumerAdapter:
        adapter = KafkaConsumerAdapter(self.bootstrap_servers, topics, group_id,
                                       client_id or self.client_id, **config)
        self._consumers.append(adapter)
        return adapter

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()
        if self._producer is not None:
            self._producer.close(timeout=10)
            self._producer = None


class KafkaConsumerAdapter:
    def __init__(self, bootstrap_servers: str, topics: Sequence[str], group_id: str,
                 client_id: str, **config: Any) -> None:
        self.group_id = group_id
        self._servers = bootstrap_servers
        settings: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "group_id": group_id,
            "client_id": client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": 100,
            "session_timeout_ms": 10000,
            "heartbeat_interval_ms": 2000,
            "max_poll_interval_ms": 300000,
            "max_partition_fetch_bytes": MAX_MESSAGE_BYTES,
        }
        settings.update(config)
        try:
            self._consumer = KafkaConsumer(*topics, **settings)
        except KafkaError as exc:
            raise BusError(f"consumer of group {group_id} cannot reach Kafka at {bootstrap_servers}",
                           _HINT.format(servers=bootstrap_servers)) from exc
        self._closed = False
        self._await_metadata(topics)

    def _await_metadata(self, topics: Sequence[str], timeout_s: float = 10.0) -> None:
        """Have the topics' partitions in the client's metadata before the group is joined:
        a group leader that joins without them assigns nothing ("No partition metadata for
        topic") and, seen in a test run, the members then sat idle for minutes."""
        deadline = time.monotonic() + timeout_s
        for topic in topics:
            try:
                while (not self._consumer.partitions_for_topic(topic)
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
            except KafkaError as exc:  # the first poll will report a real outage
                log.debug("metadata of %s not fetched yet: %s", topic, exc)
                return

    def poll(self, timeout_s: float = 1.0, max_records: int = 100) -> list[Message]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"poll failed for group {self.group_id}: {exc}",
                           _HINT.format(servers=self._servers)) from exc
        out: list[Message] = []
        for tp in sorted(batches, key=lambda t: (t.topic, t.partition)):
            for record in batches[tp]:
                key = record.key.decode("utf-8", "replace") if record.key is not None else None
                out.append(Message(tp.topic, tp.partition, record.offset, key, record.value))
        return out

    def commit(self, message: Message) -> None:
        tp = TopicPartition(message.topic, message.partition)
        try:
            self._consumer.commit({tp: OffsetAndMetadata(message.offset + 1, "", -1)})
        except KafkaError as exc:
            # A rebalance took the partition away: the new owner redoes the record, and our
            # deterministic ids make that harmless. Log, do not crash.
            log.warning("commit of %s[%d]@%d failed (%s); it will be redelivered",
                        message.topic, message.partition, message.offset, exc)

    def rewind(self, message: Message) -> None:
        tp = TopicPartition(message.topic, message.partition)
        if tp in self._consumer.assignment():
            self._consumer.seek(tp, message.offset)

    def assignment(self) -> set[tuple[str, int]]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._consumer.close(autocommit=False)
            except (KafkaError, OSError) as exc:
                # Leaving the group while the broker or a rebalance is away: the session
                # times out instead; nothing uncommitted is lost (it is redelivered).
                log.warning("closing the consumer of group %s: %s", self.group_id, exc)
