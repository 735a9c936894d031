"""The consume loop shared by every service: parse, handle, commit; dead-letter what can't be.

Rules (the same on the embedded bus and on Kafka):
- a malformed event (not JSON, wrong type, fails its schema) goes to the dead-letter topic
  with the reason, its offset is committed, and the loop goes on;
- a handler failure that retrying cannot fix (bad scene, bad item: ``PERMANENT_ERRORS``)
  is dead-lettered the same way;
- an infrastructure failure (database, state store, bus) is retried with backoff and the
  offset is not committed, so nothing is lost while a dependency is down;
- any other exception is retried ``max_attempts`` times, then dead-lettered, so one poison
  record cannot stall a partition forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.domain.events import (
    CloudEvent,
    DeadLetterData,
    dead_letter_event,
    parse_event,
    utc_now,
)
from monitor.errors import (
    BusError,
    DatabaseError,
    EventError,
    EventTooLargeError,
    ItemError,
    ObservationError,
    SceneReadError,
    StateError,
    UrbanMonitorError,
)
from monitor.ports import Bus, Consumer, Message

log = logging.getLogger(__name__)

PERMANENT_ERRORS: tuple[type[Exception], ...] = (EventError, SceneReadError, ItemError,
                                                  ObservationError, EventTooLargeError)
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (DatabaseError, StateError, BusError)

Handler = Callable[[CloudEvent, Message], None]


@dataclass
class ConsumeStats:
    processed: int = 0
    dead_lettered: int = 0
    retried: int = 0
    reasons: list[str] = field(default_factory=list)


def send_to_dead_letter(bus: Bus, topic: str, message: Message, error: BaseException,
                        group: str | None) -> None:
    event_id = getattr(error, "event_id", None)
    data = DeadLetterData(
        reason=str(error),
        error_type=type(error).__name__,
        original_topic=message.topic,
        original_key=message.key,
        original_value=message.value.decode("utf-8", "replace"),
        original_event_id=event_id,
        consumer_group=group,
        failed_at=utc_now(),
    )
    bus.publish(topic, message.key or "unknown", dead_letter_event(data, message.key).to_json())


class EventLoop:
    """Runs ``handler`` for every event of ``expected_type`` that ``consumer`` delivers."""

    def __init__(self, bus: Bus, consumer: Consumer, handler: Handler, *, expected_type: str,
                 dead_letter_topic: str, group: str, max_attempts: int = 3,
                 backoff_s: float = 0.5, max_backoff_s: float = 10.0,
                 on_dead_letter: Callable[[CloudEvent | None, BaseException], None] | None = None,
                 ) -> None:
        self.bus = bus
        self.consumer = consumer
        self.handler = handler
        self.expected_type = expected_type
        self.dead_letter_topic = dead_letter_topic
        self.group = group
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.on_dead_letter = on_dead_letter
        self.stats = ConsumeStats()
        self._attempts: dict[tuple[str, int, int], int] = {}

    def _dead_letter(self, message: Message, error: BaseException,
                     event: CloudEvent | None = None) -> None:
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(event, error)  # e.g. record the reason in the registry
            except INFRASTRUCTURE_ERRORS:
                log.warning("could not record the dead-lettering of %s", message.offset)
        log.warning("dead-lettering %s[%d]@%d: %s", message.topic, message.partition,
                    message.offset, error)
        send_to_dead_letter(self.bus, self.dead_letter_topic, message, error, self.group)
        self.stats.dead_lettered += 1
        self.stats.reasons.append(str(error))
        self.consumer.commit(message)

    def process(self, message: Message) -> bool:
        """Handle one message. True when done (committed), False when it must be retried."""
        try:
            event = parse_event(message.value, self.expected_type)
        except EventError as exc:
            self._dead_letter(message, exc)
            return True
        key = (message.topic, message.partition, message.offset)
        try:
            self.handler(event, message)
        except PERMANENT_ERRORS as exc:
            self._dead_letter(message, exc, event)
            return True
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("event %s: %s; will retry", event.id, exc)
            self.stats.retried += 1
            return False
        except Exception as exc:  # a bug or an unforeseen input: retry a little, then park it
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            log.exception("event %s failed (attempt %d of %d)", event.id, attempts, self.max_attempts)
            if attempts >= self.max_attempts:
                self._attempts.pop(key, None)
                wrapped = UrbanMonitorError(
                    f"event {event.id} failed {attempts} times: {type(exc).__name__}: {exc}",
                    "inspect the dead-letter record, fix the cause, and re-publish it")
                self._dead_letter(message, wrapped, event)
                return True
            self.stats.retried += 1
            return False
        self._attempts.pop(key, None)
        self.consumer.commit(message)
        self.stats.processed += 1
        return True

    def run_once(self, timeout_s: float = 1.0, max_records: int = 50) -> int:
        """Poll once and process what came; returns the number of records finished."""
        messages = self.consumer.poll(timeout_s=timeout_s, max_records=max_records)
        blocked: set[tuple[str, int]] = set()
        finished = 0
        failures = 0
        for message in messages:
            tp = (message.topic, message.partition)
            if tp in blocked:
                continue  # keep per-partition order: retry the failed one first
            try:
                done = self.process(message)
            except BusError as exc:  # e.g. the dead-letter topic could not take it
                log.warning("%s[%d]@%d: %s; will retry", message.topic, message.partition,
                            message.offset, exc)
                done = False
            if done:
                finished += 1
            else:
                failures += 1
                blocked.add(tp)
                self.consumer.rewind(message)
        if failures:
            time.sleep(min(self.backoff_s * (2 ** min(failures, 5)), self.max_backoff_s))
        return finished

    def run(self, stop: threading.Event, timeout_s: float = 1.0) -> ConsumeStats:
        while not stop.is_set():
            try:
                self.run_once(timeout_s=timeout_s)
            except BusError as exc:  # the broker is away (restart, network): wait, poll again
                log.warning("polling %s failed: %s; retrying", self.group, exc)
                stop.wait(self.max_backoff_s / 2)
        return self.stats
