"""The faults: what each one does to a run, and what the run must still achieve.

Every fault is a :class:`Fault` whose hooks strike during a :class:`Trial`:
``prepare_items`` (what the STAC API serves), ``worker_args`` (fault hooks of the worker
processes), ``before_poll`` (between discovery polls, i.e. mid-stream), ``after_polls`` and
``on_dispatch`` (the webhook clock). ``expect_state_equal`` says whether the final state
must equal the reference's; ``reference`` names the fault-free run to compare with.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import ServiceError

if TYPE_CHECKING:
    from tools.reliability.harness import Trial

log = logging.getLogger(__name__)


@dataclass
class Fault:
    name: str = "none"
    title: str = "no fault (the reference run)"
    quick: bool = False
    expect_state_equal: bool = True
    # False where the fault changes the order in which scenes reach the pipeline without
    # changing the scenes: an alert revision may then be credited to another scene of the
    # same window (its scene_ids differ) while everything else about the alert is equal.
    expect_same_provenance: bool = True
    reference: str = "reference"

    def prepare_items(self, items: list[dict[str, Any]], trial: Trial) -> list[dict[str, Any]]:
        return items

    def worker_args(self, name: str) -> list[str]:
        return []

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        return None

    def after_polls(self, trial: Trial) -> None:
        return None

    def on_dispatch(self, trial: Trial, elapsed: timedelta) -> None:
        return None

    def strike_index(self, trial: Trial) -> int:
        return len(trial.poll_times) // 3

    def expected_dead_letters(self, trial_items: list[dict[str, Any]]) -> set[str]:
        return set()


def _wait_progress(trial: Trial, scenes: int) -> None:
    """Let the workers get into the stream before striking."""
    trial.wait_for(lambda: trial.done_count() >= scenes, 120, f"{scenes} scenes handled",
                   every_s=0.05)


class WorkerKill(Fault):
    """kill -9 the worker that has a scene in hand."""

    def __init__(self) -> None:
        super().__init__("worker-kill", "kill -9 a worker mid-scene", quick=True)

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if index != self.strike_index(trial):
            return
        _wait_progress(trial, 8)
        if trial.wait_for(lambda: trial.busy_worker() is not None, 60, "a busy worker",
                          every_s=0.005):
            name = trial.busy_worker() or next(iter(trial.workers))
            scene = (trial.status_dir / f"{name}.busy").read_text() if (
                trial.status_dir / f"{name}.busy").exists() else "?"
            trial.kill_worker(name)
            trial.note(f"kill -9 {name} (pid {trial.workers[name].pid}) while it handled "
                       f"scene event {scene[:12]}; the other worker takes its partition over")


class WorkerKillAfterSave(Fault):
    """kill -9 a worker after it persisted a state but before it published or committed."""

    def __init__(self) -> None:
        super().__init__("worker-kill-after-save",
                         "kill -9 a worker between state save and ChangeEvent/commit")

    def worker_args(self, name: str) -> list[str]:
        return ["--hang-after-save", "10"]

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if index != self.strike_index(trial):
            return

        def saved() -> str | None:
            return next((n for n in trial.workers
                         if (trial.status_dir / f"{n}.saved").exists()
                         and trial.workers[n].poll() is None), None)

        if trial.wait_for(lambda: saved() is not None, 120, "a worker paused after a save",
                          every_s=0.05):
            name = saved()
            assert name is not None
            what = (trial.status_dir / f"{name}.saved").read_text().strip()
            trial.kill_worker(name)
            trial.note(f"kill -9 {name} after it saved state ({what[:40]}...) and before "
                       "publishing the ChangeEvent and committing the offset")
            trial.start_worker(f"{name}b")
            trial.note(f"started a replacement worker {name}b")


class KafkaRestart(Fault):
    def __init__(self) -> None:
        super().__init__("kafka-restart", "restart the Kafka broker mid-stream", quick=True)

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if index != self.strike_index(trial):
            return
        _wait_progress(trial, 8)
        t0 = time.monotonic()
        trial.services.stop_kafka()
        trial.note(f"docker/kafka.sh stop after {trial.done_count()} scenes handled")
        time.sleep(5)
        trial.services.start_kafka()
        trial.note(f"docker/kafka.sh start: broker back after {time.monotonic() - t0:.0f} s")


class PostgresOutage(Fault):
    def __init__(self, seconds: float = 30.0) -> None:
        super().__init__("postgres-outage", f"PostgreSQL unavailable for {seconds:.0f} s")
        self.seconds = seconds

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if index != self.strike_index(trial):
            return
        _wait_progress(trial, 8)
        trial.services.stop_postgres()
        t0 = time.monotonic()
        trial.note(f"docker/postgres.sh stop after {trial.done_count()} scenes handled")
        time.sleep(self.seconds)
        trial.services.start_postgres()
        trial.note(f"docker/postgres.sh start after {time.monotonic() - t0:.0f} s down")


class StacFault(Fault):
    """The STAC API misbehaves for ``polls`` consecutive discovery polls."""

    def __init__(self, mode: str, polls: int = 3, quick: bool = False) -> None:
        titles = {"down": "STAC API down (connections dropped)",
                  "slow": "STAC API slow (answers 1.5 s late, client timeout 1 s)",
                  "garbage": "STAC API answers garbage (200, not JSON)"}
        super().__init__(f"stac-{mode}", titles[mode] + f" for {polls} polls", quick=quick)
        # After the outage discovery catches up one collection at a time (all missed S2,
        # then all missed S1), not interleaved by date as in the reference.
        self.expect_same_provenance = False
        self.mode = mode
        self.polls = polls

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        first = self.strike_index(trial)
        if index == first:
            trial.proxy.mode = self.mode
            trial.proxy.delay_s = 1.5
            trial.note(f"STAC proxy '{self.mode}' from poll {index} ({now:%Y-%m-%d})")
        elif index == first + self.polls:
            trial.note(f"STAC proxy back to normal at poll {index} ({now:%Y-%m-%d}); "
                       f"{trial.proxy.faulted} requests were faulted")
            trial.proxy.mode = "ok"


class CorruptCog(Fault):
    """One S2 scene's red band is a corrupt COG (truncated, as by a broken transfer).

    (Overwriting the image bytes instead is not always detected: a tile that still
    inflates gives garbage values without any error, and GeoTIFF has no checksum.)"""

    def __init__(self) -> None:
        super().__init__("corrupt-cog", "a corrupt COG (one S2 red band truncated)",
                         reference="without-corrupt-scene")
        self.item_id: str | None = None

    def pick(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        s2 = [i for i in items if i.get("collection") == "sentinel-2-l2a"
              and float(i["properties"].get("eo:cloud_cover", 100)) < 30]
        return s2[len(s2) // 2]

    def prepare_items(self, items: list[dict[str, Any]], trial: Trial) -> list[dict[str, Any]]:
        victim = self.pick(items)
        self.item_id = str(victim["id"])
        href = victim["assets"]["red"]["href"]
        source = Path(href.removeprefix("file://"))
        data = source.read_bytes()
        # A truncated transfer: the header survives, the image data does not.
        kept = data[:len(data) // 3]
        target = trial.dir / f"corrupt-{source.name}"
        target.write_bytes(kept)
        patched = json.loads(json.dumps(victim))
        patched["assets"]["red"]["href"] = str(target)
        trial.note(f"item {self.item_id}: red band replaced by a corrupt copy "
                   f"(truncated to {len(kept)} of {len(data)} bytes)")
        return [patched if i is victim else i for i in items]

    def expected_dead_letters(self, trial_items: list[dict[str, Any]]) -> set[str]:
        return {f"sentinel-2-l2a/{self.item_id}"} if self.item_id else set()


class WithoutItem(Fault):
    """The fault-free run over the archive minus one item (the corrupt COG's reference)."""

    def __init__(self, picker: CorruptCog) -> None:
        super().__init__("without-corrupt-scene", "reference without the corrupt scene")
        self.picker = picker

    def prepare_items(self, items: list[dict[str, Any]], trial: Trial) -> list[dict[str, Any]]:
        victim = self.picker.pick(items)
        return [i for i in items if i is not victim]


class WebhookDown(Fault):
    def __init__(self, hours: float = 1.0) -> None:
        super().__init__("webhook-down", f"webhook target down for {hours:g} h of simulated "
                         "time", quick=True)
        self.hours = hours

    def after_polls(self, trial: Trial) -> None:
        trial.receiver.stop()
        trial.note("webhook receiver stopped (connection refused)")

    def on_dispatch(self, trial: Trial, elapsed: timedelta) -> None:
        if not trial.receiver.up and elapsed >= timedelta(hours=self.hours):
            rows = trial.db.deliveries(subscription_id=f"sub-{trial.run_id}", limit=None)
            attempts = sum(r.attempts for r in rows)
            trial.receiver.start()
            trial.note(f"webhook receiver back after {elapsed} simulated; "
                       f"{attempts} failed attempts until then")


class StateWriteFailure(Fault):
    def __init__(self) -> None:
        super().__init__("state-write-failure",
                         "state store fails writes (5th version write, 12th pointer move)",
                         quick=True)

    def worker_args(self, name: str) -> list[str]:
        return ["--fail-write", "5:version,12:pointer"]

    def after_polls(self, trial: Trial) -> None:
        trial.wait_for(lambda: trial.done_count() >= 14, 180, "14 scenes handled", every_s=0.2)
        injected = 0
        for path in trial.dir.glob("w*.log"):
            injected += path.read_text(errors="replace").count("injected failure of")
        trial.note(f"{injected} injected write failure(s) in the worker logs")


class DuplicateEvents(Fault):
    """Re-deliver events after newer ones: SceneEvents (one older than the state's lateness
    window) and ChangeEvents, newest first."""

    def __init__(self) -> None:
        super().__init__("duplicates", "duplicated and out-of-order re-deliveries "
                         "(scenes + changes)", quick=True)

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if index != 2 * len(trial.poll_times) // 3:
            return
        from tools.reliability.infrastructure import read_topic

        _wait_progress(trial, 20)
        b = trial.settings.bus
        done = [s for s in trial.db.scenes(city_id="rel-city", statuses=["processed"],
                                           limit=None)]
        picks = [done[0], done[1], done[len(done) // 2], done[-1]]
        for scene in reversed(picks):  # newest first: out of order
            trial.bus.publish(b.scenes_topic, scene.city_id, scene.event_json.encode())
        changes = read_topic(trial.services.bootstrap or "", b.changes_topic)
        again = [changes[0], changes[len(changes) // 2], changes[-1]] if changes else []
        for record in reversed(again):
            trial.bus.publish(b.changes_topic, record["key"], record["value"])
        for record in again:  # and twice more, in order
            trial.bus.publish(b.changes_topic, record["key"], record["value"])
        trial.bus.flush()
        trial.note(f"re-published {len(picks)} processed SceneEvents (oldest acquired "
                   f"{picks[0].acquired:%Y-%m-%d}) newest first, and {len(again)} ChangeEvents "
                   f"three times, after {trial.done_count()} scenes handled")


class LateListedItem(Fault):
    """An S2 item that the provider lists only 8 days after acquisition: it reaches the
    state after newer scenes (out of order, inside the lateness limit)."""

    def __init__(self) -> None:
        super().__init__("out-of-order", "an S2 item listed 8 days late (reaches the state "
                         "after newer scenes)", expect_state_equal=False)
        self.held: dict[str, Any] | None = None

    def prepare_items(self, items: list[dict[str, Any]], trial: Trial) -> list[dict[str, Any]]:
        s2 = [i for i in items if i.get("collection") == "sentinel-2-l2a"
              and float(i["properties"].get("eo:cloud_cover", 100)) < 30]
        self.held = s2[len(s2) // 2]
        trial.note(f"item {self.held['id']} ({self.held['properties']['datetime'][:10]}) "
                   "held back by the STAC API")
        return [i for i in items if i is not self.held]

    def before_poll(self, trial: Trial, index: int, now: datetime) -> None:
        if self.held is None:
            return
        acquired = datetime.fromisoformat(self.held["properties"]["datetime"].replace("Z",
                                                                                      "+00:00"))
        if now >= acquired + timedelta(days=8):
            trial.stac.restart_with([*trial.items, self.held])
            trial.note(f"item listed at poll {index} ({now:%Y-%m-%d}), "
                       f"{(now - acquired).days} days after acquisition")
            self.held = None


def all_faults() -> list[Fault]:
    return [WorkerKill(), WorkerKillAfterSave(), KafkaRestart(), PostgresOutage(),
            StacFault("down"), StacFault("slow", polls=2), StacFault("garbage"),
            CorruptCog(), WebhookDown(), StateWriteFailure(), DuplicateEvents(),
            LateListedItem()]


def select_faults(only: list[str] | None, quick: bool) -> list[Fault]:
    faults = all_faults()
    if only:
        known = {f.name for f in faults}
        unknown = sorted(set(only) - known)
        if unknown:
            raise ServiceError(f"unknown fault(s) {unknown}", f"choose from {sorted(known)}")
        return [f for f in faults if f.name in only]
    return [f for f in faults if f.quick] if quick else faults
