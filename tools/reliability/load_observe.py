"""What the load run watches while it runs: the output topics (record times of ChangeEvents
and AlertEvents) and the consumer lag of both groups, in background threads."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from monitor.errors import UrbanMonitorError

log = logging.getLogger(__name__)


@dataclass
class Observed:
    """What the monitor consumer saw on the changes and alerts topics (record times)."""

    change_at: dict[str, float] = field(default_factory=dict)  # scene event id -> s
    change_city: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> city, item
    alerts: list[dict[str, Any]] = field(default_factory=list)
    lag: list[dict[str, Any]] = field(default_factory=list)


class Monitor:
    """Reads the output topics and samples consumer lag in background threads."""

    def __init__(self, bootstrap: str, settings: Any) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        b = settings.bus
        self.bus = b
        self.observed = Observed()
        self.stop = threading.Event()
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="load-monitor")
        self.reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        self.offsets = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                     enable_auto_commit=False)
        self.scene_tps = [TopicPartition(b.scenes_topic, p) for p in range(b.partitions)]
        self.change_tps = [TopicPartition(b.changes_topic, p) for p in range(b.partitions)]
        alert_tps = [TopicPartition(b.alerts_topic, p) for p in range(b.partitions)]
        self.reader.assign(self.change_tps + alert_tps)
        self.reader.seek_to_beginning()
        self.threads = [threading.Thread(target=self._read, daemon=True, name="load-read"),
                        threading.Thread(target=self._sample, daemon=True, name="load-lag")]
        self.t0 = time.time()
        self.phase = "start"

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.reader.close()
        self.offsets.close()
        self.admin.close()

    def _read(self) -> None:
        while not self.stop.is_set():
            batches = self.reader.poll(timeout_ms=300)
            for tp, records in batches.items():
                for record in records:
                    event = json.loads(record.value)
                    stamp = record.timestamp / 1000.0
                    data = event["data"]
                    if tp.topic == self.bus.changes_topic:
                        self.observed.change_at.setdefault(data["scene_event_id"], stamp)
                        self.observed.change_city[data["scene_event_id"]] = (
                            data["city_id"], data["scene_ids"][0])
                    else:
                        self.observed.alerts.append({
                            "at": stamp, "city_id": data["city_id"],
                            "alert_id": data["alert_id"], "revision": data["revision"],
                            "status": data["status"], "scene_ids": data["scene_ids"]})

    def lag_of(self, group: str, tps: list[Any]) -> int:
        ends = self.offsets.end_offsets(tps)
        committed = committed_offsets(self.admin, group, tps)
        total = 0
        for tp in tps:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            total += max(ends.get(tp, 0) - offset, 0)
        return total

    def _sample(self) -> None:
        while not self.stop.wait(2.0):
            try:
                sample = {"t": round(time.time() - self.t0, 1), "phase": self.phase,
                          "inference": self.lag_of(self.bus.inference_group, self.scene_tps),
                          "alerting": self.lag_of(self.bus.alerting_group, self.change_tps)}
            except Exception as exc:  # kafka-python raises several types; a gap is fine
                log.debug("lag sample failed: %s", exc)
                continue
            self.observed.lag.append(sample)

    def wait_for_group(self, group: str, members: int, timeout_s: float = 120.0) -> None:
        """Until the group is stable with ``members`` members that all hold partitions."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = group_state(self.admin, group)
                if last == ("Stable", members):
                    return
            except Exception as exc:  # not known yet
                last = exc
            time.sleep(0.5)
        raise UrbanMonitorError(f"consumer group {group} did not become stable with {members} "
                                f"members in {timeout_s:.0f} s (last: {last!r})",
                                "check the worker logs under var/load/run-*/")


def wait_drained(monitor: Monitor, group: str, tps: list[Any], timeout_s: float) -> float:
    """Seconds until ``group`` has no lag on ``tps`` (gives up after ``timeout_s``)."""
    start = time.time()
    while time.time() - start < timeout_s:
        try:
            if monitor.lag_of(group, tps) == 0:
                break
        except Exception as exc:  # noqa: BLE001 - a lag sample can fail while rebalancing
            log.debug("lag check failed: %s", exc)
        time.sleep(1.0)
    return round(time.time() - start, 1)


def committed_offsets(admin: Any, group: str, tps: list[Any]) -> dict[Any, Any]:
    """The group's committed offsets (kafka-python 3 and 2 name this differently)."""
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets({group: tps}).get(group, {}))
    return dict(admin.list_consumer_group_offsets(group, partitions=tps))


def group_state(admin: Any, group: str) -> tuple[str, int]:
    """(state, number of members) of a consumer group (kafka-python 3 or 2)."""
    if hasattr(admin, "describe_groups"):
        info = admin.describe_groups([group])[group]
        return str(info["group_state"]), len(info["members"])
    (info,) = admin.describe_consumer_groups([group])
    return str(info.state), len(info.members)
