"""Publish + alerting per scene after one month versus after three years of a city's history
(issue 16): the cost must be what a scene changed, not what the city accumulated.

A 2 x 2 km synthetic city over three years (2019-2021, its construction sites and
confusers) is processed scene by scene through the real inference worker and alerting
handler (embedded bus, SQLite, onnxruntime, one thread). Per scene: the publish stage (the
sites the scene moved, traced in their windows, plus the ChangeEvent) and the alerting
(folding that event: by-id reads, revisions, outbox, AlertEvents). The median of the first
month after the baseline is compared with the median of the last month, in one run.
Per-stage costs per megapixel (for ``urban-monitor capacity --costs``) go to
``var/benchmarks/stage-costs.json``, the figures to ``var/benchmarks/history.json``.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
OUT = REPO_ROOT / "var" / "benchmarks"


@pytest.mark.benchmark
@pytest.mark.slow
def test_publish_and_alerting_per_scene_do_not_grow_with_history(tmp_path: Path) -> None:
    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.adapters.stac_server import StacServer
    from monitor.domain.city import City
    from monitor.domain.events import CHANGE_TYPE, ChangeData, parse_event
    from monitor.domain.state import StateParams
    from monitor.pipeline.alerting import AlertingHandler
    from monitor.pipeline.runtime import build_runtime, build_worker, discovery_cycle
    from monitor.settings import Settings, load_settings
    from monitor.synthetic.archive import generate_archive
    from monitor.synthetic.params import ArchiveParams

    params = ArchiveParams(name="history", size_km=2.0, start=date(2019, 1, 1),
                           end=date(2021, 12, 31), seed=11)
    archive = generate_archive(OUT / "history-archive", params, progress=False)
    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as server:
        data = load_settings(REPO_ROOT / "config" / "demo.yaml").model_dump()
        data["database"]["url"] = f"sqlite:///{tmp_path / 'db.sqlite'}"
        data["state"]["url"] = str(tmp_path / "state")
        data["providers"]["synthetic"]["url"] = server.url
        data["cities"] = [{"id": "hist", "name": "History",
                           "geometry": dict(archive.aoi.__geo_interface__)}]
        settings = Settings(**data)
        city = City("hist", "History", archive.aoi, archive.grid)
        bus = EmbeddedBus(settings.bus.partitions)
        runtime = build_runtime(settings, bus=bus, cities={"hist": city})
        try:
            cycle = discovery_cycle(settings, bus, runtime.db, max_workers=1)
            from datetime import UTC, datetime

            cycle.backfill("hist", datetime(2019, 1, 1, tzinfo=UTC),
                           datetime(2021, 12, 31, 23, 59, tzinfo=UTC), progress=False)
            worker = build_worker(runtime)
            alerting = AlertingHandler(runtime.db, bus, settings=settings.alerting,
                                       alerts_topic=settings.bus.alerts_topic)
            consumer = bus.consumer([settings.bus.scenes_topic], "bench", client_id="bench")
            rows = []
            while True:
                messages = consumer.poll(timeout_s=0.0, max_records=50)
                if not messages:
                    break
                for message in messages:
                    event = parse_event(message.value)
                    before = dict(worker.times.as_dict())
                    outcome = worker.handle(event, message)
                    consumer.commit(message)
                    if outcome.change is None or outcome.status != "processed":
                        continue
                    after = worker.times.as_dict()
                    t = time.perf_counter()
                    alerting(outcome.change)
                    alert_s = time.perf_counter() - t
                    change = outcome.change.data
                    assert isinstance(change, ChangeData)
                    rows.append({
                        "acquired": change.acquired.date().isoformat(),
                        "modality": change.modality, "sites": len(change.sites),
                        "bytes": len(outcome.change.to_json()),
                        "publish_s": after["publish"] - before["publish"], "alerting_s": alert_s,
                        **{k: after[k] - before[k] for k in ("read", "infer", "update", "persist")}})
            alerts = runtime.db.count_alerts(city_id="hist")
        finally:
            runtime.close()
    baseline = StateParams.from_dict(settings.state.params).baseline_days
    first_from = date(2019, 1, 1).toordinal() + baseline

    def window(lo: int, hi: int) -> list[dict]:
        return [r for r in rows if lo <= date.fromisoformat(r["acquired"]).toordinal() < hi]

    month_one = window(first_from, first_from + 31)
    last_month = window(date(2021, 12, 1).toordinal(), date(2022, 1, 1).toordinal())
    assert len(month_one) >= 5 and len(last_month) >= 5

    def cost(rs: list[dict]) -> float:
        return float(np.median([r["publish_s"] + r["alerting_s"] for r in rs]))

    mpx = archive.grid.n_pixels / 1e6
    s2 = [r for r in rows if r["modality"] == "s2"]
    stage_costs = {
        "read_s_per_mpx": float(np.median([r["read"] for r in rows])) / mpx,
        "infer_s_per_mpx": float(np.median([r["infer"] for r in s2])) / mpx,
        "update_s_per_mpx": float(np.median([r["update"] for r in rows])) / mpx,
        "persist_s_per_mpx": float(np.median([r["persist"] for r in rows])) / mpx,
        "per_scene_s": float(np.median([r["publish_s"] + r["alerting_s"] for r in rows])),
    }
    result = {
        "city_mpx": mpx, "scenes": len(rows), "alerts": alerts,
        "month_one": {"scenes": len(month_one), "median_publish_plus_alerting_s": cost(month_one)},
        "last_month": {"scenes": len(last_month), "median_publish_plus_alerting_s": cost(last_month)},
        "ratio": cost(last_month) / cost(month_one),
        "largest_change_event_bytes": max(r["bytes"] for r in rows),
        "median_no_change_event_bytes": float(np.median([r["bytes"] for r in rows if not r["sites"]])),
        "stage_costs": stage_costs,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "history.json").write_text(json.dumps(result, indent=1))
    (OUT / "stage-costs.json").write_text(json.dumps(stage_costs, indent=1))
    print(json.dumps(result, indent=1))
    assert result["ratio"] <= 1.3, "publish + alerting grew with the city's history"
    assert result["median_no_change_event_bytes"] <= 4096
