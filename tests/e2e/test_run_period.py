"""`urban-monitor run` on a small synthetic city served by a real STAC API: the period is
processed and the command exits; every alert row equals its last AlertEvent; revisions run
1..n without gaps; nothing is confirmed in the baseline; ChangeEvents carry only what moved;
the alerting reads only the alerts a ChangeEvent's sites concern."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.stac_server import StacServer
from monitor.domain.alerts import alert_id_for
from monitor.domain.events import CHANGE_TYPE, ChangeData, parse_event
from monitor.pipeline.run import run_period
from monitor.pipeline.runtime import build_runtime
from monitor.settings import Settings, load_settings
from monitor.synthetic.archive import generate_archive
from monitor.synthetic.params import ArchiveParams

PARAMS = ArchiveParams(name="run", size_km=1.0, start=date(2019, 1, 1), end=date(2019, 10, 31),
                       seed=3, n_sites=4)


def _settings(url: str, aoi: dict, run_dir: Path) -> Settings:
    data = load_settings(Path(__file__).resolve().parents[2] / "config" / "demo.yaml").model_dump()
    data["database"]["url"] = f"sqlite:///{run_dir / 'db.sqlite'}"
    data["state"]["url"] = str(run_dir / "state")
    data["providers"]["synthetic"]["url"] = url
    data["cities"] = [{"id": "run-city", "name": "Run City", "geometry": aoi}]
    return Settings(**data)


class CountingDatabase:
    """The real database, counting how the alerting reads alerts."""

    def __init__(self, db: object) -> None:
        self._db = db
        self.city_wide_reads = 0
        self.by_id_reads: list[int] = []

    def alerts_by_id(self, ids):  # type: ignore[no-untyped-def]
        self.by_id_reads.append(len(ids))
        return self._db.alerts_by_id(ids)  # type: ignore[attr-defined]

    def alerts(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("city_id") and kwargs.get("limit", 100) is None:
            self.city_wide_reads += 1
        return self._db.alerts(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._db, name)


@pytest.mark.slow
def test_run_processes_a_period_and_alerts_stay_consistent(tmp_path: Path) -> None:
    archive = generate_archive(tmp_path / "archive", PARAMS, progress=False)
    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as server:
        settings = _settings(server.url, dict(archive.aoi.__geo_interface__), tmp_path / "run")
        bus = EmbeddedBus(settings.bus.partitions)
        runtime = build_runtime(settings, bus=bus)
        counting = CountingDatabase(runtime.db)
        runtime.db = counting  # type: ignore[assignment]
        start = datetime(2019, 1, 1, tzinfo=UTC)
        end = datetime(2019, 10, 31, 23, 59, tzinfo=UTC)
        try:
            summary = run_period(runtime, "run-city", start, end, baseline_days=0,
                                 progress=False, collect_alert_events=True)
            rows = {a.id: a for a in counting._db.alerts(city_id="run-city", limit=None)}
        finally:
            runtime.close()
    # the period is done: nothing pending, every scene has an outcome
    assert summary.pending == 0
    assert set(summary.scenes) <= {"processed", "skipped"} and summary.scenes["processed"] > 50
    assert "\n".join(summary.lines()).count("Urban Monitor run") == 1
    # every alert row equals its last AlertEvent; revisions are 1..n without a gap
    events = defaultdict(list)
    for data in summary.alert_events:
        events[data.alert_id].append(data)
    assert events, "the synthetic city has construction sites: some alert must exist"
    assert set(events) == set(rows)
    for alert_id, revisions in events.items():
        assert [d.revision for d in revisions] == list(range(1, len(revisions) + 1))
        last, row = revisions[-1], rows[alert_id]
        assert (row.status, row.revision, row.first_detected, row.confirmed, row.retracted,
                row.change_date, row.confidence, row.model_version, row.site_id) == (
            last.status, last.revision, last.first_detected, last.confirmed, last.retracted,
            last.change_date, last.confidence, last.model_version, last.site_id)
        assert row.geometry == last.geometry and list(row.scene_ids) == last.scene_ids
        assert alert_id == alert_id_for("run-city", str(last.site_id))
        # confirmed is final
        statuses = [d.status for d in revisions]
        if "confirmed" in statuses:
            assert set(statuses[statuses.index("confirmed"):]) <= {"confirmed", "withdrawn"}
    # nothing confirmed in the state's baseline (its first 90 days of S2 scenes)
    baseline_end = date(2019, 1, 1) + timedelta(days=90)
    assert all(d.confirmed is None or d.confirmed >= baseline_end for d in summary.alert_events)
    # ChangeEvents are deltas; most scenes move nothing and stay small
    changes = [parse_event(m.value, CHANGE_TYPE).data for m in bus.records(settings.bus.changes_topic)]
    assert changes and all(isinstance(c, ChangeData) for c in changes)
    empty = [c for c in changes if not c.sites]  # type: ignore[union-attr]
    assert len(empty) > len(changes) / 2
    assert max(len(c.model_dump_json()) for c in empty) < 4096  # type: ignore[union-attr]
    # the alerting read alerts by id, never the city's whole set
    assert counting.by_id_reads and counting.city_wide_reads == 0
    # fusion live, with the real ONNX models: S2 scenes with radar context are scored by
    # the dual-stream model and their ChangeEvents name it; S1 scenes name the S1 model
    s2_versions = {c.model_version for c in changes if c.modality == "s2"}  # type: ignore[union-attr]
    assert any(v.startswith(str(settings.models.dual) + "@") for v in s2_versions), s2_versions
    assert all(v.startswith((str(settings.models.dual) + "@", settings.models.s2 + "@"))
               for v in s2_versions), s2_versions
