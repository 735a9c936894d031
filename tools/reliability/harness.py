"""One run of the distributed pipeline over a small synthetic city, with a fault or without.

A run (:class:`Trial`) gets fresh topics, consumer groups, a fresh PostgreSQL database and
a fresh state folder, so runs never see each other. It serves the archive with a real STAC
API (``rustac serve``) behind a :class:`~tools.reliability.endpoints.FaultyProxy`,
starts ``workers`` inference worker processes (:mod:`tools.reliability.worker`, real OS
processes in one consumer group), runs the alerting service (``monitor.pipeline.runtime.run_alerting``) in a
thread, and replays discovery on a simulated clock (one poll every ``poll_every_days``).
The fault's hooks strike along the way. Then it waits until everything is settled (every
scene terminal, no consumer lag, no pending outbox row), sends the webhooks on a simulated
clock, and records what a comparison needs (:class:`RunRecord`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from monitor.errors import ServiceError, UrbanMonitorError
from tools.reliability.infrastructure import (
    REPO_ROOT,
    DedicatedServices,
    drop_database,
    fresh_database,
    group_lag,
    read_topic,
)

if TYPE_CHECKING:
    from tools.reliability.faults import Fault

log = logging.getLogger(__name__)

CITY_ID = "rel-city"
TERMINAL = ("processed", "skipped", "dead_lettered")
S2_COLLECTION = "sentinel-2-l2a"
S1_COLLECTION = "sentinel-1-rtc"


@dataclass
class SuiteEnvironment:
    """What every run of a suite shares: the services, the archive, the models."""

    root: Path
    services: DedicatedServices
    archive: Any  # monitor.synthetic.archive.Archive
    models: dict[str, str]
    workers: int = 2
    partitions: int = 2
    poll_every_days: float = 4.0
    settle_timeout_s: float = 240.0
    keep_databases: bool = False


@dataclass
class RunRecord:
    """What one run left behind, in comparable form."""

    name: str
    scenes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # item -> status
    alerts: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # id -> rev, status, hash
    # the same without the alert's scene ids (its provenance)
    alert_contents: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    alert_events: list[str] = field(default_factory=list)  # AlertEvent ids on the topic
    webhook_events: list[str] = field(default_factory=list)  # event ids the receiver got
    webhook_status: dict[str, int] = field(default_factory=dict)  # outbox rows by status
    dead_letters: list[str] = field(default_factory=list)  # reasons on the dead-letter topic
    state_hash: str | None = None
    state_version: int = 0
    unsettled: list[str] = field(default_factory=list)  # what did not settle in time
    notes: list[str] = field(default_factory=list)  # what the fault did, in order
    seconds: float = 0.0

    def expected_alert_events(self) -> set[str]:
        """Every revision of every alert must have produced one AlertEvent."""
        from monitor.domain.events import deterministic_id

        return {deterministic_id("alert", alert_id, rev)
                for alert_id, (revision, _, _) in self.alerts.items()
                for rev in range(1, revision + 1)}


def resolve_models(snapshot_dir: Path | None = None) -> dict[str, str]:
    """The shipped artifacts when they exist, else the cross-validation fold-0 models, else
    whatever the settings (and URBAN_MONITOR_MODELS__*) say.

    With ``snapshot_dir``, the chosen card + ONNX pairs are copied there first and the
    copies are used: every run of a suite then runs the same bytes even if the artifacts
    are re-exported meanwhile (a changed model would change the state, not a fault)."""
    import shutil

    out: dict[str, str] = {}
    for modality in ("s2", "s1"):
        env = os.environ.get(f"URBAN_MONITOR_MODELS__{modality.upper()}")
        shipped = REPO_ROOT / "models" / "artifacts" / f"change_{modality}.card.json"
        fold = REPO_ROOT / "var" / "models" / "folds" / "fold0" / f"change_{modality}.onnx"
        if env:
            out[modality] = env
        elif shipped.exists():
            out[modality] = str(shipped)
        elif fold.exists():
            out[modality] = str(fold.with_name(fold.stem + ".card.json"))
        else:
            out[modality] = f"change_{modality}"
        card = Path(out[modality])
        if snapshot_dir is not None and card.suffix == ".json" and card.exists():
            onnx = card.parent / json.loads(card.read_text())["onnx"]
            snapshot_dir.mkdir(parents=True, exist_ok=True)
            shutil.copy2(onnx, snapshot_dir / onnx.name)
            shutil.copy2(card, snapshot_dir / card.name)
            out[modality] = str(snapshot_dir / card.name)
    return out


def state_digest(state: Any) -> str:
    """sha256 over every state array (sorted by name) and its metadata."""
    digest = hashlib.sha256()
    for name, array in sorted(state.to_arrays().items()):
        digest.update(name.encode())
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(array.tobytes())
    digest.update(json.dumps(state.to_metadata(), sort_keys=True).encode())
    return digest.hexdigest()[:16]


class Trial:
    """One run. Faults use its handles: ``workers``, ``proxy``, ``receiver``, ``services``,
    ``bus``, ``db``, ``note()``, ``wait_for()``, ``kill_worker()``."""

    def __init__(self, env: SuiteEnvironment, fault: Fault, *, label: str | None = None) -> None:
        self.env = env
        self.fault = fault
        self.label = label or fault.name
        self.run_id = f"{self.label}-{uuid.uuid4().hex[:6]}"
        self.dir = env.root / "runs" / self.run_id
        self.status_dir = self.dir / "status"
        self.record = RunRecord(name=self.label)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self.stop_event = threading.Event()
        self.items: list[dict[str, Any]] = []
        self.settings: Any = None
        self.runtime: Any = None
        self.proxy: Any = None
        self.stac: Any = None
        self.receiver: Any = None
        self.db_url: str | None = None
        self.alerting_thread: threading.Thread | None = None
        self.alerting_error: BaseException | None = None
        self.poll_times: list[datetime] = []
        self.cycle: Any = None

    # -- helpers for faults ---------------------------------------------------------------
    @property
    def services(self) -> DedicatedServices:
        return self.env.services

    @property
    def db(self) -> Any:
        return self.runtime.db

    @property
    def bus(self) -> Any:
        return self.runtime.bus

    def note(self, text: str) -> None:
        log.info("[%s] %s", self.label, text)
        self.record.notes.append(text)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str,
                 every_s: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except (UrbanMonitorError, OSError):
                pass
            time.sleep(every_s)
        self.note(f"gave up waiting ({timeout_s:.0f} s) for {what}")
        return False

    def done_count(self) -> int:
        total = 0
        for path in self.status_dir.glob("*.done"):
            total += len(path.read_text().splitlines())
        return total

    def busy_worker(self) -> str | None:
        for name, proc in self.workers.items():
            if proc.poll() is None and (self.status_dir / f"{name}.busy").exists():
                return name
        return None

    def start_worker(self, name: str, extra: list[str] | None = None) -> None:
        log_path = self.dir / f"{name}.log"
        command = [sys.executable, "-m", "tools.reliability.worker", "--config",
                   str(self.dir / "config.yaml"), "--name", name,
                   "--status-dir", str(self.status_dir), *(extra or [])]
        with log_path.open("ab") as out:
            self.workers[name] = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out,
                                                  stderr=subprocess.STDOUT,
                                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill_worker(self, name: str) -> None:
        proc = self.workers[name]
        self.killed.add(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    # -- set-up ---------------------------------------------------------------------------
    def _write_config(self, stac_url: str) -> Path:
        ns = self.run_id
        env = self.env
        config = {
            "base": str(REPO_ROOT / "config" / "default.yaml"),
            "cities_file": "",
            "cities": [{"id": CITY_ID, "name": "Reliability city (synthetic)",
                        "geometry": dict(env.archive.aoi.__geo_interface__)}],
            "bus": {"kind": "kafka", "bootstrap_servers": env.services.bootstrap,
                    "scenes_topic": f"{ns}.scenes.v1", "changes_topic": f"{ns}.changes.v1",
                    "alerts_topic": f"{ns}.alerts.v1",
                    "dead_letter_topic": f"{ns}.deadletter.v1",
                    "partitions": env.partitions, "inference_group": f"{ns}-inference",
                    "alerting_group": f"{ns}-alerting", "client_id": ns},
            "database": {"url": self.db_url},
            "state": {"url": str(self.dir / "state")},
            "models": {"s2": env.models["s2"], "s1": env.models["s1"], "threads": 1},
            "logging": {"level": "INFO"},
            # The real-time webhook dispatcher of the alerting service idles: the suite
            # sends webhooks on a simulated clock (an hour of outage in seconds).
            "alerting": {"dispatch_interval_s": 36000,
                         # the receiver listens on loopback, which the SSRF guard refuses
                         "webhook_allow_private": ["127.0.0.1"]},
            "providers": {"synthetic": {
                "url": stac_url, "signing": "none", "timeout_s": 1.0, "max_retries": 2,
                "collections": {
                    S2_COLLECTION: {"modality": "s2", "assets": {
                        b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22",
                                       "scl")}},
                    S1_COLLECTION: {"modality": "s1", "assets": {"vv": "vv", "vh": "vh"}}}}},
            "sources": [
                {"name": "s2-synthetic", "provider": "synthetic", "collection": S2_COLLECTION,
                 "interval_minutes": 1440, "lookback_days": 10, "max_cloud_cover": 95},
                {"name": "s1-synthetic", "provider": "synthetic", "collection": S1_COLLECTION,
                 "interval_minutes": 1440, "lookback_days": 10}],
        }
        path = self.dir / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start_alerting(self) -> None:
        from monitor.adapters.bus import create_bus
        from monitor.pipeline.runtime import run_alerting

        def target() -> None:
            bus = create_bus(self.settings.bus)
            try:
                # The service itself; restarted if it dies (that is what a supervisor does,
                # and the record says so).
                while not self.stop_event.is_set():
                    try:
                        run_alerting(self.settings, bus, self.runtime.db, self.stop_event)
                    except UrbanMonitorError as exc:
                        self.record.unsettled.append(
                            f"the alerting service died with {type(exc).__name__}: "
                            f"{exc.what[:160]} (restarted by the suite)")
                        self.stop_event.wait(1.0)
            except BaseException as exc:  # recorded: the run fails on it
                self.alerting_error = exc
                raise
            finally:
                bus.close()

        self.alerting_thread = threading.Thread(target=target, name="alerting", daemon=True)
        self.alerting_thread.start()

    def setup(self) -> None:
        from monitor.adapters.stac_server import StacServer
        from monitor.domain.records import Subscription
        from monitor.pipeline.runtime import build_runtime, discovery_cycle
        from monitor.settings import load_settings
        from tools.reliability.endpoints import FaultyProxy, WebhookReceiver

        self.dir.mkdir(parents=True, exist_ok=True)
        self.status_dir.mkdir(parents=True, exist_ok=True)
        assert self.env.services.admin_url is not None
        self.db_url = fresh_database(self.env.services.admin_url)
        archive = self.env.archive
        self.items = self.fault.prepare_items(archive.items(), self)
        self.stac = StacServer(list(archive.collection_paths.values()), self.items).__enter__()
        self.proxy = FaultyProxy(self.stac.url).start()
        self.receiver = WebhookReceiver().start()
        self.settings = load_settings(self._write_config(self.proxy.url))
        self.runtime = build_runtime(self.settings)
        self.runtime.db.add_subscription(Subscription(
            id=f"sub-{self.run_id}", name="fault suite receiver", url=self.receiver.url,
            secret="reliability-secret"))
        self.cycle = discovery_cycle(self.settings, self.runtime.bus, self.runtime.db,
                                     max_workers=1, backoff_s=0.1)
        start = datetime.combine(archive.params.start, datetime.min.time(), tzinfo=UTC)
        end = datetime.combine(archive.params.end, datetime.min.time(), tzinfo=UTC)
        step = timedelta(days=self.env.poll_every_days)
        now = start + step
        while now < end + step:
            self.poll_times.append(now)
            now += step
        for i in range(self.env.workers):
            name = f"w{i + 1}"
            self.start_worker(name, self.fault.worker_args(name))
        self._start_alerting()

    # -- the run --------------------------------------------------------------------------
    def poll(self, now: datetime) -> None:
        """One scheduled discovery poll; errors are logged as the scheduler does."""
        try:
            for report in self.cycle.poll_once(now):
                if report.errors:
                    log.info("[%s] poll %s: %s", self.label, report.source,
                             "; ".join(v[:100] for v in report.errors.values()))
        except UrbanMonitorError as exc:
            log.warning("[%s] poll at %s failed: %s", self.label, now, exc.what[:200])

    def _settled(self) -> bool:
        b = self.settings.bus
        scenes = self.db.scenes(city_id=CITY_ID, limit=None)
        if any(s.status == "discovered" for s in scenes):
            self.poll(self.poll_times[-1])  # the scheduler's next poll re-publishes them
            return False
        if any(s.status not in TERMINAL for s in scenes):
            return False
        if self.db.deliveries(statuses=["pending"], limit=None,
                              subscription_id=f"bus:{b.alerts_topic}"):
            return False
        boot = self.env.services.bootstrap
        assert boot is not None
        return (group_lag(boot, b.inference_group, b.scenes_topic) == 0
                and group_lag(boot, b.alerting_group, b.changes_topic) == 0)

    def _dispatch_webhooks(self) -> None:
        """Send the webhook outbox on a simulated clock until nothing is pending."""
        from monitor.adapters.webhooks import WebhookSender
        from monitor.pipeline.outbox import dispatch_due

        start = datetime.now(UTC)
        sim = start
        sub = f"sub-{self.run_id}"
        with WebhookSender(timeout_s=2.0,
                           allow=self.settings.alerting.webhook_allow_private) as sender:
            while sim < start + timedelta(hours=72):
                self.fault.on_dispatch(self, sim - start)
                try:
                    dispatch_due(self.db, sim, sender=sender, settings=self.settings.alerting)
                    pending = self.db.deliveries(subscription_id=sub, statuses=["pending"],
                                                 limit=1)
                except UrbanMonitorError as exc:
                    log.warning("[%s] dispatch: %s", self.label, exc)
                    pending = [True]
                if not pending and self.receiver.up:
                    break
                sim += timedelta(seconds=30)
        rows = self.db.deliveries(subscription_id=sub, limit=None)
        self.record.webhook_status = dict(Counter(r.status for r in rows))

    def run(self) -> RunRecord:
        started = time.perf_counter()
        try:
            self.setup()
            for index, now in enumerate(self.poll_times):
                self.fault.before_poll(self, index, now)
                self.poll(now)
            self.fault.after_polls(self)
            if not self.wait_for(self._settled, self.env.settle_timeout_s,
                                 "every scene terminal, no lag, outbox empty", every_s=1.0):
                self.record.unsettled.append("pipeline did not settle")
            self._dispatch_webhooks()
            self._collect()
        finally:
            self.teardown()
            self.record.seconds = round(time.perf_counter() - started, 1)
        return self.record

    def _collect(self) -> None:
        from monitor.adapters.state_store import StateStore

        b = self.settings.bus
        boot = self.env.services.bootstrap
        assert boot is not None
        rec = self.record
        for scene in self.db.scenes(city_id=CITY_ID, limit=None):
            rec.scenes[f"{scene.collection}/{scene.item_id}"] = (scene.status, scene.reason)
            if scene.status not in TERMINAL:
                rec.unsettled.append(f"scene {scene.item_id} is {scene.status}")
        for alert in self.db.alerts(city_id=CITY_ID, limit=None):
            geometry = json.dumps(alert.geometry)  # the stored text, as the database holds it
            body = json.dumps([geometry, round(alert.confidence, 4), alert.status,
                               str(alert.first_detected), str(alert.confirmed),
                               str(alert.retracted), json.dumps(list(alert.scene_ids))])
            rec.alerts[alert.id] = (alert.revision, alert.status,
                                    hashlib.sha256(body.encode()).hexdigest()[:12])
            content = json.dumps([geometry, round(alert.confidence, 4),
                                  alert.status, str(alert.first_detected),
                                  str(alert.confirmed), str(alert.retracted)])
            rec.alert_contents[alert.id] = (alert.revision, alert.status,
                                            hashlib.sha256(content.encode()).hexdigest()[:12])
        rec.alert_events = [json.loads(r["value"])["id"] for r in read_topic(boot, b.alerts_topic)]
        for r in read_topic(boot, b.dead_letter_topic):
            data = json.loads(r["value"]).get("data", {})
            rec.dead_letters.append(f"{data.get('error_type')}: {data.get('reason', '')[:300]}")
        rec.webhook_events = list(self.receiver.received)
        state = StateStore(self.settings.state.url).load(CITY_ID)
        if state is not None:
            rec.state_hash = state_digest(state)
            rec.state_version = int(state.version)
        if self.alerting_error is not None:
            rec.unsettled.append(f"alerting thread died: {self.alerting_error!r}")
        for name, proc in self.workers.items():
            if name not in self.killed and proc.poll() is not None:
                rec.unsettled.append(f"worker {name} exited by itself (code {proc.returncode}, "
                                     f"see {self.dir / (name + '.log')})")

    def teardown(self) -> None:
        self.stop_event.set()
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.alerting_thread is not None:
            self.alerting_thread.join(timeout=30)
        for closer in (self.proxy, self.receiver):
            if closer is not None:
                closer.stop()
        if self.stac is not None:
            self.stac.__exit__(None, None, None)
        if self.runtime is not None:
            self.runtime.close()
        if self.db_url and not self.env.keep_databases and self.env.services.admin_url:
            drop_database(self.env.services.admin_url, self.db_url)


def archive_params(start: date = date(2019, 1, 1), end: date = date(2019, 8, 31)) -> Any:
    from monitor.synthetic.params import ArchiveParams

    return ArchiveParams(name="reliability", size_km=1.0, start=start, end=end, seed=5)


def ensure_services(env_root: Path) -> DedicatedServices:
    services = DedicatedServices(env_root / "services")
    try:
        services.start()
    except ServiceError:
        raise
    return services
