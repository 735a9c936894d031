"""Scene discovery against real STAC API servers (rustac serve) loaded with the real item
JSON of Earth Search and Planetary Computer, on the embedded bus and on real Kafka, with
SQLite and PostgreSQL as the scene registry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.bus_kafka import KafkaBus
from monitor.adapters.database import Database
from monitor.adapters.stac_server import StacServer
from monitor.domain.events import SCENE_TYPE
from monitor.pipeline.discovery import replay_schedule
from monitor.pipeline.runtime import discovery_cycle
from tests.integration.stac_fixtures import (
    ES,
    ES_FILES,
    PC,
    PC_FILES,
    all_sources,
    collection_file,
    embedded_events,
    kafka_events,
    make_settings,
    provider_settings,
    real_items,
    require_stac_dir,
    servable,
)

NOW = datetime(2025, 8, 1, tzinfo=UTC)
CLOUDY_PC = {"S2A_MSIL2A_20190101T000001_R116_T58VFH_20201007T214652",
             "S2A_MSIL2A_20190101T000001_R116_T58UFG_20201007T214655"}


def _server(provider: str, collections: tuple[str, ...], items: list[dict]) -> StacServer:
    return StacServer([collection_file(provider, c) for c in collections], items)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    db.init_schema()
    yield db
    db.dispose()


@pytest.fixture
def postgres_db(postgres_url: str) -> Iterator[Database]:
    """A fresh database on the real PostgreSQL server (dropped afterwards)."""
    name = f"discovery_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    db.init_schema()
    yield db
    db.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_first_poll_publishes_exactly_the_matching_real_items_of_both_providers(
        sqlite_db: Database) -> None:
    require_stac_dir()
    es_items = [i for c in ES_FILES for i in servable(real_items(ES, c))]
    pc_items = [i for c in PC_FILES for i in servable(real_items(PC, c))]
    with _server(ES, ES_FILES, es_items) as es, _server(PC, PC_FILES, pc_items) as pc:
        settings = make_settings(
            # page size 5: the 31 PC S2 items come in 7 pages, which must all be followed
            providers={ES: provider_settings(es.url, ES), PC: provider_settings(pc.url, PC,
                                                                                page_size=5)},
            sources=all_sources(lookback_days=2600), database_url=sqlite_db.url)
        bus = EmbeddedBus()
        cycle = discovery_cycle(settings, bus, sqlite_db, backoff_s=0.05)
        reports = {r.source: r for r in cycle.poll_once(NOW)}

        events = embedded_events(bus, settings.bus.scenes_topic)
        got = {(e.subject, e.data.collection, e.data.item_id) for e in events}
        expected = (
            {("ceara", "sentinel-2-c1-l2a", f"S2B_T24M{t}_20250731T130245_L2A")
             for t in ("UA", "XV", "WV", "VV", "UV")}
            | {("antarctic", "sentinel-2-c1-l2a", "S2B_T20EPT_20250731T131905_L2A")}
            | {("ceara", "sentinel-2-l2a", f"S2B_24M{t}_20250731_0_L2A")
               for t in ("UA", "XV", "WV", "VV", "UV")}
            | {("antarctic", "sentinel-2-l2a", "S2B_20EPT_20250731_0_L2A"),
               ("denver", "sentinel-2-l2a", "S2A_13TDE_20231008_0_L2A")}
            | {("kamchatka", "sentinel-2-l2a", i["id"])
               for i in real_items(PC, "sentinel-2-l2a") if i["id"] not in CLOUDY_PC}
            | {("sirte", "sentinel-1-rtc", i["id"]) for i in real_items(PC, "sentinel-1-rtc")}
            | {("gabes", "sentinel-1-grd",
                "S1A_IW_GRDH_1SDV_20250312T052236_20250312T052301_058267_073394")}
        )
        assert got == expected
        assert len(events) == len(expected) == 49  # no duplicates either
        assert all(e.type == SCENE_TYPE for e in events)

        # The HH-only Earth Search GRD items are filtered (IW VV+VH wanted), not published.
        assert reports["es-s1"].filtered == 3 and reports["es-s1"].published == 0
        assert reports["pc-s2"].filtered == 2 and reports["pc-s2"].published == 31
        assert reports["pc-s2"].requests >= 8  # landing page + 7 pages of 5
        assert not any(r.errors for r in reports.values())

        by_item = {e.data.item_id: e.data for e in events}
        c1 = by_item["S2B_T24MXV_20250731T130245_L2A"]
        assert c1.boa_offset == 1000.0 and c1.assets["red"].key == "red"
        assert by_item["S2B_24MXV_20250731_0_L2A"].boa_offset == 0.0  # offset applied
        pc_s2 = by_item["S2A_MSIL2A_20190101T000001_R116_T60VUK_20201007T214652"]
        assert pc_s2.assets["red"].key == "B04" and pc_s2.boa_offset == 0.0
        rtc = by_item["S1A_IW_GRDH_1SDV_20240419T045904_20240419T045916_053498_067DF2_rtc"]
        assert (rtc.orbit_state, rtc.relative_orbit, rtc.instrument_mode) == (
            "descending", 51, "IW")
        assert rtc.polarizations == ["VV", "VH"] and rtc.backscatter_unit == "gamma0_linear"
        assert rtc.stac_api == pc.url

        # Per city, events come in acquisition order.
        for city in {e.subject for e in events}:
            for collection in {e.data.collection for e in events if e.subject == city}:
                times = [e.data.acquired for e in events
                         if e.subject == city and e.data.collection == collection]
                assert times == sorted(times)

        # The registry holds them all as published; watermarks moved to the newest item.
        assert sqlite_db.scene_counts() == {"published": 49}
        mark = sqlite_db.watermark("ceara", "es-s2-c1")
        assert mark is not None and mark.last_error is None
        assert mark.last_acquired == datetime(2025, 7, 31, 13, 3, 27, 58000, tzinfo=UTC)
        assert sqlite_db.watermark("stockholm", "pc-s2").last_acquired is None

        # Polling again publishes nothing new: everything is de-duplicated.
        again = cycle.poll_once(NOW + timedelta(minutes=15))
        assert sum(r.published for r in again) == 0
        assert sum(r.duplicates for r in again) == 49
        assert len(bus.records(settings.bus.scenes_topic)) == 49


def _appearing_scenario(settings_kwargs: dict, bus, db: Database, read_events) -> None:
    """Items appear between polls; late items inside the lookback are caught, those
    outside it are not; no duplicates across polls."""
    c1 = {i["id"]: i for i in real_items(ES, "sentinel-2-c1-l2a")}
    rtc = {i["id"][26:32]: i for i in real_items(PC, "sentinel-1-rtc")}  # keyed by HHMMSS
    ceara = "S2B_T24M{}_20250731T130245_L2A"
    first_es = [c1[ceara.format(t)] for t in ("UA", "UV")]  # 13:03:19.6, 13:03:27.1
    first_pc = [rtc["045749"], rtc["045814"]]               # 04:58:01.7, 04:58:26.7

    with _server(ES, ("sentinel-2-c1-l2a",), first_es) as es, \
            _server(PC, ("sentinel-1-rtc",), first_pc) as pc:
        sources = [
            # 4 s of lookback: a late item up to 4 s older than the watermark is caught.
            {"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
             "lookback_days": 4 / 86400, "max_cloud_cover": 80, "interval_minutes": 1},
            {"name": "pc-rtc", "provider": PC, "collection": "sentinel-1-rtc",
             "lookback_days": 30 / 86400, "interval_minutes": 1},
        ]
        settings = make_settings(
            providers={ES: provider_settings(es.url, ES), PC: provider_settings(pc.url, PC)},
            sources=sources, database_url=db.url, **settings_kwargs)
        cycle = discovery_cycle(settings, bus, db, backoff_s=0.05)
        topic = settings.bus.scenes_topic

        # Poll 1, just after the acquisitions: window [now - lookback, now].
        t_es = datetime(2025, 7, 31, 13, 3, 28, tzinfo=UTC)
        t_pc = datetime(2024, 4, 19, 4, 58, 30, tzinfo=UTC)
        r1 = cycle.poll_source(cycle.source("es-s2-c1"), t_es)
        r2 = cycle.poll_source(cycle.source("pc-rtc"), t_pc)
        assert r1.published_ids == [ceara.format("UV")]  # UA (13:03:19.6) is before the window
        assert r2.published_ids == [rtc["045749"]["id"], rtc["045814"]["id"]]

        # Late-published items appear: WV (13:03:24.3) and VV (13:03:25.9) are older than
        # the watermark (13:03:27.1) but inside the lookback; XV (13:03:22.4) is outside.
        es.add_items([c1[ceara.format(t)] for t in ("WV", "VV", "XV")])
        pc.add_items([rtc["045839"], rtc["045904"]])  # new radar slices
        r3 = cycle.poll_source(cycle.source("es-s2-c1"), t_es + timedelta(minutes=1))
        r4 = cycle.poll_source(cycle.source("pc-rtc"), t_pc + timedelta(minutes=1))
        assert r3.published_ids == [ceara.format("WV"), ceara.format("VV")]
        assert r3.late == 2 and r3.duplicates == 1
        assert r4.published_ids == [rtc["045839"]["id"], rtc["045904"]["id"]]
        assert r4.late == 0 and r4.duplicates == 2

        # The scheduler keeps polling on a simulated clock: nothing new, nothing repeated.
        replayed = list(replay_schedule(cycle, t_pc + timedelta(minutes=2),
                                        t_pc + timedelta(minutes=4), sources=["pc-rtc"]))
        assert len(replayed) == 3 and sum(r.published for r in replayed) == 0
        r5 = cycle.poll_source(cycle.source("es-s2-c1"), t_es + timedelta(minutes=2))
        assert r5.published == 0

        expected = {("ceara", ceara.format(t)) for t in ("UV", "WV", "VV")} | {
            ("sirte", rtc[k]["id"]) for k in ("045749", "045814", "045839", "045904")}
        events = read_events(topic, len(expected))
        assert [(e.subject, e.data.item_id) for e in events if e.subject == "ceara"] == [
            ("ceara", ceara.format(t)) for t in ("UV", "WV", "VV")]
        assert {(e.subject, e.data.item_id) for e in events} == expected
        assert len(events) == len(expected)
        assert db.scene_counts() == {"published": 7}


def test_new_and_late_items_between_polls_embedded_bus_sqlite(sqlite_db: Database) -> None:
    require_stac_dir()
    bus = EmbeddedBus()
    _appearing_scenario({}, bus, sqlite_db,
                        lambda topic, n: embedded_events(bus, topic))


def test_new_and_late_items_between_polls_kafka_postgres(
        kafka_bootstrap: str, new_topic, postgres_db: Database) -> None:
    require_stac_dir()
    topic = new_topic("discovery", partitions=3)
    bus = KafkaBus(kafka_bootstrap)
    try:
        _appearing_scenario({"scenes_topic": topic, "bus_kind": "kafka",
                             "bootstrap": kafka_bootstrap}, bus, postgres_db,
                            lambda t, n: kafka_events(kafka_bootstrap, t, n))
    finally:
        bus.close()


def test_scenes_stay_discovered_while_the_bus_is_down_and_go_out_next_cycle(
        kafka_bootstrap: str, new_topic, sqlite_db: Database) -> None:
    require_stac_dir()
    from monitor.adapters.stac_server import free_port

    items = servable(real_items(PC, "sentinel-1-rtc"))
    topic = new_topic("discovery-down", partitions=3)
    with _server(PC, ("sentinel-1-rtc",), items) as pc:
        settings = make_settings(
            providers={PC: provider_settings(pc.url, PC)},
            sources=[{"name": "pc-rtc", "provider": PC, "collection": "sentinel-1-rtc",
                      "lookback_days": 1}],
            database_url=sqlite_db.url, scenes_topic=topic)
        now = datetime(2024, 4, 19, 6, 0, tzinfo=UTC)
        # No broker listens on this port: Kafka is "down".
        down = KafkaBus(f"127.0.0.1:{free_port()}", request_timeout_ms=3000)
        report = discovery_cycle(settings, down, sqlite_db, backoff_s=0.05).poll_source(
            settings.sources[0], now)
        assert report.published == 0 and report.pending == 4
        assert sqlite_db.scene_counts() == {"discovered": 4}
        assert "publishing failed" in (sqlite_db.watermark("sirte", "pc-rtc").last_error or "")

        up = KafkaBus(kafka_bootstrap)
        try:
            again = discovery_cycle(settings, up, sqlite_db, backoff_s=0.05).poll_source(
                settings.sources[0], now + timedelta(minutes=30))
            assert again.republished == 4 and again.published == 0 and again.duplicates == 4
            assert sqlite_db.scene_counts() == {"published": 4}
            events = kafka_events(kafka_bootstrap, topic, 4)
            assert sorted(e.data.item_id for e in events) == sorted(i["id"] for i in items)
            times = [e.data.acquired for e in events]
            assert times == sorted(times)  # one city, one partition: acquisition order
        finally:
            up.close()


def test_backfill_publishes_history_in_acquisition_order_across_sources(
        sqlite_db: Database) -> None:
    require_stac_dir()
    es_items = servable(real_items(ES, "sentinel-2-l2a")) + servable(
        real_items(ES, "sentinel-2-c1-l2a"))
    with _server(ES, ("sentinel-2-l2a", "sentinel-2-c1-l2a"), es_items) as es:
        sources = [s for s in all_sources(lookback_days=1) if s["name"] in ("es-s2", "es-s2-c1")]
        settings = make_settings(providers={ES: provider_settings(es.url, ES)}, sources=sources,
                                 database_url=sqlite_db.url)
        bus = EmbeddedBus()
        cycle = discovery_cycle(settings, bus, sqlite_db)
        report = cycle.backfill("ceara", datetime(2025, 7, 1, tzinfo=UTC),
                                datetime(2025, 8, 1, tzinfo=UTC), progress=False)
        assert report.published == 10 and report.items_seen == 10
        events = embedded_events(bus, settings.bus.scenes_topic)
        times = [e.data.acquired for e in events]
        assert times == sorted(times)
        assert {e.data.collection for e in events} == {"sentinel-2-l2a", "sentinel-2-c1-l2a"}
        # Again: all known, nothing published twice; a window outside the data is empty.
        again = cycle.backfill("ceara", datetime(2025, 7, 1, tzinfo=UTC),
                               datetime(2025, 8, 1, tzinfo=UTC), progress=False)
        assert again.published == 0 and again.duplicates == 10
        one = cycle.backfill("ceara", datetime(2020, 1, 1, tzinfo=UTC),
                             datetime(2021, 1, 1, tzinfo=UTC), sources=["es-s2"], progress=False)
        assert one.items_seen == 0
        assert len(bus.records(settings.bus.scenes_topic)) == 10
