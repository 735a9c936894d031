"""In-process event bus for the embedded (one machine, one process) mode.

It behaves like a small Kafka: topics have partitions, the key picks the partition (so a
city's events stay in order), consumer groups share partitions among their members and
keep committed offsets, and a member that closes hands its partitions to the others.
It is not durable on its own: in embedded mode the database's scene registry is the
durable record and unprocessed scenes are re-published on start.
"""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from monitor.errors import BusError
from monitor.ports import Message


def partition_for(key: str, partitions: int) -> int:
    """Stable key -> partition (crc32; the same on every run and machine)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


@dataclass
class _Group:
    members: list[EmbeddedConsumer] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)  # next offset to read


class EmbeddedBus:
    def __init__(self, default_partitions: int = 6) -> None:
        self._default_partitions = default_partitions
        self._logs: dict[str, list[list[tuple[str | None, bytes]]]] = {}
        self._groups: dict[str, _Group] = defaultdict(_Group)
        self._cond = threading.Condition()
        self._closed = False

    # -- producer side -------------------------------------------------------------------
    def ensure_topics(self, topics: Iterable[str], partitions: int | None = None) -> None:
        with self._cond:
            for topic in topics:
                if topic not in self._logs:
                    self._logs[topic] = [[] for _ in range(partitions or self._default_partitions)]
                    self._rebalance_all()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        if self._closed:
            raise BusError(f"cannot publish to {topic}: the embedded bus is closed",
                           "publish before shutting the process down")
        if not isinstance(value, bytes | bytearray):
            raise BusError(f"value for {topic} must be bytes, got {type(value).__name__}",
                           "serialise the event with CloudEvent.to_json()")
        self.ensure_topics([topic])
        with self._cond:
            parts = self._logs[topic]
            parts[partition_for(key, len(parts))].append((key, bytes(value)))
            self._cond.notify_all()

    def publish_many(self, topic: str, records: Iterable[tuple[str, bytes]]) -> int:
        """Publish (key, value) records in order; returns how many."""
        count = 0
        for key, value in records:
            self.publish(topic, key, value)
            count += 1
        return count

    def flush(self, timeout_s: float = 30.0) -> None:
        return None  # publish is synchronous

    def end_offsets(self, topic: str) -> dict[int, int]:
        with self._cond:
            return {p: len(log) for p, log in enumerate(self._logs.get(topic, []))}

    def records(self, topic: str) -> list[Message]:
        """Everything ever published to ``topic`` (for tests and the demo's report)."""
        with self._cond:
            return [Message(topic, p, o, k, v)
                    for p, log in enumerate(self._logs.get(topic, []))
                    for o, (k, v) in enumerate(log)]

    def lag(self, topic: str, group_id: str) -> int:
        with self._cond:
            group = self._groups[group_id]
            return sum(len(log) - group.committed.get((topic, p), 0)
                       for p, log in enumerate(self._logs.get(topic, [])))

    # -- consumer side -------------------------------------------------------------------
    def consumer(self, topics: Sequence[str], group_id: str, *,
                 client_id: str | None = None) -> EmbeddedConsumer:
        self.ensure_topics(topics)
        with self._cond:
            member = EmbeddedConsumer(self, list(topics), group_id, client_id or f"member-{id(self)}")
            self._groups[group_id].members.append(member)
            self._rebalance(group_id)
            return member

    def _rebalance_all(self) -> None:
        for group_id in list(self._groups):
            self._rebalance(group_id)

    def _rebalance(self, group_id: str) -> None:
        """Range-style assignment: partitions of each topic split among live members."""
        group = self._groups[group_id]
        members = [m for m in group.members if not m.closed]
        for m in members:
            m._assigned = set()
            m._positions = {}
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        for topic in topics:
            subscribers = [m for m in members if topic in m.topics]
            for p in range(len(self._logs.get(topic, []))):
                owner = subscribers[p % len(subscribers)]
                owner._assigned.add((topic, p))
        self._cond.notify_all()

    def _leave(self, member: EmbeddedConsumer) -> None:
        with self._cond:
            group = self._groups[member.group_id]
            if member in group.members:
                group.members.remove(member)
            self._rebalance(member.group_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class EmbeddedConsumer:
    def __init__(self, bus: EmbeddedBus, topics: list[str], group_id: str, client_id: str) -> None:
        self._bus = bus
        self.topics = topics
        self.group_id = group_id
        self.client_id = client_id
        self.closed = False
        self._assigned: set[tuple[str, int]] = set()
        # Uncommitted read position per partition; reset to the committed offset on rebalance.
        self._positions: dict[tuple[str, int], int] = {}

    def _position(self, tp: tuple[str, int]) -> int:
        group = self._bus._groups[self.group_id]
        return self._positions.get(tp, group.committed.get(tp, 0))

    def _take(self, max_records: int) -> list[Message]:
        out: list[Message] = []
        for tp in sorted(self._assigned):
            log = self._bus._logs[tp[0]][tp[1]]
            pos = self._position(tp)
            while pos < len(log) and len(out) < max_records:
                key, value = log[pos]
                out.append(Message(tp[0], tp[1], pos, key, value))
                pos += 1
            self._positions[tp] = pos
        return out

    def poll(self, timeout_s: float = 1.0, max_records: int = 100) -> list[Message]:
        if self.closed:
            raise BusError(f"consumer {self.client_id} of group {self.group_id} is closed",
                           "create a new consumer")
        with self._bus._cond:
            records = self._take(max_records)
            if not records and timeout_s > 0 and not self._bus._closed:
                self._bus._cond.wait(timeout_s)
                records = self._take(max_records)
            return records

    def commit(self, message: Message) -> None:
        tp = (message.topic, message.partition)
        with self._bus._cond:
            if tp not in self._assigned:
                return  # partition moved to another member: its work will be redone there
            committed = self._bus._groups[self.group_id].committed
            committed[tp] = max(committed.get(tp, 0), message.offset + 1)

    def rewind(self, message: Message) -> None:
        with self._bus._cond:
            self._positions[(message.topic, message.partition)] = message.offset

    def assignment(self) -> set[tuple[str, int]]:
        with self._bus._cond:
            return set(self._assigned)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._leave(self)
