"""`urban-monitor demo`: the whole pipeline on a synthetic city, replayed on a simulated clock.

generate (cached) -> serve it with a real STAC API (rustac) -> embedded runtime (in-process
bus, SQLite, local state) -> the scheduler polls as if live while a simulated clock walks
through the archive -> inference workers and alerting drain the bus after every poll ->
summary (scenes, alerts, scores against the truth, time per stage) + HTML report.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.domain.city import City
from monitor.domain.records import StoredAlert
from monitor.domain.vocabulary import UNIX_DAY_OFFSET, Status
from monitor.errors import UrbanMonitorError
from monitor.pipeline.consuming import EventLoop
from monitor.settings import CitySettings, Settings

if TYPE_CHECKING:
    from monitor.domain.state import CityState
    from monitor.synthetic.archive import Archive

log = logging.getLogger(__name__)

DEMO_CITY_ID = "demo-city"


@dataclass
class DemoOptions:
    archive_dir: Path
    report_path: Path
    seed: int = 7
    size_km: float = 5.0
    start: date = date(2019, 1, 1)
    end: date = date(2021, 12, 31)
    poll_every_days: float = 2.0
    fresh: bool = True
    progress: bool = True


@dataclass
class DemoResult:
    scenes: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    polls: int = 0
    seconds: float = 0.0
    report: Path | None = None
    dead_letters: int = 0
    serve_config: Path | None = None


def options_from_settings(settings: Settings, **overrides: Any) -> DemoOptions:
    demo = dict(settings.demo)
    opts = DemoOptions(
        archive_dir=Path(demo.get("archive", "var/demo/archive")),
        report_path=Path(demo.get("report", "var/demo/report.html")),
        seed=int(demo.get("seed", 7)), size_km=float(demo.get("size_km", 5.0)),
        start=_as_date(demo.get("start", "2019-01-01")), end=_as_date(demo.get("end", "2021-12-31")),
        poll_every_days=float(demo.get("poll_every_days", 2.0)))
    for key, value in overrides.items():
        if value is not None:
            setattr(opts, key, value)
    return opts


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def run_dir_for(opts: DemoOptions) -> Path:
    """Where one demo run keeps its database and states: beside its report, so two demos
    with different reports never share (or wipe) each other's outputs."""
    return opts.report_path.parent / f"{opts.report_path.stem}-run"


def _demo_settings(settings: Settings, stac_url: str, aoi_geojson: dict[str, Any],
                   run_dir: Path) -> Settings:
    """The demo's settings with the served archive's URL, the synthetic city, and the
    run's own database and state folder."""
    data = settings.model_dump()
    data["database"]["url"] = f"sqlite:///{run_dir / 'urban-monitor.db'}"
    data["state"]["url"] = str(run_dir / "state")
    data["providers"]["synthetic"]["url"] = stac_url
    city = settings.cities[0] if settings.cities else None
    data["cities"] = [CitySettings(
        id=DEMO_CITY_ID, name=city.name if city else "Demo City (synthetic)",
        country=city.country if city else "", geometry=aoi_geojson,
        population=city.population if city else {},
        built_up_km2=getattr(city, "built_up_km2", {}) if city else {},
    ).model_dump()]
    for source in data["sources"]:
        source["provider"] = "synthetic"
    return Settings(**data)


SERVE_CONFIG = "serve.yaml"


def write_serve_config(run_dir: Path) -> Path:
    """``<run>/serve.yaml``: the settings that serve this run's results with the API
    (``urban-monitor serve api --config <run>/serve.yaml``, dashboard at /dashboard/).

    It names no city: the API then reads the demo city from the run's database, where the
    demo registered the generated archive's own outline, grid and population, so nothing
    overwrites them with a configured box."""
    from monitor.settings import CONFIG_DIR

    run = run_dir.resolve()
    text = "\n".join([
        "# Written by `urban-monitor demo`: serve this run's results with",
        f"#   urban-monitor serve api --config {run / SERVE_CONFIG}",
        "# and open http://127.0.0.1:8000/dashboard/ (the city comes from the database).",
        f"base: {CONFIG_DIR.resolve() / 'default.yaml'}",
        'cities_file: ""',
        "cities: []",
        "database:",
        f"  url: sqlite:///{run / 'urban-monitor.db'}",
        "state:",
        f"  url: {run / 'state'}",
        "",
    ])
    path = run / SERVE_CONFIG
    path.write_text(text, encoding="utf-8")
    return path


def _reset_outputs(settings: Settings) -> None:
    db_url = settings.database.url
    if db_url.startswith("sqlite:///"):
        path = Path(db_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    state_dir = Path(settings.state.url)
    if "://" not in settings.state.url and state_dir.exists():
        shutil.rmtree(state_dir)


def _drain(loop: EventLoop, limit_s: float = 600.0) -> int:
    """Process everything waiting on the embedded bus for ``loop``'s consumer."""
    done = 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        n = loop.run_once(timeout_s=0.0, max_records=100)
        done += n
        if n == 0:
            return done
    return done


def builtup_estimate_m2(state: CityState) -> float | None:
    """Built-up area from the S2 reference (``monitor.reporting.overview``)."""
    from monitor.reporting.overview import builtup_estimate_m2 as estimate

    return estimate(state)


def run_demo(settings: Settings, opts: DemoOptions) -> DemoResult:
    from monitor.synthetic.archive import generate_archive
    from monitor.synthetic.params import ArchiveParams

    started = time.perf_counter()
    result = DemoResult()
    params = ArchiveParams(seed=opts.seed, size_km=opts.size_km, start=opts.start, end=opts.end)
    log.info("demo: generating (or reusing) the synthetic archive in %s", opts.archive_dir)
    t = time.perf_counter()
    archive = generate_archive(opts.archive_dir, params, progress=opts.progress)
    result.stage_seconds["generate"] = round(time.perf_counter() - t, 2)

    run_dir = run_dir_for(opts)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(run_dir):
        _replay(settings, opts, archive, run_dir, result)
    result.seconds = round(time.perf_counter() - started, 1)
    return result


@contextmanager
def _exclusive(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock for the whole run (released on any exit)."""
    import fcntl

    with open(run_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UrbanMonitorError(
                f"another demo is running with the outputs in {run_dir}",
                "wait for it to finish, or give this one another --report path") from None
        yield


def _replay(settings: Settings, opts: DemoOptions, archive: Archive, run_dir: Path,
            result: DemoResult) -> None:
    """Serve the archive, replay it through the composed pipeline, score and report."""
    from tqdm import tqdm

    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.adapters.stac_server import StacServer
    from monitor.pipeline.outbox import dispatch_due
    from monitor.pipeline.runtime import (
        build_alerting_loop,
        build_inference_loop,
        build_runtime,
        build_worker,
        discovery_cycle,
        state_store,
    )

    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as server:
        settings = _demo_settings(settings, server.url, dict(archive.aoi.__geo_interface__),
                                  run_dir)
        if opts.fresh:
            _reset_outputs(settings)
        # The city's grid is the archive's grid (same CRS, origin, size).
        cfg = settings.cities[0]
        city = City(DEMO_CITY_ID, cfg.name, archive.aoi, archive.grid, population=cfg.population)
        bus = EmbeddedBus(settings.bus.partitions)
        runtime = build_runtime(settings, bus=bus,
                                cities={DEMO_CITY_ID: city})
        try:
            worker = build_worker(runtime)
            inference = build_inference_loop(runtime, worker, client_id="demo-inference")
            alerting, _ = build_alerting_loop(settings, runtime.bus, runtime.db,
                                              client_id="demo-alerting")
            cycle = discovery_cycle(settings, runtime.bus, runtime.db, max_workers=1)

            now = datetime.combine(opts.start, datetime.min.time(), tzinfo=UTC)
            end = datetime.combine(opts.end, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
            step = timedelta(days=opts.poll_every_days)
            total_steps = int((end - now) / step) + 1
            t_discover = t_alert = 0.0
            bar = tqdm(total=total_steps, desc="replay", unit="poll", disable=not opts.progress)
            while now <= end:
                t = time.perf_counter()
                cycle.poll_once(now)
                t_discover += time.perf_counter() - t
                _drain(inference)
                t = time.perf_counter()
                _drain(alerting)
                dispatch_due(runtime.db, now=now, settings=settings.alerting)
                t_alert += time.perf_counter() - t
                result.polls += 1
                counts = runtime.db.scene_counts(DEMO_CITY_ID)
                bar.set_postfix(date=f"{now:%Y-%m-%d}", scenes=counts.get("processed", 0),
                                alerts=runtime.db.count_alerts(city_id=DEMO_CITY_ID))
                bar.update(1)
                now += step
            bar.close()

            result.scenes = runtime.db.scene_counts(DEMO_CITY_ID)
            alerts = runtime.db.alerts(city_id=DEMO_CITY_ID, limit=None)
            for alert in alerts:
                result.alerts[alert.status] = result.alerts.get(alert.status, 0) + 1
            result.dead_letters = inference.stats.dead_lettered + alerting.stats.dead_lettered
            result.stage_seconds.update({
                "discover": round(t_discover, 2),
                **{k: v for k, v in worker.times.as_dict().items() if k != "scenes"},
                "alerting": round(t_alert, 2),
            })

            state = state_store(settings).load(DEMO_CITY_ID)
            if state is not None:
                from monitor.domain.events import AlertData, parse_event

                history = [e.data for e in (parse_event(m.value) for m in
                                            bus.records(settings.bus.alerts_topic))
                           if isinstance(e.data, AlertData)]
                result.score = _score(state, archive, history or list(alerts))
                result.report = _write_report(settings, state, alerts, archive, result, opts,
                                              scenes=_processed_scenes(runtime.db))
            result.serve_config = write_serve_config(run_dir)
        finally:
            runtime.close()


def _score(state: CityState, archive: Archive, alerts: list[Any]) -> dict[str, Any]:
    """Alerts scored as a user would judge them (``monitor.domain.alert_scoring``: confirmed
    alerts against the truth sites), beside the state's own confirmed pixels (state_*)."""
    from monitor.adapters.vectorise import scored_alerts
    from monitor.domain.alert_scoring import score_alerts
    from monitor.domain.scoring import ChangePrediction, score_change

    truth = archive.change_truth()
    baseline_end = archive.period_days()[0] + state.params.baseline_days
    alert_score = score_alerts(truth, scored_alerts(alerts, archive.grid),
                               scored=np.ones(archive.grid.shape, bool),
                               pixel_area_m2=archive.grid.pixel_size ** 2,
                               period=archive.period_days(), baseline_end=baseline_end)

    def epoch(days: np.ndarray) -> np.ndarray:
        d = days.astype(np.int32)
        return np.where(d > 0, d + UNIX_DAY_OFFSET, 0).astype(np.int32)

    prediction = ChangePrediction(confirmed=state.status == Status.CONFIRMED,
                                  change_date=epoch(state.change_day),
                                  confirmation_date=epoch(state.confirm_day))
    score = score_change(truth, prediction, state.grid.pixel_size ** 2, archive.period_days())
    figures: dict[str, Any] = dict(alert_score.figures())
    figures.update({f"state_{k}": (round(v, 3) if isinstance(v, float) else v)
                    for k, v in score.__dict__.items()
                    if k in ("pixel_f1", "object_f1", "time_error_median_days")})
    return figures


def _processed_scenes(db: Any) -> list[Any]:
    """The demo city's processed scenes (SceneData) from the registry: the chips' sources."""
    from monitor.domain.events import SceneData, parse_event

    scenes = [parse_event(r.event_json).data
              for r in db.scenes(city_id=DEMO_CITY_ID, statuses=["processed"])]
    return [s for s in scenes if isinstance(s, SceneData)]


# The report carries the chips of this many confirmed alerts (the largest): a few hundred
# kB of PNG; the live dashboard renders any alert's on demand.
REPORT_EVIDENCE_ALERTS = 12


def _write_report(settings: Settings, state: CityState, alerts: list[StoredAlert],
                  archive: Archive, result: DemoResult, opts: DemoOptions,
                  scenes: list[Any] | None = None) -> Path:
    from monitor.adapters.raster import RasterioSceneReader
    from monitor.pipeline.city_stats import CityInfo, city_stats
    from monitor.reporting.chips import alert_evidence, evidence_for_report
    from monitor.reporting.features import alert_feature
    from monitor.reporting.maps import map_info, render_change_png, render_rgb_png
    from monitor.reporting.overview import city_overview, state_period
    from monitor.reporting.report import write_report

    cfg = settings.cities[0]
    baseline = builtup_estimate_m2(state)
    built = dict(getattr(cfg, "built_up_km2", {}) or {})
    if not built and baseline is not None:
        built = {opts.start.year: baseline / 1e6}
    info = CityInfo(id=DEMO_CITY_ID, name=cfg.name, country=cfg.country,
                    aoi=dict(archive.aoi.__geo_interface__), population=cfg.population,
                    built_up_km2=built)
    stats = city_stats(info, alerts, None, None)
    start, baseline_end, latest = state_period(state)
    overview = city_overview(alerts=alerts, population=cfg.population,
                             built_up_km2=getattr(cfg, "built_up_km2", {}) or {},
                             start=start, baseline_end=baseline_end, latest=latest,
                             built_up_latest_m2=baseline)
    evidence = {}
    largest = sorted((a for a in alerts if a.status == "confirmed"), key=lambda a: -a.area_m2)
    reader = RasterioSceneReader()
    for alert in largest[:REPORT_EVIDENCE_ALERTS] if scenes else []:
        evidence[alert.id] = evidence_for_report(alert_evidence(alert, scenes or [], reader))
    features = [alert_feature(a, "") for a in alerts]
    summary = {
        "Scenes": ", ".join(f"{k}: {v}" for k, v in sorted(result.scenes.items())),
        "Alerts": ", ".join(f"{k}: {v}" for k, v in sorted(result.alerts.items())) or "none",
        "Polls (simulated clock)": result.polls,
        **{f"Score: {k}": v for k, v in result.score.items()},
        **{f"Seconds: {k}": v for k, v in result.stage_seconds.items()},
        "Model versions": ", ".join(sorted({a.model_version for a in alerts})) or "-",
        "Baseline built-up (S2 reference index rule, km2)": round((baseline or 0) / 1e6, 3),
    }
    info_maps = map_info(state)
    city = {
        "id": DEMO_CITY_ID, "name": cfg.name, "bounds": info_maps["bounds"],
        "rgb_png": render_rgb_png(state), "change_png": render_change_png(state),
        "alerts": {"type": "FeatureCollection", "features": features}, "stats": stats,
        "overview": overview, "evidence": evidence,
        "change_legend": info_maps.get("change_legend"),
        "geometry": dict(archive.aoi.__geo_interface__),
    }
    return write_report(opts.report_path, title="Urban Monitor demo — synthetic city",
                        cities=[city], summary=summary)
