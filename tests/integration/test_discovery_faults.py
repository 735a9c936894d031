"""Discovery against hostile STAC APIs: real local HTTP servers that answer 500, 429, hang
or return garbage, and items that are malformed. The scheduler must retry with backoff,
record the failure, let the other cities go on, and never crash."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.database import Database
from monitor.pipeline.discovery import DiscoveryCycle
from monitor.pipeline.runtime import discovery_cycle
from tests.integration.stac_fixtures import (
    ES,
    HostileStacServer,
    body_covers,
    embedded_events,
    item_by_id,
    make_settings,
    provider_settings,
    renamed,
    require_stac_dir,
)

NOW = datetime(2025, 8, 1, tzinfo=UTC)
GOOD_ID = "S2B_T24MXV_20250731T130245_L2A"
CITIES = [
    {"id": "ceara", "name": "Ceara coast", "bbox": [-40.5, -5.3, -37.5, -3.5]},
    {"id": "denver", "name": "Denver", "bbox": [-106.2, 39.6, -104.8, 40.7]},
]
SOURCE = {"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
          "lookback_days": 10, "max_cloud_cover": 80}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    database.init_schema()
    yield database
    database.dispose()


def _cycle(server: HostileStacServer, db: Database, *, strategy: str = "batched",
           timeout_s: float = 5.0, max_retries: int = 3, cities=CITIES,
           ) -> tuple[DiscoveryCycle, EmbeddedBus]:
    settings = make_settings(
        providers={ES: provider_settings(server.url, ES, timeout_s=timeout_s,
                                         max_retries=max_retries)},
        sources=[SOURCE], cities=cities, database_url=db.url)
    bus = EmbeddedBus()
    return discovery_cycle(settings, bus, db, strategy=strategy, backoff_s=0.05), bus


def _good() -> dict:
    require_stac_dir()
    return item_by_id(ES, "sentinel-2-c1-l2a", GOOD_ID)


def test_500_is_retried_with_backoff_then_recovers(db: Database) -> None:
    with HostileStacServer(features=[_good()], script=["500", "503"]) as server:
        cycle, bus = _cycle(server, db, cities=CITIES[:1])
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        assert server.actions() == ["500", "503", "ok"]
        assert report.errors == {} and report.published_ids == [GOOD_ID]
        assert db.watermark("ceara", "es-s2-c1").last_error is None
        # Backoff between attempts: the retries are spaced, not hammered.
        stamps = [t for t, _, _ in server.searches]
        assert stamps[2] - stamps[0] >= 0.05


def test_429_respects_retry_after(db: Database) -> None:
    with HostileStacServer(features=[_good()], script=["429"], retry_after_s=1) as server:
        cycle, _ = _cycle(server, db, cities=CITIES[:1])
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        stamps = [t for t, _, _ in server.searches]
        assert server.actions() == ["429", "ok"]
        assert stamps[1] - stamps[0] >= 0.95  # waited as told by Retry-After: 1
        assert report.published == 1


def test_persistent_failure_is_recorded_and_other_cities_go_on(db: Database) -> None:
    features = [_good()]
    # Only searches that cover Denver fail; Ceara's work.
    with HostileStacServer(features=features,
                           fail_if=lambda b: "503" if body_covers(b, -105.0, 40.0) else None
                           ) as server:
        cycle, bus = _cycle(server, db, strategy="naive", max_retries=2)
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        assert set(report.errors) == {"denver"}
        assert "HTTP 503" in report.errors["denver"]
        assert report.published_ids == [GOOD_ID]
        assert [e.subject for e in embedded_events(bus, "urban.scenes.v1")] == ["ceara"]
        denver = db.watermark("denver", "es-s2-c1")
        assert denver is not None and "HTTP 503" in (denver.last_error or "")
        assert denver.last_acquired is None
        assert db.watermark("ceara", "es-s2-c1").last_error is None
        assert server.actions().count("503") == 3  # 1 + 2 retries

        # The API recovers: the next poll clears the error.
        server.fail_if = None
        again = cycle.poll_source(cycle.source("es-s2-c1"), NOW + timedelta(minutes=15))
        assert again.errors == {}
        assert db.watermark("denver", "es-s2-c1").last_error is None


def test_hanging_server_times_out_and_the_next_poll_recovers(db: Database) -> None:
    with HostileStacServer(features=[_good()], default="hang", hang_s=2.0) as server:
        cycle, _ = _cycle(server, db, timeout_s=0.4, max_retries=1, cities=CITIES[:1])
        started = time.monotonic()
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        elapsed = time.monotonic() - started
        assert "ceara" in report.errors and report.published == 0
        assert "timed out" in report.errors["ceara"].lower() or "timeout" in (
            report.errors["ceara"].lower())
        assert elapsed < 5.0  # bounded by timeout x attempts, not by the server
        assert server.actions() == ["hang", "hang"]
        assert "es-s2-c1" not in (db.watermark("ceara", "es-s2-c1").last_error or "x")
        assert "sentinel-2-c1-l2a" in (db.watermark("ceara", "es-s2-c1").last_error or "")

        server.default = "ok"
        again = cycle.poll_source(cycle.source("es-s2-c1"), NOW + timedelta(minutes=15))
        assert again.errors == {} and again.published_ids == [GOOD_ID]


@pytest.mark.parametrize("answer", ["garbage", "not-a-collection"])
def test_garbage_answers_are_errors_not_crashes(db: Database, answer: str) -> None:
    with HostileStacServer(features=[_good()], default=answer) as server:
        cycle, bus = _cycle(server, db, cities=CITIES[:1], max_retries=1)
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        assert "ceara" in report.errors
        assert "not a STAC ItemCollection" in report.errors["ceara"]
        assert bus.records("urban.scenes.v1") == []
        assert server.actions() == [answer]  # a 200 with garbage is not retried in-cycle


def test_malformed_items_are_skipped_recorded_and_the_rest_published(db: Database) -> None:
    good = _good()
    no_red = renamed(good, "no-red")
    del no_red["assets"]["red"]
    no_time = renamed(good, "no-datetime")
    no_time["properties"]["datetime"] = None
    bad_geometry = renamed(good, "bad-geometry")
    bad_geometry["geometry"] = {"type": "Polygon", "coordinates": [[[-39.0, -4.0], [-38.0]]]}
    no_assets = renamed(good, "no-assets")
    del no_assets["assets"]
    # A real Earth Search answer: an item without geometry or assets (bbox only, Denver).
    bare = copy.deepcopy(item_by_id(ES, "sentinel-2-c1-l2a", "S2A_T13TDE_20250711T175745_L2A"))
    features = [good, no_red, no_time, bad_geometry, no_assets, bare]
    with HostileStacServer(features=features) as server:
        cycle, bus = _cycle(server, db)
        report = cycle.poll_source(cycle.source("es-s2-c1"), NOW)
        assert report.errors == {}
        assert report.published_ids == [GOOD_ID]
        assert report.skipped == 5
        skipped = {(s.city_id, s.item_id): s.reason for s in db.skipped_items()}
        assert skipped.keys() == {
            ("ceara", f"{GOOD_ID}-no-red"), ("ceara", f"{GOOD_ID}-no-datetime"),
            ("ceara", f"{GOOD_ID}-bad-geometry"), ("ceara", f"{GOOD_ID}-no-assets"),
            ("denver", "S2A_T13TDE_20250711T175745_L2A")}
        assert "missing required asset" in skipped[("ceara", f"{GOOD_ID}-no-red")]
        assert "datetime" in skipped[("ceara", f"{GOOD_ID}-no-datetime")]
        assert "geometry" in skipped[("ceara", f"{GOOD_ID}-bad-geometry")]
        assert "assets" in skipped[("ceara", f"{GOOD_ID}-no-assets")]
        assert "geometry" in skipped[("denver", "S2A_T13TDE_20250711T175745_L2A")]

        # Polling again: still skipped (recorded once), nothing re-published.
        again = cycle.poll_source(cycle.source("es-s2-c1"), NOW + timedelta(minutes=15))
        assert again.published == 0 and again.skipped == 5
        assert len(db.skipped_items()) == 5
        assert len(bus.records("urban.scenes.v1")) == 1
