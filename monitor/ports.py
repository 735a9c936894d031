"""Ports: the small interfaces that the pipeline steps depend on.

Adapters in ``monitor.adapters`` implement them for one technology each; tests run the same
contract suites against every adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Message:
    """One record read from the bus."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes


@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group. Offsets are committed only after processing."""

    def poll(self, timeout_s: float = 1.0, max_records: int = 100) -> list[Message]:
        """Records from the assigned partitions, in partition order; [] on timeout."""
        ...

    def commit(self, message: Message) -> None:
        """Mark ``message`` (and everything before it on its partition) as processed."""
        ...

    def rewind(self, message: Message) -> None:
        """Deliver ``message`` again on the next poll (processing failed, will retry)."""
        ...

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member owns now."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Bus(Protocol):
    """Publish events keyed by city id (one city -> one partition -> ordered) and consume."""

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Durably hand over a record (raises BusError if it could not be acknowledged)."""
        ...

    def flush(self, timeout_s: float = 30.0) -> None: ...

    def ensure_topics(self, topics: Iterable[str], partitions: int) -> None: ...

    def consumer(self, topics: Sequence[str], group_id: str, *,
                 client_id: str | None = None) -> Consumer: ...

    def close(self) -> None: ...
